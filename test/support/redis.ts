// Redis for tests: the shared standalone server, a throw-away 3-master Cluster and a throw-away
// Sentinel set-up, each on free ports in a temp dir, plus cleanup of a test's own key prefix.
// A throw-away server that loses its port to another process before it binds is started again on
// another port (test/support/ports.ts), and a server counts as up only when the one answering on
// its port is that process.
//
// A test that needs Redis and cannot get it SKIPS — unless TESSERA_REQUIRE_REDIS=1 (CI sets it),
// in which case it FAILS: requireOrSkip() is the one place that rule lives.
//
// Never FLUSHALL / FLUSHDB: the shared server on 127.0.0.1:6379 is used by other runs too. Each
// test uses a random prefix and deletes exactly the keys under it (purgePrefix).

import { execFile, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';
import { startOnFreePort } from './ports.ts';

// ------------------------------------------------------------------ skip-or-fail rule

/** True when CI demands that Redis tests run (TESSERA_REQUIRE_REDIS=1). */
export function redisRequired(): boolean {
  return process.env.TESSERA_REQUIRE_REDIS === '1';
}

/**
 * Decides what a Redis test does when Redis is missing. `reason` null means Redis is there: run
 * (returns false). Otherwise: with TESSERA_REQUIRE_REDIS=1 it throws (the test file fails);
 * without, it returns true (skip) and says why once on stderr.
 */
export function requireOrSkip(reason: string | null): boolean {
  if (reason === null) return false;
  if (redisRequired()) {
    throw new Error(`Redis is required (TESSERA_REQUIRE_REDIS=1) but ${reason}`);
  }
  process.stderr.write(`[tessera tests] skipping Redis tests: ${reason}\n`);
  return true;
}

// ------------------------------------------------------------------ the shared standalone server

export interface RedisForTests {
  url: string;
  /** null when it answers PING; otherwise why not. */
  unavailable: string | null;
}

/** TESSERA_TEST_REDIS_URL or redis://127.0.0.1:6379, and whether it answers (bounded: ~1.5 s). */
export async function redisUrlForTests(): Promise<RedisForTests> {
  const url = process.env.TESSERA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  try {
    const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
    try {
      await conn.send(undefined, ['PING']);
    } finally {
      await conn.close();
    }
    return { url, unavailable: null };
  } catch (err) {
    return { url, unavailable: `${url} does not answer (${err instanceof Error ? err.message : String(err)})` };
  }
}

/** Whether redis-server and redis-cli can be started here (for the Cluster and Sentinel tests). */
export function redisBinariesMissing(): string | null {
  for (const bin of ['redis-server', 'redis-cli']) {
    const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 5000 });
    if (r.error || r.status !== 0) return `${bin} is not installed or does not run`;
  }
  return null;
}

/** A fresh key prefix for one test: `tessera-test:<random>:`. */
export function testPrefix(label = 't'): string {
  return `tessera-test:${label}:${randomBytes(6).toString('hex')}:`;
}

/**
 * Deletes every key under `prefix` (SCAN MATCH + UNLINK), on every master of a cluster. Keys are
 * unlinked one by one: in a cluster a multi-key UNLINK must stay within one slot.
 */
export async function purgePrefix(url: string, prefix: string): Promise<number> {
  if (prefix.length < 8) throw new Error(`refusing to purge the short prefix "${prefix}"`);
  const pattern = prefix.replace(/[*?[\]\\]/g, '\\$&') + '*';
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  let deleted = 0;
  try {
    for (const send of await conn.masters()) {
      let cursor = '0';
      do {
        const [next, keys] = (await send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'])) as [string, string[]];
        cursor = next;
        await Promise.all(keys.map((k) => send(['UNLINK', k])));
        deleted += keys.length;
      } while (cursor !== '0');
    }
  } finally {
    await conn.close();
  }
  return deleted;
}

// ------------------------------------------------------------------ throw-away servers

export interface StartedRedis {
  url: string;
  /** The data nodes' ports (the masters). */
  ports: number[];
  /** Kills the processes and removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.kill('SIGKILL');
  });
}

/** A port that is free now, and whose +10000 (the cluster bus port) is free too when asked. */
async function freePort(withBus = false): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 25000);
    if ((await portIsFree(port)) && (!withBus || (await portIsFree(port + 10000)))) return port;
  }
  throw new Error('could not find a free port for a test Redis');
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function startProcess(args: string[], dir: string, name: string): ChildProcess {
  installExitHook();
  const child = spawn('redis-server', args, { cwd: dir, stdio: 'ignore' });
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  child.unref();
  Object.defineProperty(child, 'tesseraName', { value: name });
  return child;
}

function cli(args: string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  let log = '';
  if (logFile) {
    try {
      log = `\n--- ${logFile} (tail) ---\n${readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n')}`;
    } catch {
      // no log
    }
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError instanceof Error ? ` (${lastError.message})` : ''}${log}`);
}

/**
 * Starts redis-server with `args` and waits until the server answering on `port` is this process
 * (INFO's process_id): a PONG from whoever else took the port must not pass for it. A process that
 * exits because the port (or its cluster bus port) was taken — its log says "Address already in
 * use" — throws an EADDRINUSE error, which startOnFreePort answers with another port.
 */
async function launch(port: number, args: string[], dir: string, name: string, logFile: string, timeoutMs = 10_000, cliArgs: string[] = []): Promise<ChildProcess> {
  const logFrom = existsSync(logFile) ? statSync(logFile).size : 0;
  const newLog = () => {
    try {
      return readFileSync(logFile).subarray(logFrom).toString('utf8');
    } catch {
      return '';
    }
  };
  const child = startProcess(args, dir, name);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = newLog();
      const err = new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before serving on port ${port}\n--- ${logFile} ---\n${log.split('\n').slice(-20).join('\n')}`);
      throw log.includes('Address already in use') ? Object.assign(err, { code: 'EADDRINUSE' }) : err;
    }
    try {
      const pid = /process_id:(\d+)/.exec(await cli([...cliArgs, '-p', String(port), 'INFO', 'server'], 2000))?.[1];
      if (pid !== undefined && Number(pid) === child.pid) return child;
    } catch {
      // not serving yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${name} on port ${port}\n--- ${logFile} (tail) ---\n${newLog().split('\n').slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopAll(children: ChildProcess[], dir: string): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.kill('SIGCONT'); // a paused server would ignore SIGTERM until resumed
          const kill = setTimeout(() => c.kill('SIGKILL'), 3000);
          c.once('exit', () => {
            clearTimeout(kill);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
  rmSync(dir, { recursive: true, force: true });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | null = null;
  return () => (p ??= fn());
}

/** A server certificate for 127.0.0.1 and the CA that signed it (PEM files), for a TLS redis-server. */
export interface RedisTlsFiles {
  cert: string;
  key: string;
  ca: string;
  /** The CA certificate's PEM text (for a client to trust). */
  caPem: string;
  /** Removes the files. */
  remove(): void;
}

/** A throw-away CA and a certificate for 127.0.0.1 signed by it (openssl, in a temp dir). */
export function redisTlsFiles(): RedisTlsFiles {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-redis-tls-'));
  const f = (name: string) => join(dir, name);
  writeFileSync(f('ext'), 'subjectAltName=IP:127.0.0.1\n');
  const steps = [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1', '-subj', '/CN=tessera test CA'],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('redis.key'), '-out', f('redis.csr'), '-subj', '/CN=127.0.0.1'],
    ['x509', '-req', '-in', f('redis.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('redis.crt'), '-days', '1', '-extfile', f('ext')],
  ];
  for (const step of steps) {
    const r = spawnSync('openssl', step, { encoding: 'utf8', timeout: 30_000 });
    if (r.error || r.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`openssl ${step.slice(0, 2).join(' ')} failed: ${r.error?.message ?? r.stderr}`);
    }
  }
  return { cert: f('redis.crt'), key: f('redis.key'), ca: f('ca.crt'), caPem: readFileSync(f('ca.crt'), 'utf8'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Starts one throw-away standalone redis-server on a free port (for tests that stop, pause or
 * restart the server). `restart` starts it again on the same port after `kill`. With `aof`, the
 * append-only file is on with that `appendfsync`, so a restart (even after SIGKILL) reloads it.
 * With `replicaOf`, it starts as a replica of the server on that port (a second site). `pick`
 * chooses the candidate ports (a test makes the first one collide). With `tls` (redisTlsFiles()),
 * it serves TLS only, and its url is rediss://.
 */
export async function startRedisStandalone(opts: { aof?: 'everysec' | 'always'; replicaOf?: number; pick?: () => Promise<number>; tls?: RedisTlsFiles } = {}): Promise<
  StartedRedis & { port: number; kill(): Promise<void>; restart(): Promise<void>; pause(): void; resume(): void }
> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-redis-'));
  const persistence = opts.aof ? ['--appendonly', 'yes', '--appendfsync', opts.aof] : ['--appendonly', 'no'];
  const replica = opts.replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(opts.replicaOf)] : [];
  const logFile = join(dir, 'redis.log');
  // With `tls`, TLS only: no plain port; redis-cli (the readiness check) trusts the test CA.
  const tls = opts.tls;
  const listen = (port: number) =>
    tls === undefined ? ['--port', String(port)] : ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no'];
  const args = (port: number) => [...listen(port), '--bind', '127.0.0.1', '--dir', dir, '--logfile', logFile, '--save', '', ...persistence, ...replica];
  const children: ChildProcess[] = [];
  const launchOn = async (port: number) => {
    const child = await launch(port, args(port), dir, `redis ${port}`, logFile, 10_000, tls === undefined ? [] : ['--tls', '--cacert', tls.ca]);
    children.push(child);
    return child;
  };
  let port = 0;
  let current: ChildProcess;
  try {
    current = await startOnFreePort(
      async (p) => {
        const child = await launchOn(p);
        port = p;
        return child;
      },
      { pick: opts.pick ?? (() => freePort()) },
    );
  } catch (err) {
    await stopAll(children, dir);
    throw err;
  }
  const kill = async () => {
    const c = current;
    if (c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  return {
    url: `${tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${port}`,
    port,
    ports: [port],
    stop: once(() => stopAll(children, dir)),
    kill,
    restart: async () => {
      await kill();
      // The same port: that is what a restart is (a test's clients know it).
      current = await launchOn(port);
    },
    pause: () => void current.kill('SIGSTOP'),
    resume: () => void current.kill('SIGCONT'),
  };
}

/** Picks free ports none of which was handed out before (with `withBus`, nor their bus ports). */
function distinctPorts(withBus = false): () => Promise<number> {
  const taken = new Set<number>();
  return async () => {
    for (;;) {
      const p = await freePort(withBus);
      const clash = taken.has(p) || (withBus && (taken.has(p + 10000) || taken.has(p - 10000)));
      if (!clash) {
        taken.add(p);
        return p;
      }
    }
  };
}

/** Waits for every start; when one failed, stops those that started (pushed to `children`) and throws. */
async function allStarted<T extends { child: ChildProcess }>(starts: Promise<T>[], children: ChildProcess[]): Promise<T[]> {
  const settled = await Promise.allSettled(starts);
  for (const s of settled) if (s.status === 'fulfilled') children.push(s.value.child);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/**
 * Starts 3 master redis-server processes with cluster mode on free ports, joins them with
 * `redis-cli --cluster create` (no replicas) and waits for cluster_state:ok on every node.
 */
export async function startRedisCluster(): Promise<StartedRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cluster-'));
  const pick = distinctPorts(true);
  const node = (port: number) =>
    launch(
      port,
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '5000',
        '--dir', dir,
        '--logfile', join(dir, `${port}.log`),
        '--save', '',
        '--appendonly', 'no',
      ],
      dir,
      `cluster node ${port}`,
      join(dir, `${port}.log`),
    ).then((child) => ({ port, child }));
  const children: ChildProcess[] = [];
  const stop = once(() => stopAll(children, dir));
  let ports: number[];
  try {
    ports = (await allStarted([1, 2, 3].map(() => startOnFreePort(node, { pick })), children)).map((n) => n.port);
    await cli(['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], 30_000);
    for (const port of ports) {
      await waitFor(`cluster_state:ok on port ${port}`, 30_000, async () =>
        (await cli(['-p', String(port), 'CLUSTER', 'INFO'])).includes('cluster_state:ok'),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, ports, stop };
}

/** Starts a Sentinel on `port` from a configuration file written for that port. */
function launchSentinel(port: number, dir: string, name: string, lines: string[]): Promise<ChildProcess> {
  const conf = join(dir, `${name}-${port}.conf`);
  const logFile = join(dir, `${name}.log`);
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `logfile ${logFile}`, ...lines, ''].join('\n'));
  return launch(port, [conf, '--sentinel'], dir, `${name} ${port}`, logFile);
}

/**
 * Starts one master redis-server and one Sentinel (`redis-server sentinel.conf --sentinel`)
 * monitoring it as `mymaster`, on free ports; waits until the Sentinel names the master.
 */
export async function startRedisSentinel(): Promise<StartedRedis & { masterPort: number; sentinelPort: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-sentinel-'));
  const pick = distinctPorts();
  const children: ChildProcess[] = [];
  const stop = once(() => stopAll(children, dir));
  let masterPort = 0;
  let sentinelPort = 0;
  try {
    const masterLog = join(dir, 'master.log');
    children.push(
      await startOnFreePort(
        async (p) => {
          const child = await launch(p, ['--port', String(p), '--bind', '127.0.0.1', '--dir', dir, '--logfile', masterLog, '--save', '', '--appendonly', 'no'], dir, 'sentinel master', masterLog);
          masterPort = p;
          return child;
        },
        { pick },
      ),
    );
    children.push(
      await startOnFreePort(
        async (p) => {
          const child = await launchSentinel(p, dir, 'sentinel', [
            `sentinel monitor mymaster 127.0.0.1 ${masterPort} 1`,
            'sentinel down-after-milliseconds mymaster 5000',
            'sentinel failover-timeout mymaster 10000',
          ]);
          sentinelPort = p;
          return child;
        },
        { pick },
      ),
    );
    await waitFor(
      `the Sentinel on port ${sentinelPort} to name mymaster`,
      15_000,
      async () => (await cli(['-p', String(sentinelPort), 'SENTINEL', 'get-master-addr-by-name', 'mymaster'])).includes(String(masterPort)),
      join(dir, 'sentinel.log'),
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `redis-sentinel://127.0.0.1:${sentinelPort}/mymaster`, ports: [masterPort], masterPort, sentinelPort, stop };
}

/**
 * A Sentinel set-up for failover tests: a master, one replica that replicates through a TCP proxy
 * (so a test can slow its link down), and three Sentinels (quorum 2, master down after 1 s, or
 * `downAfterMs` for a set that should not fail over on a slow machine).
 */
export async function startRedisSentinelSet(opts: { downAfterMs?: number } = {}): Promise<
  StartedRedis & {
    masterPort: number;
    replicaPort: number;
    sentinelPorts: number[];
    /** The replica's replication link. */
    link: TcpProxy;
    killMaster(): Promise<void>;
    /** The port Sentinel names as master now. */
    currentMasterPort(): Promise<number>;
  }
> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-sentinels-'));
  const pick = distinctPorts();
  const common = (p: number, name: string) => ['--port', String(p), '--bind', '127.0.0.1', '--dir', dir, '--logfile', join(dir, `${name}.log`), '--save', '', '--appendonly', 'no', '--dbfilename', `${name}.rdb`];
  const children: ChildProcess[] = [];
  let link: TcpProxy | null = null;
  const stop = once(async () => {
    await link?.close();
    await stopAll(children, dir);
  });
  let masterPort = 0;
  let replicaPort = 0;
  let master: ChildProcess;
  let sentinelPorts: number[];
  try {
    master = await startOnFreePort(
      async (p) => {
        const child = await launch(p, common(p, 'master'), dir, 'failover master', join(dir, 'master.log'));
        masterPort = p;
        return child;
      },
      { pick },
    );
    children.push(master);
    link = await startTcpProxy(masterPort);
    const linkPort = link.port;
    children.push(
      await startOnFreePort(
        async (p) => {
          const args = [...common(p, 'replica'), '--replicaof', '127.0.0.1', String(linkPort), '--replica-announce-ip', '127.0.0.1'];
          const child = await launch(p, args, dir, 'failover replica', join(dir, 'replica.log'));
          replicaPort = p;
          return child;
        },
        { pick },
      ),
    );
    await waitFor('the replica to be in sync', 15_000, async () => (await cli(['-p', String(replicaPort), 'INFO', 'replication'])).includes('master_link_status:up'));
    const sentinel = (i: number) => (p: number) =>
      launchSentinel(p, dir, `sentinel-${i}`, [
        `sentinel monitor mymaster 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds mymaster ${opts.downAfterMs ?? 1000}`,
        'sentinel failover-timeout mymaster 5000',
        'sentinel parallel-syncs mymaster 1',
      ]).then((child) => ({ port: p, child }));
    sentinelPorts = (await allStarted([0, 1, 2].map((i) => startOnFreePort(sentinel(i), { pick })), children)).map((s) => s.port);
    for (const sp of sentinelPorts) {
      await waitFor(`Sentinel ${sp} to know the replica and the other Sentinels`, 20_000, async () => {
        const info = await cli(['-p', String(sp), 'SENTINEL', 'master', 'mymaster']);
        const lines = info.trim().split('\n');
        const field = (name: string) => lines[lines.indexOf(name) + 1];
        return field('num-slaves') === '1' && field('num-other-sentinels') === '2';
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `redis-sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/mymaster`,
    ports: [masterPort, replicaPort],
    masterPort,
    replicaPort,
    sentinelPorts,
    link: link as TcpProxy,
    stop,
    killMaster: () =>
      new Promise<void>((resolve) => {
        if (master.exitCode !== null || master.signalCode !== null) return resolve();
        master.once('exit', () => resolve());
        master.kill('SIGKILL');
      }),
    currentMasterPort: async () => {
      const out = await cli(['-p', String(sentinelPorts[0]), 'SENTINEL', 'get-master-addr-by-name', 'mymaster']);
      return Number(out.trim().split('\n')[1]);
    },
  };
}
