// node bench/post-shell.ts [<other checkout>...] — the CPU cost of the POST routes' HTTP shell:
// what the server spends on a refresh (POST /api/v1/auth/token/refresh) or an SSO exchange
// (POST /api/v1/sso/token) apart from the rotation or the exchange itself. Each Tessera server is
// a real `tessera start` (SQLite, log level info, its lines to /dev/null, the Node flags it gives
// itself) with the two operations below the routes answering constants (bench/post-shell-stubs.ts,
// preloaded; nothing else of the checkout is changed): what is measured is the body's read and
// parse, validation, the hooks, the request line, the reply and its write. Beside them, in the
// same interleaved rounds, a Fastify hello world answering GET and one answering a POST with the
// refresh route's body and response schemas (bench/post-shell-hello.ts). Every server is pinned
// to core 0, the load generator (autocannon, 50 connections, a fixed number of requests) to core
// 1; CPU per request from /proc (user + system, all threads) over each round. With path
// arguments, the Tessera of each of those checkouts is measured beside this one: an A/B of a
// change. Beside each figure, the part of it spent on V8's GC threads ("V8Worker": parallel
// scavenging and marking): a process whose request path V8 tenured shows several µs there
// (docs/performance.md, "The POST routes' HTTP shell"). Environment: SHELL_REQUESTS (per round, default 20000), SHELL_ROUNDS (default 5),
// SHELL_WARMUP (requests per scenario before the first round, default 15000), SHELL_ONLY
// (refresh | sso: one of the two routes).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, freePort, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const NODE = process.execPath;
const STUB_TOKEN = 't'.repeat(43);
const dir = mkdtempSync(join(tmpdir(), 'tessera-shell-'));

const REQUESTS = Number(process.env.SHELL_REQUESTS ?? 20_000);
const ROUNDS = Number(process.env.SHELL_ROUNDS ?? 5);
const WARMUP = Number(process.env.SHELL_WARMUP ?? 15_000);
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
const pinned = (core: number, args: string[]): [string, string[]] =>
  hasTaskset ? ['taskset', ['-c', String(core), ...args]] : [args[0] as string, args.slice(1)];
const children: ChildProcess[] = [];
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds the process's V8 worker threads (GC, concurrent compilation) have used so far. */
function gcThreadSeconds(pid: number | undefined): number {
  let ticks = 0;
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        if (readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim() !== 'V8Worker') continue;
        const fields = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // The thread ended meanwhile.
      }
    }
  } catch {
    return NaN;
  }
  return ticks / CLOCK_TICKS;
}

interface Server { name: string; url: string; pid: number | undefined }
async function start(name: string, args: string[], env: Record<string, string>, probe: string): Promise<Server> {
  const port = await freePort();
  const [cmd, a] = pinned(0, [NODE, ...args]);
  const child = spawn(cmd, a, { cwd: dir, env: { PATH: process.env.PATH ?? '', PORT: String(port), TESSERA_PORT: String(port), ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(url + probe, child, 600);
  return { name, url, pid: child.pid };
}

/** One scenario: a server and the request sent to it. */
interface Scenario { name: string; server: Server; path: string; method: 'GET' | 'POST'; body?: string; headers: Record<string, string> }
const json = { 'content-type': 'application/json' };
const hello = await start('hello', [join(ROOT, 'bench/post-shell-hello.ts')], {}, '/api/v1/session');
const scenarios: Scenario[] = [
  { name: 'fastify hello world GET', server: hello, path: '/api/v1/session', method: 'GET', headers: {} },
  { name: 'fastify hello world POST (body schema)', server: hello, path: '/refresh', method: 'POST', body: JSON.stringify({ refreshToken: STUB_TOKEN }), headers: json },
];
const roots: [string, string][] = [[ROOT, ''], ...process.argv.slice(2).map((p, i): [string, string] => [resolve(p), ` [ref ${i + 1}]`])];
const only = process.env.SHELL_ONLY;
for (const [i, [root, mark]] of roots.entries()) {
  const t = await start(`tessera${mark}`, ['--import', join(ROOT, 'bench/post-shell-stubs.ts'), join(root, 'src/cli.ts'), 'start'], {
    POST_SHELL_ROOT: root,
    TESSERA_STORE: `sqlite:${join(dir, `shell-${i}.db`)}`,
    COOKIE_SECRET_SIGN_KEY: 'shell-cookie-secret-' + 'y'.repeat(32),
    TESSERA_ADMIN_TOKEN: 'shell-admin-token-' + 'x'.repeat(32),
    TESSERA_LOG_LEVEL: 'info',
    TESSERA_SWEEP_INTERVAL_MS: '3600000',
  }, '/healthz');
  if (only !== 'sso') scenarios.push({ name: `refresh shell${mark}`, server: t, path: '/api/v1/auth/token/refresh', method: 'POST', body: JSON.stringify({ refreshToken: STUB_TOKEN }), headers: json });
  if (only !== 'refresh') scenarios.push({ name: `sso/token shell${mark}`, server: t, path: '/api/v1/sso/token', method: 'POST', body: JSON.stringify({ token: STUB_TOKEN }), headers: json });
}
if (process.argv.length > 2) console.log(roots.map(([r, m]) => `${m || '[this]'} ${r}`).join('\n'));

function load(s: Scenario, amount: number): { us: number; gcUs: number; non2xx: number } {
  const c0 = cpuSeconds(s.server.pid);
  const g0 = gcThreadSeconds(s.server.pid);
  const opts = { url: s.server.url + s.path, method: s.method, headers: s.headers, body: s.body, connections: 50, amount };
  const [cmd, args] = pinned(1, [NODE, join(ROOT, 'bench/load.ts'), JSON.stringify(opts)]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`load generator failed: ${r.stderr}`);
  const f = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { requests: number; non2xx: number; errors: number };
  const n = Math.max(1, f.requests);
  return { us: ((cpuSeconds(s.server.pid) - c0) * 1e6) / n, gcUs: ((gcThreadSeconds(s.server.pid) - g0) * 1e6) / n, non2xx: f.non2xx + f.errors };
}

try {
  for (const s of scenarios) {
    const w = load(s, WARMUP);
    if (w.non2xx > 0) throw new Error(`${s.name}: ${w.non2xx} non-2xx answers or errors in the warm-up`);
  }
  const rows = new Map<string, { us: number; gcUs: number; non2xx: number }[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of scenarios) rows.set(s.name, [...(rows.get(s.name) ?? []), load(s, REQUESTS)]);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  console.log(`\n# bench/post-shell.ts — ${new Date().toISOString()}, Node ${process.version}, ${REQUESTS} requests × ${ROUNDS} rounds, 50 connections\n`);
  console.log('| scenario | server CPU µs/req (median) | rounds | of which V8 worker threads, rounds | non-2xx |');
  console.log('|---|---:|---|---|---:|');
  for (const [name, rs] of rows) {
    const each = (k: 'us' | 'gcUs') => rs.map((r) => r[k].toFixed(0)).join(' / ');
    console.log(`| ${name} | ${median(rs.map((r) => r.us)).toFixed(1)} | ${each('us')} | ${each('gcUs')} | ${rs.reduce((a, r) => a + r.non2xx, 0)} |`);
  }
} finally {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((done) => {
          if (c.exitCode !== null) return done();
          c.once('exit', () => done());
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 5000).unref();
        }),
    ),
  );
  rmSync(dir, { recursive: true, force: true });
}

