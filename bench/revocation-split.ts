// node bench/revocation-split.ts [--trials=200] [--a-core=0|1|none] [--probe=stream|poll|gap] [--rt-witness]
//   [--server-flags=<node flags for A and B, comma-separated>] [--keep]
//
// Where the time between a logout on process A and the first refusal on process B goes (issue
// 13 goal 6), trial by trial, with B under the full-speed check as in bench/run.ts's revocation
// section. A and B are Tessera servers on one Redis (their own key prefix) started with
// bench/revocation-trace.ts preloaded, which logs, on the machine's monotonic clock, when each
// traced HTTP request was parsed and answered and when the ends feed's message was read from
// the subscriber socket. A witness process (a bare Redis subscriber, nothing else to do; with
// --rt-witness under SCHED_FIFO so that no load delays it) stamps when Redis published the end.
// Each trial is split into:
//   a.http    logout sent by the harness → parsed by A (A's socket and event loop)
//   a.store   parsed by A → publish seen by the witness (A's route, the revoke script in Redis)
//   b.feed    publish seen by the witness → read by B (B's event loop under the load)
//   b.probe   read by B → the refusing probe parsed by B (when the next probe came, and its queue)
//   b.answer  refusing probe parsed by B → its 401 read by the harness
// Environment: BENCH_REDIS_URL, BENCH_CONNECTIONS (default 50).

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from './server-process.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const hr = () => Number(process.hrtime.bigint()) / 1e6;

if (process.argv[2] === '--witness') {
  // The witness: SUBSCRIBE on a raw socket, one line per message read: "<ms> <payload>".
  const [, , , channel, out] = process.argv as [string, string, string, string, string];
  const u = new URL(REDIS_URL);
  const s = connect(Number(u.port || 6379), u.hostname, () => s.write(`SUBSCRIBE ${channel}\r\n`));
  s.setNoDelay(true);
  const lines: string[] = [];
  s.on('data', (c: Buffer) => {
    const t = hr();
    const text = c.toString('latin1');
    if (text.includes('message')) lines.push(`${t} ${text.replace(/\r\n/g, ' ')}`);
  });
  process.on('SIGTERM', () => {
    writeFileSync(out, lines.join('\n') + '\n');
    process.exit(0);
  });
  process.stdout.write('ready\n');
} else {
  await main();
}

async function main(): Promise<void> {
  const TRIALS = Number(arg('trials') ?? 200);
  const A_CORE = arg('a-core') ?? '0';
  const PROBE = arg('probe') ?? 'stream';
  /** Node/V8 flags for both servers, comma-separated (e.g. --server-flags=--single-threaded-gc). */
  const SERVER_FLAGS = (arg('server-flags') ?? '').split(',').filter(Boolean);
  const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
  const EVERY = Number(arg('every') ?? 1);
  const STREAM_WIDTH = 16;
  const agent = new Agent({ keepAlive: true, maxSockets: STREAM_WIDTH });
  const get = (url: string, headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const req = request(url, { agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });
  const NODE = process.execPath;
  const dir = mkdtempSync(join(tmpdir(), 'tessera-rev-split-'));
  const prefix = `bench-rev-split-${randomBytes(3).toString('hex')}:`;
  const admin = randomBytes(24).toString('hex');
  const children: ChildProcess[] = [];
  const pin = (pid: number | undefined, core: string) => {
    if (pid !== undefined && core !== 'none') spawnSync('taskset', ['-a', '-p', '-c', core, String(pid)], { stdio: 'ignore' });
  };

  async function server(name: string, core: string) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const trace = join(dir, `${name}.trace`);
    writeFileSync(trace, '');
    const child = spawn(NODE, [...SERVER_FLAGS, '--import', join(ROOT, 'bench/revocation-trace.ts'), join(ROOT, 'src/cli.ts'), 'start'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        TESSERA_PORT: String(port),
        TESSERA_STORE: REDIS_URL,
        TESSERA_REDIS_PREFIX: prefix,
        TESSERA_ADMIN_TOKEN: admin,
        COOKIE_SECRET_SIGN_KEY: 'bench-cookie-secret-' + 'z'.repeat(32),
        TESSERA_LOG_LEVEL: 'info',
        TESSERA_PUBLIC_URL: 'http://localhost:8080',
        REVOCATION_TRACE_FILE: trace,
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(child);
    await waitFor(`${url}/healthz`, child);
    pin(child.pid, core);
    return { url, trace, child };
  }

  const h = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
  try {
    const a = await server('a', A_CORE);
    const b = await server('b', '0');
    const put = await fetch(`${a.url}/api/v1/admin/tenants/bench`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' });
    if (!put.ok) throw new Error(`tenant ${put.status}`);
    const login = async (email: string) => {
      await fetch(`${a.url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 'bench', email, password: 'bench password' }) }).then((r) => r.arrayBuffer());
      const r = await fetch(`${a.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'x-tenant-id': 'bench', 'content-type': 'application/json', 'x-auth-mode': 'token' },
        body: JSON.stringify({ email, password: 'bench password' }),
      });
      if (!r.ok) throw new Error(`login ${r.status} ${await r.text()}`);
      const body = (await r.json()) as { userSessionToken: string; sessionId: string };
      return { token: body.userSessionToken, sid: body.sessionId };
    };
    const busy = await login('busy@example.com');
    const victims: { token: string; sid: string }[] = [];
    for (let i = 0; i < TRIALS; i += 4) victims.push(...(await Promise.all([0, 1, 2, 3].filter((k) => i + k < TRIALS).map((k) => login(`victim${i + k}@example.com`)))));

    const witnessOut = join(dir, 'witness.trace');
    const rt = process.argv.includes('--rt-witness');
    const wargs = [NODE, fileURLToPath(import.meta.url), '--witness', `${prefix}ends`, witnessOut];
    const witness = rt ? spawn('chrt', ['-f', '10', ...wargs], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(wargs[0] as string, wargs.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(witness);
    await new Promise<void>((r) => witness.stdout.once('data', () => r()));

    const load = spawn('taskset', ['-c', '1', NODE, join(ROOT, 'bench/load.ts'), JSON.stringify({ url: `${b.url}/api/v1/session`, connections: CONNECTIONS, duration: 600, headers: { authorization: `Bearer ${busy.token}` } })], { stdio: 'ignore' });
    children.push(load);
    await new Promise((r) => setTimeout(r, 1000));

    interface Probe {
      k: number;
      sent: number;
      got: number;
      status: number;
    }
    /** The Redis server's process (same machine): its main thread's wait for the CPU is part of a.store. */
    const redisPid = Number(/process_id:(\d+)/.exec(spawnSync('redis-cli', ['-u', REDIS_URL, 'INFO', 'server'], { encoding: 'utf8' }).stdout ?? '')?.[1]);
    const trials: { id: string; sid: string; t0: number; probes: Probe[]; logoutDone: number; aSched: number[]; bSched: number[]; rWait: number }[] = [];
    /** [ms on the CPU, ms runnable but waiting for it] of a process's main thread so far (/proc schedstat). */
    const sched = (pid: number | undefined) => {
      try {
        const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ').map(Number);
        return [(run as number) / 1e6, (wait as number) / 1e6];
      } catch {
        return [NaN, NaN];
      }
    };
    for (let i = 0; i < victims.length; i++) {
      const v = victims[i] as { token: string; sid: string };
      const id = `t${i}`;
      const hdr = { authorization: `Bearer ${v.token}` };
      const first = await fetch(`${b.url}/api/v1/session`, { headers: hdr });
      if (first.status !== 200) throw new Error(`victim not valid on B: ${first.status} ${await first.text()}`);
      await first.arrayBuffer().catch(() => undefined);
      const r0 = sched(redisPid);
      const a0 = sched(a.child.pid);
      const b0 = sched(b.child.pid);
      const t0 = hr();
      let logoutDone = NaN;
      let aSched = [NaN, NaN];
      const out = fetch(`${a.url}/api/v1/auth/logout`, { method: 'POST', headers: { ...hdr, 'x-bench-trace': `${id}-logout` } }).then(async (r) => {
        await r.arrayBuffer();
        logoutDone = hr();
        const a1 = sched(a.child.pid);
        aSched = [(a1[0] as number) - (a0[0] as number), (a1[1] as number) - (a0[1] as number)];
      });
      const probes: Probe[] = [];
      if (PROBE === 'stream') {
        // Open loop: a probe every EVERY ms (at most STREAM_WIDTH in flight, on kept-alive
        // connections), whatever the earlier ones answer, until one is refused.
        let refused = false;
        let inflight = 0;
        const pending: Promise<void>[] = [];
        for (let k = 0; !refused && hr() - t0 < 5000; k++) {
          if (inflight < STREAM_WIDTH) {
            inflight++;
            const sent = hr();
            pending.push(
              get(`${b.url}/api/v1/session`, { ...hdr, 'x-bench-trace': `${id}-p${k}` }).then((status) => {
                inflight--;
                probes.push({ k, sent, got: hr(), status });
                if (status === 401) refused = true;
              }),
            );
          }
          await new Promise((r) => setTimeout(r, EVERY));
        }
        await Promise.all(pending);
        probes.sort((x, y) => x.sent - y.sent);
      } else {
        for (let k = 0; hr() - t0 < 5000; k++) {
          if (PROBE === 'gap' && k > 0) await new Promise((r) => setTimeout(r, 1));
          const sent = hr();
          const r = await fetch(`${b.url}/api/v1/session`, { headers: { ...hdr, 'x-bench-trace': `${id}-p${k}` } });
          await r.arrayBuffer();
          probes.push({ k, sent, got: hr(), status: r.status });
          if (r.status === 401) break;
        }
      }
      await out;
      const b1 = sched(b.child.pid);
      const r1 = sched(redisPid);
      trials.push({ id, sid: v.sid, t0, probes, logoutDone, aSched, bSched: [(b1[0] as number) - (b0[0] as number), (b1[1] as number) - (b0[1] as number)], rWait: (r1[1] as number) - (r0[1] as number) });
    }
    load.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    witness.kill('SIGTERM');
    await new Promise((r) => witness.once('exit', r));

    // ---- the split ----
    const events = (file: string) => {
      const req = new Map<string, number>();
      const res = new Map<string, number>();
      const feed: { t: number; text: string }[] = [];
      const gc: { t: number; ms: number }[] = [];
      const redis: number[] = [];

      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const [kind, x, y] = line.split(' ');
        if (kind === 'req') req.set(x as string, Number(y) / 1e6);
        else if (kind === 'res') res.set(x as string, Number(y) / 1e6);
        else if (kind === 'feed') feed.push({ t: Number(x) / 1e6, text: line });
        else if (kind === 'redis') redis.push(Number(x) / 1e6);
        else if (kind === 'gc') gc.push({ t: Number(x) / 1e6, ms: Number(y) });
      }
      return { req, res, feed, redis, gc };
    };
    const A = events(a.trace);
    const B = events(b.trace);
    const W = readFileSync(witnessOut, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => ({ t: Number(l.slice(0, l.indexOf(' '))), text: l }));
    const parts = ['a.http', 'a.store', 'b.feed', 'b.probe', 'b.answer', 'published', 'refused.sent', 'refused.read'] as const;
    const rows: Record<(typeof parts)[number], number>[] = [];
    const extra: { polls: number; probeRtt: number[]; logout: number; aCpu: number; aWait: number; bWait: number; rWait: number; aGc: number; bGc: number; servedAfterRefused: number }[] = [];
    /** Milliseconds of a process's GC pauses within [from, to]. */
    const gcIn = (gc: { t: number; ms: number }[], from: number, to: number) =>
      gc.reduce((sum, g) => sum + Math.max(0, Math.min(to, g.t + g.ms) - Math.max(from, g.t)), 0);
    for (const t of trials) {
      const w = W.find((e) => e.text.includes(t.sid))?.t ?? NaN;
      const bf = B.feed.find((e) => e.text.includes(t.sid))?.t ?? NaN;
      const refusing = t.probes.find((p) => p.status === 401);
      const firstRead = Math.min(...t.probes.filter((p) => p.status === 401).map((p) => p.got));
      const bReq = refusing ? (B.req.get(`${t.id}-p${refusing.k}`) ?? NaN) : NaN;
      const aReq = A.req.get(`${t.id}-logout`) ?? NaN;
      rows.push({
        'a.http': aReq - t.t0,
        'a.store': w - aReq,
        'b.feed': bf - w,
        'b.probe': bReq - bf,
        'b.answer': (refusing?.got ?? NaN) - bReq,
        published: w - t.t0,
        'refused.sent': (refusing?.sent ?? NaN) - t.t0,
        'refused.read': firstRead - t.t0,
      });
      extra.push({
        polls: t.probes.length,
        probeRtt: t.probes.map((p) => p.got - p.sent),
        logout: t.logoutDone - t.t0,
        aCpu: t.aSched[0] as number,
        aWait: t.aSched[1] as number,
        bWait: t.bSched[1] as number,
        rWait: t.rWait,
        aGc: gcIn(A.gc, t.t0, w),
        bGc: gcIn(B.gc, t.t0, firstRead),
        servedAfterRefused: refusing ? t.probes.filter((p) => p.sent > refusing.sent && p.status !== 401).length : 0,
      });
    }
    const q = (xs: number[], p: number) => {
      const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
      return s.length ? (s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number) : NaN;
    };
    const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '–');
    console.log(`\n# bench/revocation-split.ts — ${new Date().toISOString()}, Node ${process.version}, ${trials.length} trials, A on core ${A_CORE}, B on core 0, load (${CONNECTIONS} connections) on core 1, probe ${PROBE}${rt ? ', RT witness' : ''}${SERVER_FLAGS.length ? `, servers run with ${SERVER_FLAGS.join(' ')}` : ''}\n`);
    console.log('| part (ms) | p50 | p90 | p99 | max |');
    console.log('|---|---:|---:|---:|---:|');
    for (const p of parts) {
      const xs = rows.map((r) => r[p]);
      console.log(`| ${p} | ${f(q(xs, 50))} | ${f(q(xs, 90))} | ${f(q(xs, 99))} | ${f(Math.max(...xs.filter(Number.isFinite)))} |`);
    }
    const rtts = extra.flatMap((e) => e.probeRtt);
    console.log(`\nprobe round trips on B: p50 ${f(q(rtts, 50))}, p90 ${f(q(rtts, 90))}, p99 ${f(q(rtts, 99))} ms; polls per trial p50 ${q(extra.map((e) => e.polls), 50)}, max ${Math.max(...extra.map((e) => e.polls))}; logout answered on A after p50 ${f(q(extra.map((e) => e.logout), 50))}, p99 ${f(q(extra.map((e) => e.logout), 99))} ms; probes sent after the first refused one that were served: ${extra.reduce((n, e) => n + e.servedAfterRefused, 0)}`);
    console.log(`A's main thread from the logout's start to its answer: on the CPU p50 ${f(q(extra.map((e) => e.aCpu), 50))}, p99 ${f(q(extra.map((e) => e.aCpu), 99))} ms; runnable but waiting for the CPU p50 ${f(q(extra.map((e) => e.aWait), 50))}, p90 ${f(q(extra.map((e) => e.aWait), 90))}, p99 ${f(q(extra.map((e) => e.aWait), 99))} ms`);
    console.log(`GC pauses within a trial: on A until the publish p50 ${f(q(extra.map((e) => e.aGc), 50))}, p99 ${f(q(extra.map((e) => e.aGc), 99))}, max ${f(Math.max(...extra.map((e) => e.aGc)))} ms; on B until the refusal was read p50 ${f(q(extra.map((e) => e.bGc), 50))}, p99 ${f(q(extra.map((e) => e.bGc), 99))}, max ${f(Math.max(...extra.map((e) => e.bGc)))} ms`);
    const pauses = (gc: { ms: number }[]) => `${gc.length} pauses, p50 ${f(q(gc.map((g) => g.ms), 50))}, p99 ${f(q(gc.map((g) => g.ms), 99))}, max ${f(Math.max(0, ...gc.map((g) => g.ms)))} ms, ${f(gc.reduce((x, g) => x + g.ms, 0))} ms in all`;
    console.log(`GC pauses over the whole run: B ${pauses(B.gc)}; A ${pauses(A.gc)}`);
    console.log('\nslowest trials (ms):');
    const order = rows.map((r, i) => [r['refused.read'], i] as const).sort((x, y) => y[0] - x[0]).slice(0, 8);
    for (const [, i] of order) {
      const r = rows[i] as Record<string, number>;
      const e = extra[i] as (typeof extra)[number];
      console.log(`  ${parts.map((p) => `${p} ${f(r[p] as number)}`).join(', ')}; polls ${e.polls}; A until its answer: ${f(e.aCpu)} on CPU, ${f(e.aWait)} waiting for it; B waiting for the CPU ${f(e.bWait)} and Redis ${f(e.rWait)} in the whole trial; GC pauses until published on A ${f(e.aGc)}, until the refusal was read on B ${f(e.bGc)}`);
    }
    if (process.argv.includes('--keep')) writeFileSync(join(dir, 'trials.json'), JSON.stringify({ trials, rows, extra }));
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    spawnSync('sh', ['-c', `redis-cli -u ${REDIS_URL} --scan --pattern '${prefix}*' | xargs -r -n 500 redis-cli -u ${REDIS_URL} unlink >/dev/null`]);
    if (process.argv.includes('--keep')) console.log(`(traces kept in ${dir})`);
    else rmSync(dir, { recursive: true, force: true });
  }
}
