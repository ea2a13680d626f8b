// The load generator, run as its own process (pinned to the other core by bench/run.ts).
// argv[2]: JSON options for autocannon. Prints one JSON line with the figures; errors (connection
// resets included) are counted in them, never fatal (bench/load-errors.ts).

import autocannon from 'autocannon';
import { report } from './load-errors.ts';

const opts = JSON.parse(process.argv[2] ?? '{}') as autocannon.Options;
try {
  const result = await autocannon({ ...opts });
  report({
    requests: result.requests.total,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  });
} catch (err) {
  process.stderr.write(`autocannon failed: ${(err as Error).message}\n`);
  report({ requests: 0, rps: 0, p50: 0, p99: 0, non2xx: 0, errors: 1, timeouts: 0 });
}
