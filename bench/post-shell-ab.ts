// node bench/post-shell-ab.ts [<other checkout>...] — the POST routes' HTTP shell (as
// bench/post-shell.ts measures it: the refresh and SSO exchange routes with the operations below
// them answering constants, bench/post-shell-stubs.ts) through real sockets and Node's real HTTP
// server, but measured where the load generator's scheduling cannot move it: each variant is a
// process of its own that holds both the server and a lean HTTP client (one thread, loopback
// sockets, 50 keep-alive connections with one request in flight each), and reports the CPU its
// main thread spent per request over a slice — the server's work plus the client's, which is the
// same small amount in every row (the "raw socket floor" row is that client against a `node:net`
// server writing a fixed answer of the same size: the sockets' and the client's share). The
// processes are alternated slice by slice for many rounds (the order turned each round) and each
// row's median slice reported, with the rounds in which it was cheaper than the first Tessera
// row. Beside the Tessera rows: Fastify hello worlds answering GET and POST (the refresh route's
// body and response schemas), the floors of bench/post-shell.ts, and the same POST on `node:http`
// with no framework, answering the pair with Tessera's six headers (nodeFloor). Each Tessera is a `startServer`
// of its checkout's sources (SQLite, log level info, its lines to /dev/null), started with the
// Node flag `tessera start` gives itself (--min-semi-space-size=16). With path arguments the
// Tessera of each of those checkouts is measured beside this one: an A/B of a change.
// Environment: AB_ROUNDS (default 15), AB_SLICE (requests per slice, default 5000), AB_WARMUP
// (requests per process before the first round, default 40000), AB_ONLY (refresh | sso),
// AB_CONNECTIONS (default 50).

import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as ConfigModule from '../src/config/config.ts';
import type * as ServerModule from '../src/server.ts';
import { hasTaskset, pinNow } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const STUB_TOKEN = 't'.repeat(43);
const CONNECTIONS = Number(process.env.AB_CONNECTIONS ?? 50);

interface Target { path: string; method: 'GET' | 'POST'; body?: string }
const REFRESH: Target = { path: '/api/v1/auth/token/refresh', method: 'POST', body: JSON.stringify({ refreshToken: STUB_TOKEN }) };
const SSO: Target = { path: '/api/v1/sso/token', method: 'POST', body: JSON.stringify({ token: STUB_TOKEN }) };

/** The request's bytes, as autocannon sends them (Host, and for a body its type and length). */
function requestBytes(port: number, t: Target): Buffer {
  const head = `${t.method} ${t.path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`;
  return Buffer.from(t.body === undefined ? `${head}\r\n` : `${head}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(t.body)}\r\n\r\n${t.body}`);
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const LENGTH = /\r\ncontent-length: *(\d+)/i;

/**
 * `amount` requests over CONNECTIONS keep-alive connections, one in flight on each; resolves with
 * how many answers were not 200. Every answer is read to its end (Content-Length).
 */
function drive(port: number, request: Buffer, amount: number, sockets: Socket[]): Promise<number> {
  return new Promise((done, fail) => {
    let sent = 0;
    let received = 0;
    let bad = 0;
    const send = (s: Socket) => {
      if (sent < amount) {
        sent++;
        s.write(request);
      }
    };
    const pending = new Map<Socket, Buffer | null>();
    const onData = (s: Socket, chunk: Buffer) => {
      let buf = pending.get(s) ?? null;
      buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        const headEnd: number = buf.indexOf(CRLFCRLF);
        if (headEnd === -1) break;
        const head = buf.toString('latin1', 0, headEnd);
        const m = LENGTH.exec(head);
        const end: number = headEnd + 4 + (m === null ? 0 : Number(m[1]));
        if (buf.length < end) break;
        if (head.charCodeAt(9) !== 50 || head.charCodeAt(10) !== 48 || head.charCodeAt(11) !== 48) bad++;
        received++;
        buf = end === buf.length ? null : buf.subarray(end);
        if (received === amount) {
          for (const x of sockets) x.removeAllListeners('data');
          done(bad);
          return;
        }
        send(s);
        if (buf === null) break;
      }
      pending.set(s, buf);
    };
    for (const s of sockets) {
      s.on('data', (c: Buffer) => onData(s, c));
      s.once('error', fail);
      send(s);
    }
  });
}

async function openSockets(port: number): Promise<Socket[]> {
  return Promise.all(
    Array.from({ length: CONNECTIONS }, () => new Promise<Socket>((ok, fail) => {
      const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => ok(s));
      s.once('error', fail);
    })),
  );
}

// ---- A worker: one server and its client in this process. ----

async function startWorker(kind: string, root: string): Promise<{ port: number; target: Target }> {
  if (kind === 'raw') {
    // The floor of the harness: a `node:net` server writing a fixed answer the size of Tessera's
    // refresh answer for each request it reads (requests are of fixed size).
    const { PAIR } = await import('./post-shell-stubs.ts');
    const body = JSON.stringify(PAIR);
    const answer = Buffer.from(
      `HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `x-content-type-options: nosniff\r\ncache-control: no-store\r\nx-request-id: ${'0'.repeat(36)}\r\nx-correlation-id: ${'0'.repeat(36)}\r\n` +
        `Date: ${new Date().toUTCString()}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n${body}`,
    );
    const size = requestBytes(0, REFRESH).length;
    const server = createServer((socket) => {
      let have = 0;
      socket.on('data', (c: Buffer) => {
        have += c.length;
        let n = 0;
        while (have >= sizeFor(socket)) {
          have -= sizeFor(socket);
          n++;
        }
        for (let i = 0; i < n; i++) socket.write(answer);
      });
    });
    // The request's length depends on the port's digits (Host header).
    const sizeFor = (s: Socket) => size - 1 + String(s.localPort).length;
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const a = server.address();
    return { port: typeof a === 'object' && a ? a.port : 0, target: REFRESH };
  }
  if (kind === 'node-post') {
    const { nodeFloor } = await import('./post-shell-hello.ts');
    const server = nodeFloor();
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const a = server.address();
    return { port: typeof a === 'object' && a ? a.port : 0, target: REFRESH };
  }
  if (kind === 'hello-get' || kind === 'hello-post') {
    const { fastifyFloor } = await import('./post-shell-hello.ts');
    const app = fastifyFloor();
    await app.listen({ host: '127.0.0.1', port: 0 });
    const a = app.server.address();
    const port = typeof a === 'object' && a ? a.port : 0;
    return { port, target: kind === 'hello-get' ? { path: '/api/v1/session', method: 'GET' } : { ...REFRESH, path: '/refresh' } };
  }
  // A Tessera of `root`, its two operations below the routes stubbed (the preload).
  const dir = mkdtempSync(join(tmpdir(), 'tessera-shell-ab-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const { loadConfig } = (await import(join(root, 'src/config/config.ts'))) as typeof ConfigModule;
  const { createLogger, startServer } = (await import(join(root, 'src/server.ts'))) as typeof ServerModule;
  const config = loadConfig(
    {
      TESSERA_STORE: `sqlite:${join(dir, 'shell.db')}`,
      TESSERA_PORT: '0',
      COOKIE_SECRET_SIGN_KEY: 'shell-cookie-secret-' + 'y'.repeat(32),
      TESSERA_ADMIN_TOKEN: 'shell-admin-token-' + 'x'.repeat(32),
      TESSERA_LOG_LEVEL: 'info',
      TESSERA_SWEEP_INTERVAL_MS: '3600000',
    },
    dir,
  );
  const server = await startServer(config, { logger: createLogger(config, '/dev/null') });
  return { port: Number(new URL(server.url).port), target: kind === 'sso' ? SSO : REFRESH };
}

if (process.argv[2] === '--worker') {
  const [kind = 'refresh', root = ROOT] = process.argv.slice(3);
  const { port, target } = await startWorker(kind, root);
  const request = requestBytes(port, target);
  process.on('message', (msg: { amount: number; profile?: string }) => {
    void (async () => {
      const session = msg.profile === undefined ? null : new Session();
      if (session !== null) {
        session.connect();
        await session.post('Profiler.setSamplingInterval', { interval: 100 });
        await session.post('Profiler.enable');
        await session.post('Profiler.start');
      }
      // Fresh connections for each slice, opened before its CPU is counted (Tessera closes a
      // keep-alive connection idle for 5 s, as it would be between slices).
      const sockets = await openSockets(port);
      // The server's side of the accepts done too.
      await new Promise((r) => setTimeout(r, 20));
      const t0 = process.threadCpuUsage();
      const p0 = process.cpuUsage();
      const bad = await drive(port, request, msg.amount, sockets);
      const t1 = process.threadCpuUsage(t0);
      const p1 = process.cpuUsage(p0);
      for (const s of sockets) s.destroy();
      if (session !== null) {
        const { profile } = await session.post('Profiler.stop');
        writeFileSync(msg.profile as string, JSON.stringify(profile));
        session.disconnect();
      }
      process.send!({ main: (t1.user + t1.system) / msg.amount, all: (p1.user + p1.system) / msg.amount, bad });
    })();
  });
  // The bench gone (finished or failed) or stopping it, the worker goes too — through exit, so
  // that its folder is removed.
  process.once('disconnect', () => process.exit(0));
  process.once('SIGTERM', () => process.exit(0));
  process.send!({ ready: true });
} else {
  const ROUNDS = Number(process.env.AB_ROUNDS ?? 15);
  const SLICE = Number(process.env.AB_SLICE ?? 5000);
  const WARMUP = Number(process.env.AB_WARMUP ?? 40_000);
  const only = process.env.AB_ONLY;
  const roots: [string, string][] = [[ROOT, ''], ...process.argv.slice(2).map((p, i): [string, string] => [resolve(p), ` [ref ${i + 1}]`])];
  /** Fresh processes per Tessera row (one process's CPU per request can differ from another's of the same code by a third, docs/performance.md "Process-to-process spread"). */
  const PROCESSES = Number(process.env.AB_PROCESSES ?? 3);
  interface Row { name: string; kind: string; root: string; children: ChildProcess[]; main: number[]; all: number[]; bad: number }
  const rows: Row[] = [
    { name: 'raw socket floor (node:net, fixed answer)', kind: 'raw', root: ROOT, children: [], main: [], all: [], bad: 0 },
    { name: 'fastify hello world GET', kind: 'hello-get', root: ROOT, children: [], main: [], all: [], bad: 0 },
    { name: 'fastify hello world POST (body schema)', kind: 'hello-post', root: ROOT, children: [], main: [], all: [], bad: 0 },
    { name: 'node:http POST (no framework, the same answer and headers)', kind: 'node-post', root: ROOT, children: [], main: [], all: [], bad: 0 },
  ];
  for (const [root, mark] of roots) {
    if (only !== 'sso') rows.push({ name: `refresh shell${mark}`, kind: 'refresh', root, children: [], main: [], all: [], bad: 0 });
    if (only !== 'refresh') rows.push({ name: `sso/token shell${mark}`, kind: 'sso', root, children: [], main: [], all: [], bad: 0 });
  }
  if (roots.length > 1) console.log(roots.map(([r, m]) => `${m || '[this]'} ${r}`).join('\n'));
  const ask = (child: ChildProcess, amount: number) =>
    new Promise<{ main: number; all: number; bad: number }>((ok) => {
      child.once('message', (m) => ok(m as { main: number; all: number; bad: number }));
      child.send({ amount });
    });
  /** Every process with its row, in the order the first round runs them (rows' processes interleaved). */
  const slots: { row: Row; child: ChildProcess; main: number[] }[] = [];
  try {
    for (let p = 0; p < PROCESSES; p++) for (const row of rows) {
      if (p > 0 && (row.kind === 'raw' || row.kind === 'node-post' || row.kind.startsWith('hello'))) continue;
      const child = fork(fileURLToPath(import.meta.url), ['--worker', row.kind, row.root], {
        execArgv: ['--min-semi-space-size=16', '--import', join(ROOT, 'bench/post-shell-stubs.ts')],
        env: { PATH: process.env.PATH ?? '', POST_SHELL_ROOT: row.root },
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      row.children.push(child);
      slots.push({ row, child, main: [] });
      await new Promise<void>((ok, fail) => {
        child.once('message', () => ok());
        child.once('exit', (code) => fail(new Error(`${row.name}: worker exited ${code}`)));
      });
      // Every worker on one core: one runs at a time, so they never compete with each other.
      if (hasTaskset) pinNow(child.pid, 0);
    }
    for (const { row, child } of slots) {
      const w = await ask(child, WARMUP);
      if (w.bad > 0) throw new Error(`${row.name}: ${w.bad} answers not 200 in the warm-up`);
    }
    for (let round = 0; round < ROUNDS; round++) {
      // A row's figure for the round: the mean of its processes' slices.
      const sums = new Map<Row, { main: number; all: number; n: number }>();
      for (let i = 0; i < slots.length; i++) {
        const slot = slots[(i + round) % slots.length] as (typeof slots)[number];
        const { row, child } = slot;
        const r = await ask(child, SLICE);
        slot.main.push(r.main);
        const s = sums.get(row) ?? { main: 0, all: 0, n: 0 };
        sums.set(row, { main: s.main + r.main, all: s.all + r.all, n: s.n + 1 });
        row.bad += r.bad;
      }
      for (const [row, s] of sums) {
        row.main.push(s.main / s.n);
        row.all.push(s.all / s.n);
      }
    }
    // AB_PROFILE=<dir>: after the rounds, one slice of each row under the CPU profiler
    // (100 µs sampling), written as <dir>/<row>.cpuprofile.
    const profileDir = process.env.AB_PROFILE;
    if (profileDir !== undefined) {
      for (const row of rows) {
        await new Promise((ok) => {
          row.children[0]!.once('message', ok);
          row.children[0]!.send({ amount: Number(process.env.AB_PROFILE_SLICE ?? 40_000), profile: join(resolve(profileDir), `${row.name.replace(/[^\w]+/g, '-')}.cpuprofile`) });
        });
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    console.log(`\n# bench/post-shell-ab.ts — ${new Date().toISOString()}, Node ${process.version}, ${SLICE} requests × ${ROUNDS} rounds, ${CONNECTIONS} connections, client and server in one thread, ${PROCESSES} processes per Tessera row\n`);
    console.log('| scenario | main thread µs/req (median) | min–max | each process\'s median | all threads µs/req (median) | to the first refresh / sso row, median of the rounds\' ratios | cheaper than it in | not 200 |');
    console.log('|---|---:|---|---|---:|---:|---|---:|');
    const first = (kind: string) => rows.find((r) => r.kind === kind && r.root === ROOT);
    for (const row of rows) {
      const ref = first(row.kind === 'sso' ? 'sso' : 'refresh');
      const paired = ref === undefined || ref === row;
      const lower = paired ? '' : `${row.main.filter((x, i) => x < (ref.main[i] as number)).length} of ${ROUNDS}`;
      const ratio = paired ? '' : median(row.main.map((x, i) => x / (ref.main[i] as number))).toFixed(3);
      console.log(`| ${row.name} | ${median(row.main).toFixed(2)} | ${Math.min(...row.main).toFixed(1)}–${Math.max(...row.main).toFixed(1)} | ${slots.filter((x) => x.row === row).map((x) => median(x.main).toFixed(1)).join(' / ')} | ${median(row.all).toFixed(2)} | ${ratio} | ${lower} | ${row.bad} |`);
    }
  } finally {
    for (const { child } of slots) child.kill('SIGTERM');
  }
}
