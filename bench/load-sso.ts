// Load generator for the SSO token exchange (POST /api/v1/sso/token), run as its own process
// (pinned to the load core by bench/run.ts): `connections` workers share the one-time tokens in
// the file `tokens` (one per line), each exchanged exactly once in token mode, until all are
// used or `seconds` pass. argv[2]: JSON { url, connections, seconds, tokens }.
// Prints one JSON line with the figures (the same shape as bench/load.ts); a failed request (a
// connection reset) is counted as an error, never fatal (bench/load-errors.ts). `loadCpuS` and
// `loadWallS`: this process's CPU seconds and the wall seconds of the exchanges (its start-up and
// the tokens' read left out), for the load core's share (bench/run.ts). Each worker has a
// keep-alive connection of its own on a raw socket (bench/raw-http.ts: as lean as autocannon, so
// that the load core's CPU goes to Redis rather than to `node:http`); a connection closed or reset
// is opened again by the worker's next request.

import { readFileSync } from 'node:fs';
import { Latencies } from './latency.ts';
import { report } from './load-errors.ts';
import { RawConnection } from './raw-http.ts';

/** bench/fill-sso-tokens.ts's SSO_BENCH_VERIFIER (not imported: that module opens a store when loaded). */
const VERIFIER = 'bench-verifier-' + 'v'.repeat(40);

const opts = JSON.parse(process.argv[2] ?? '{}') as { url: string; connections: number; seconds: number; tokens: string };
const tokens = readFileSync(opts.tokens, 'utf8').split('\n').filter(Boolean);
/** Every 2xx response's latency, for p50/p99 to 0.01 ms as the check's (bench/latency.ts). */
const latencies = new Latencies();
let responses = 0;
let non2xx = 0;
let errors = 0;
let next = 0;
const deadline = performance.now() + opts.seconds * 1000;

let firstRefusal = null as string | null;

/**
 * Each token's request (head and body), made before the load starts (the generator's work in the measured
 * window is the requests' I/O, not string building).
 */
const template = RawConnection.to(opts.url);
const requests = tokens.map((token) => template.requestBytes(`{"token":${JSON.stringify(token)},"codeVerifier":"${VERIFIER}"}`));

const connections: RawConnection[] = [];

/**
 * One worker: a connection of its own that exchanges the next token as soon as the last answer
 * came, until the tokens run out or the deadline passes. Callbacks, not an async loop: no promise
 * per exchange on the load core.
 */
function worker(): Promise<void> {
  return new Promise((finished) => {
    const conn = RawConnection.to(opts.url);
    connections.push(conn);
    let t0 = 0;
    const answered = (err: Error | null, status: number, body: Buffer): void => {
      if (err !== null) errors++;
      else {
        const ms = performance.now() - t0;
        responses++;
        if (status >= 200 && status < 300) latencies.add(ms);
        if (status !== 200) {
          non2xx++;
          if (firstRefusal === null) firstRefusal = `${status} ${body.toString('utf8').slice(0, 300)}`;
        }
      }
      step();
    };
    const step = (): void => {
      if (next >= tokens.length) return finished();
      t0 = performance.now();
      if (t0 >= deadline) return finished();
      conn.sendRequest(requests[next++] as string, answered);
    };
    step();
  });
}

const started = performance.now();
const cpu0 = process.cpuUsage();
await Promise.all(Array.from({ length: opts.connections }, worker));
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
for (const c of connections) c.destroy();
if (firstRefusal !== null) process.stderr.write(`first refusal: ${firstRefusal}\n`);
report({ requests: responses, rps: responses / elapsed, ...latencies.percentiles(), non2xx, errors, timeouts: 0 }, { loadCpuS: (cpu.user + cpu.system) / 1e6, loadWallS: elapsed });
