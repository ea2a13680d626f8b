// A diagnostic preload for bench/cpu-latency.ts (`node --import ./bench/cpu-latency-probe.ts …`):
// each response's latency counted in the server thread's own CPU time instead of wall time — the
// thread's CPU (user + system) between the previous response on the same connection and this one.
// In a closed loop whose server is the bottleneck (the session check: the load generator sends a
// connection's next request as soon as it has read the answer), that is the server work the request
// waited for and was part of, without the time the process was not running: on a machine shared
// with other work, wall-time percentiles are mostly the waits for a core, these are not. Left out:
// the client's and the network's time, the first response on each connection, and the time the
// server sat idle (with a client-bound server, such as a hello world, the figure says little).
// SIGUSR2 appends the figures since the last signal (µs: n, p50, p90, p99, p99.9, max, mean) as a
// JSON line to `${CL_OUT}.<pid>` and starts anew. With CL_SERIES set instead (bench/collection-rows.ts,
// whose servers take SIGUSR2 for bench/gc-on-signal.ts), no signal is taken: every response's
// wall-clock time (ms since the epoch) and CPU-time latency (µs) are written at exit, as two runs of
// float64 values, to `${CL_SERIES}.<pid>`. Nothing of this is loaded by a server started without it.
import dc from 'node:diagnostics_channel';
import { appendFileSync, writeFileSync } from 'node:fs';

const series = process.env.CL_SERIES;
let lat = new Float64Array(1 << 20);
let at = new Float64Array(series ? 1 << 20 : 0);
let n = 0;
const last = new WeakMap<object, number>();

dc.subscribe('http.server.response.finish', (message) => {
  const { socket } = message as { socket: object };
  const c = process.threadCpuUsage();
  const t = c.user + c.system;
  const prev = last.get(socket);
  last.set(socket, t);
  if (prev === undefined) return;
  if (n === lat.length) {
    const grown = new Float64Array(n * 2);
    grown.set(lat);
    lat = grown;
    if (series) {
      const grownAt = new Float64Array(n * 2);
      grownAt.set(at);
      at = grownAt;
    }
  }
  if (series) at[n] = performance.timeOrigin + performance.now();
  lat[n++] = t - prev;
});

if (series) {
  process.on('exit', () => {
    writeFileSync(`${series}.${process.pid}`, Buffer.concat([Buffer.from(at.buffer, 0, n * 8), Buffer.from(lat.buffer, 0, n * 8)]));
  });
} else {
  process.on('SIGUSR2', () => {
    const sorted = lat.slice(0, n).sort();
    const q = (p: number) => sorted[Math.min(n - 1, Math.floor(p * n))] ?? NaN;
    let sum = 0;
    for (const x of sorted) sum += x;
    const figures = { n, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: sorted[n - 1] ?? NaN, mean: n > 0 ? sum / n : NaN };
    appendFileSync(`${process.env.CL_OUT}.${process.pid}`, `${JSON.stringify(figures)}\n`);
    n = 0;
  });
}
