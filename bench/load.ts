// The load generator, run as its own process (pinned to the other core by bench/run.ts).
// argv[2]: JSON options for autocannon. Prints one JSON line with the figures; errors (connection
// resets included) are counted in them, never fatal (bench/load-errors.ts).

import autocannon from 'autocannon';
import { Latencies } from './latency.ts';
import { report } from './load-errors.ts';

const opts = JSON.parse(process.argv[2] ?? '{}') as autocannon.Options;
try {
  // Without a callback autocannon returns its instance: an event emitter that is also a promise.
  const started = performance.now();
  const instance = autocannon({ ...opts });
  const latencies = Latencies.of(instance as unknown as Parameters<typeof Latencies.of>[0]);
  // The wall time from the start to the last response (autocannon's own start/finish end on its
  // one-second tick, which a run of a fixed amount would round up to the next whole second).
  let last = started;
  (instance as unknown as { on(event: 'response', listener: () => void): unknown }).on('response', () => void (last = performance.now()));
  const result = await instance;
  report({
    requests: result.requests.total,
    rps: result.requests.average,
    ...latencies.percentiles(),
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  }, { loadWallS: (last - started) / 1000 });
} catch (err) {
  process.stderr.write(`autocannon failed: ${(err as Error).message}\n`);
  report({ requests: 0, rps: 0, p50: 0, p99: 0, non2xx: 0, errors: 1, timeouts: 0 });
}
