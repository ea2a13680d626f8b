// Load generator for refresh-token rotation, run as its own process (pinned to the load core by
// bench/run.ts). Each of the given refresh tokens is one chain: a connection refreshes it, takes
// the successor, and refreshes again, for the duration (or until `amount` rotations in all, when
// given: bench/cpu.ts measures a fixed amount of work). argv[2]: JSON { url, seconds, tokens, amount? }.
// Prints one JSON line with the figures (the same shape as bench/load.ts). A request that fails
// (a connection reset) is counted as an error and the chain goes on with the same token — within
// the refresh grace the server answers it with the same successor — and gives up after three
// failures in a row; nothing ends the process (bench/load-errors.ts). The figures line also holds
// `tokens`: each chain's token to go on with (the last successor it got, or the one it stopped
// on), so that a warm-up run and the measured run after it, or a counting run after that, make
// one chain each without new logins. `loadCpuS` and `loadWallS`: this process's CPU seconds and the
// wall seconds of the load itself (its start-up left out), for the load core's share (bench/run.ts).
// Each chain has a keep-alive connection of its own on a raw socket (bench/raw-http.ts: as lean as
// autocannon, so that the load core's CPU goes to Redis rather than to `node:http`); a connection
// closed or reset is opened again by the chain's next request.

import { Latencies } from './latency.ts';
import { report } from './load-errors.ts';
import { RawConnection } from './raw-http.ts';

const opts = JSON.parse(process.argv[2] ?? '{}') as { url: string; seconds: number; tokens: string[]; amount?: number };
const amount = opts.amount ?? Infinity;
/** Every 2xx response's latency, for p50/p99 to 0.01 ms as the check's (bench/latency.ts). */
const latencies = new Latencies();
let responses = 0;
let non2xx = 0;
let errors = 0;
const deadline = performance.now() + opts.seconds * 1000;

/** The request's body: JSON.stringify({ refreshToken: token }). */
const refreshBody = (token: string) => `{"refreshToken":${JSON.stringify(token)}}`;

/** Each chain's token to go on with, in the order of opts.tokens. */
const next = [...opts.tokens];
const connections: RawConnection[] = [];

/**
 * One chain: a connection of its own that refreshes the chain's token as soon as the last answer
 * came. Callbacks, not an async loop: no promise per rotation on the load core.
 */
function chain(first: string, index: number): Promise<void> {
  return new Promise((finished) => {
    const conn = RawConnection.to(opts.url);
    connections.push(conn);
    let token = first;
    let rotations = 0;
    let failures = 0;
    let t0 = 0;
    const answered = (err: Error | null, status: number, body: Buffer): void => {
      if (err !== null) {
        errors++;
        process.stderr.write(`error: ${err.message} (chain ${opts.tokens.indexOf(first)}, after ${rotations} rotations)\n`);
        if (++failures === 3) return finished();
        return step();
      }
      const ms = performance.now() - t0;
      responses++;
      if (status >= 200 && status < 300) latencies.add(ms);
      if (status !== 200) {
        non2xx++;
        // Every refusal is named (run.ts prints this stream): a chain of legitimate use must get none.
        process.stderr.write(`refused: ${status} ${body.toString('utf8').slice(0, 300)} (chain ${opts.tokens.indexOf(first)}, after ${rotations} rotations)\n`);
        return finished();
      }
      let successor: string;
      try {
        successor = (JSON.parse(body.toString('utf8')) as { refreshToken: string }).refreshToken;
      } catch (e) {
        // A 200 whose body is not JSON: counted as a response and an error, as before.
        errors++;
        process.stderr.write(`error: ${(e as Error).message} (chain ${opts.tokens.indexOf(first)}, after ${rotations} rotations)\n`);
        if (++failures === 3) return finished();
        return step();
      }
      token = successor;
      next[index] = token;
      rotations++;
      failures = 0;
      step();
    };
    const step = (): void => {
      t0 = performance.now();
      if (t0 >= deadline || responses >= amount) return finished();
      conn.send(refreshBody(token), answered);
    };
    step();
  });
}

const started = performance.now();
const cpu0 = process.cpuUsage();
await Promise.all(opts.tokens.map((t, i) => chain(t, i)));
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
for (const c of connections) c.destroy();
report({ requests: responses, rps: responses / elapsed, ...latencies.percentiles(), non2xx, errors, timeouts: 0 }, { tokens: next, loadCpuS: (cpu.user + cpu.system) / 1e6, loadWallS: elapsed });
