// The load generator of bench/tail.ts: autocannon as bench/load.ts runs it, keeping every
// response's latency (µs, not autocannon's whole milliseconds) and the time it arrived, so that
// the slow ones can be set beside what the server and this process were doing then.
// argv[2]: JSON autocannon options plus `out` (a file for the raw figures). Prints one JSON line.
import autocannon from 'autocannon';
import { writeFileSync } from 'node:fs';

const { out, ...opts } = JSON.parse(process.argv[2] ?? '{}') as autocannon.Options & { out: string };
const origin = performance.timeOrigin;
let ends = new Float64Array(1 << 18);
let lat = new Float32Array(1 << 18);
let n = 0;
// Without a callback autocannon returns its instance, an event emitter that is also a promise.
const instance = autocannon({ ...opts }) as unknown as Promise<autocannon.Result> & { on(e: 'response', f: (client: unknown, status: number, bytes: number, ms: number) => void): void };
instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
  if (status < 200 || status > 299) return;
  if (n === ends.length) {
    const e = new Float64Array(n * 2);
    e.set(ends);
    ends = e;
    const l = new Float32Array(n * 2);
    l.set(lat);
    lat = l;
  }
  ends[n] = origin + performance.now();
  lat[n++] = ms;
});
const r = await instance;
writeFileSync(out, JSON.stringify({ ends: Array.from(ends.subarray(0, n)), lat: Array.from(lat.subarray(0, n)) }));
process.stdout.write(JSON.stringify({ requests: r.requests.total, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors }) + '\n');
