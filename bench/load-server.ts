// The load generator as one long-lived process (pinned to the load core by bench/run.ts), so that
// each measurement does not pay for a new Node process and autocannon's import (~0.3 s each, some
// forty times in a quick run). Serves HTTP on a Unix socket: POST / with autocannon's options as
// JSON runs them and answers bench/load.ts's figures line; run.ts calls it synchronously through
// curl. Errors are counted, never fatal (bench/load-errors.ts).
// argv[2]: the socket's path. Prints "listening" once ready.

import autocannon from 'autocannon';
import { createServer } from 'node:http';
import { Latencies } from './latency.ts';
import { stray } from './load-errors.ts';

const server = createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => (body += c));
  req.on('end', () => {
    void (async () => {
      const strayBefore = stray.count;
      let figures;
      try {
        const opts = JSON.parse(body) as autocannon.Options;
        // Without a callback autocannon returns its instance: an event emitter that is also a promise.
        const instance = autocannon({ ...opts });
        const latencies = Latencies.of(instance as unknown as Parameters<typeof Latencies.of>[0]);
        const r = await instance;
        figures = { requests: r.requests.total, rps: r.requests.average, ...latencies.percentiles(), non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts };
      } catch (err) {
        process.stderr.write(`autocannon failed: ${(err as Error).message}\n`);
        figures = { requests: 0, rps: 0, p50: 0, p99: 0, non2xx: 0, errors: 1, timeouts: 0 };
      }
      figures.errors += stray.count - strayBefore;
      res.end(JSON.stringify(figures) + '\n');
    })();
  });
});
server.listen(process.argv[2] as string, () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
