import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GC_ON_SIGNAL_ARGS } from '../../bench/server-process.ts';

// bench/cpu-latency-probe.ts in its series mode (CL_SERIES, bench/collection-rows.ts): every
// response's wall-clock time and CPU-time latency written at exit, and SIGUSR2 left to
// bench/gc-on-signal.ts, whose full collection bench/collection-rows.ts sends between windows.
const PROBE = new URL('../../bench/cpu-latency-probe.ts', import.meta.url).href;
const SERVER = `
const http = require('node:http');
const s = http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function get(port: number, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/', agent }, (res) => res.resume().on('end', resolve)).on('error', reject).end();
  });
}

describe('bench CPU-time latency probe, series mode', () => {
  it('writes every response after the first on a connection at exit, and a SIGUSR2 runs the collection only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-cl-series-'));
    dirs.push(dir);
    const series = join(dir, 'series');
    const ack = join(dir, 'gc.ack');
    const started = Date.now();
    const child = spawn(process.execPath, [...GC_ON_SIGNAL_ARGS, '--import', PROBE, '-e', SERVER], {
      env: { PATH: process.env.PATH ?? '', CL_SERIES: series, BENCH_GC_ACK: ack },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const port = await new Promise<number>((resolve) => child.stdout!.setEncoding('utf8').once('data', (d: string) => resolve(Number(d.trim()))));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 4; i++) await get(port, agent);
    child.kill('SIGUSR2');
    for (let i = 0; i < 200 && !existsSync(ack); i++) await new Promise((r) => setTimeout(r, 10));
    expect(readFileSync(ack, 'utf8')).toBe('1');
    // No figures line: the probe took no signal (its SIGUSR2 mode writes to CL_OUT).
    expect(readdirSync(dir).sort()).toEqual(['gc.ack']);
    await get(port, agent);
    agent.destroy();
    await new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGTERM');
    });
    const raw = readFileSync(`${series}.${child.pid}`);
    const values = new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
    // Five responses on one connection: the first has no previous one, so four pairs.
    expect(values.length).toBe(8);
    const [times, lats] = [[...values.subarray(0, 4)], [...values.subarray(4)]];
    for (const t of times) expect(t).toBeGreaterThanOrEqual(started - 1000);
    for (const t of times) expect(t).toBeLessThanOrEqual(Date.now() + 1000);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    for (const l of lats) expect(l).toBeGreaterThanOrEqual(0);
  });
});
