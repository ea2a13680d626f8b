// The load generator, run as its own process (pinned to the other core by bench/run.ts).
// argv[2]: JSON options for autocannon. Prints one JSON line with the figures.

import autocannon from 'autocannon';

const opts = JSON.parse(process.argv[2] ?? '{}') as autocannon.Options;
const result = await autocannon({ ...opts });
process.stdout.write(
  JSON.stringify({
    requests: result.requests.total,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  }) + '\n',
);
