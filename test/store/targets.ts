// The conformance matrix: every store target × every conformance suite. One list of targets
// (TARGET_IDS); each target knows how to start what it needs (a Cluster, a Sentinel set), how to
// open a store on fresh data of its own, two store instances on the same data (two processes),
// and a writer and a reader whose feed of session ends the test can cut. `describeMatrix(id)`
// declares every suite on one target; each target has a test file of its own
// (test/store/matrix-<id>.test.ts), so that vitest runs the targets in parallel.
//
// The targets:
// - sqlite           one connection to a file (DatabaseSync is synchronous: Promise.all
//                    interleaves nothing, so the races are only the adapter's logic);
// - sqlite-workers   connections in worker threads on one file, calls going round-robin:
//                    real concurrent writers, so every race (sessions, consents, federation,
//                    oidc, audit) proves the file lock, not the event loop;
// - redis            the shared standalone server (TESSERA_TEST_REDIS_URL or localhost), each
//                    store on a key prefix of its own that is deleted afterwards;
// - redis-cluster    3 masters started by the file;
// - redis-sentinel   a master, a replica and 3 Sentinels started by the file;
// - postgres         each store on a database of its own, dropped afterwards.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import pg from 'pg';
import { afterAll, beforeAll, describe } from 'vitest';
import { isErrorCode } from '../../src/domain/error-codes.ts';
import { Conflict, StoreUnavailable, TesseraError } from '../../src/domain/errors.ts';
import type { Store } from '../../src/store/port.ts';
import {
  DEFAULT_STATEMENT_TIMEOUT_MS,
  openPostgresStore,
  parsePostgresUrl,
  type PostgresSessionStore,
} from '../../src/store/postgres/postgres-store.ts';
import { openConnection } from '../../src/store/redis/connection.ts';
import { openRedisStore, parseRedisUrl } from '../../src/store/redis/redis-store.ts';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.ts';
import { createTestDatabase, postgresUnavailable, requirePostgresOrSkip, terminateListeners, type TestDatabase } from '../support/postgres.ts';
import {
  purgePrefix,
  redisBinariesMissing,
  redisUrlForTests,
  requireOrSkip,
  startRedisCluster,
  startRedisSentinelSet,
  testPrefix,
  type StartedRedis,
} from '../support/redis.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { describeAuditConformance } from './audit-conformance.ts';
import { describeConsentConformance } from './consent-conformance.ts';
import { describeStoreConformance } from './conformance.ts';
import { describeFederationConformance } from './federation-conformance.ts';
import { describeFeedConformance } from './feed-conformance.ts';
import { describeOidcConformance } from './oidc-conformance.ts';
import type { CallbackToken, HandleToken, WorkerCall, WorkerMessage, WorkerOptions } from './sqlite-worker.ts';

export const TARGET_IDS = ['sqlite', 'sqlite-workers', 'redis', 'redis-cluster', 'redis-sentinel', 'postgres'] as const;
export type TargetId = (typeof TARGET_IDS)[number];

/** One store instance on data of its own. */
export interface OpenedTarget {
  store: Store;
  /** Releases what `open` made. Safe to call after `store.close()`. */
  close: () => Promise<void>;
}

/** Two store instances (two processes, in effect) on the same data. */
export interface StorePair {
  a: Store;
  b: Store;
  close: () => Promise<void>;
  /**
   * Loses a tenant's audit records after `seq` and sets its chain head back to record `seq`, below
   * both instances (they are not told): what a failover to a replica that missed the newest
   * appends, or a restore from an older backup, leaves.
   */
  rewindAudit?: (tenantId: string, seq: number) => Promise<void>;
}

/** A writer and a reader on the same data, and a way to make the reader's feed lose ends. */
export interface FeedRig {
  writer: Store;
  reader: Store;
  /** From now on the reader may not hear ends (its connection is cut, or its log is pruned). */
  cut: () => Promise<void>;
  /** The reader may hear again; whatever it lost, its subscriber is told (`down`, then `up`). */
  heal: () => Promise<void>;
  /**
   * Lets the reader read what was published: a no-op where ends are pushed (Redis, PostgreSQL);
   * on a SQLite reader that does not poll (the gap rig), a write through it delivers at once.
   */
  deliver: () => Promise<void>;
  close: () => Promise<void>;
}

export interface StoreTarget {
  id: TargetId;
  name: string;
  /** True to skip (the component is missing and not required); throws when it is required. */
  skip: () => Promise<boolean>;
  /** Starts what every suite of the file shares (a Cluster, a Sentinel set). */
  start: () => Promise<void>;
  stop: () => Promise<void>;
  open: (label: string) => Promise<OpenedTarget>;
  openPair: (label: string) => Promise<StorePair>;
  /** `gap`: the reader is one whose feed `cut` can break deterministically. */
  openFeedRig: (opts: { gap: boolean }) => Promise<FeedRig>;
}

/**
 * Declares every conformance suite on one target, inside one describe whose hooks start and stop
 * what the target needs. `extra` declares target-specific tests that share the started servers.
 */
export async function describeMatrix(id: TargetId, extra?: (target: StoreTarget) => void): Promise<StoreTarget> {
  const target = storeTarget(id);
  const skip = await target.skip();
  describe.skipIf(skip)(target.name, () => {
    beforeAll(() => target.start());
    afterAll(() => target.stop());
    describeStoreConformance(`${id}: sessions`, () => target.open('sessions'));
    describeConsentConformance(id, () => target.open('consents'));
    describeFederationConformance(id, () => target.open('federation'));
    describeOidcConformance(id, () => target.open('oidc'));
    describeAuditConformance(`${id}: audit`, () => target.openPair('audit'));
    describeFeedConformance(id, target);
    extra?.(target);
  });
  return target;
}

export function storeTarget(id: TargetId): StoreTarget {
  switch (id) {
    case 'sqlite':
      return sqliteTarget();
    case 'sqlite-workers':
      return sqliteWorkersTarget();
    case 'redis':
      return redisStandaloneTarget();
    case 'redis-cluster':
      return redisClusterTarget();
    case 'redis-sentinel':
      return redisSentinelTarget();
    case 'postgres':
      return postgresTarget();
  }
}

// ---- SQLite ---------------------------------------------------------------------------------

function tempDirs(): { make(): string; removeAll(): void } {
  const dirs: string[] = [];
  return {
    make: () => {
      const dir = mkdtempSync(join(tmpdir(), 'tessera-matrix-'));
      dirs.push(dir);
      return dir;
    },
    removeAll: () => {
      for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The SQLite side of a gap rig: the reader does not poll (its ends come only when it writes
 * itself), so a test can prune the log past it before it reads, as the expiry sweep's pruning
 * would; the next end it reads shows the gap.
 */
function sqliteGap(path: string, reader: Store): Pick<FeedRig, 'cut' | 'heal' | 'deliver'> {
  let highWater = 0;
  let nudges = 0;
  const raw = <T>(fn: (db: DatabaseSync) => T): T => {
    const db = new DatabaseSync(path);
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  return {
    cut: () => {
      const row = raw((db) => db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'session_ends'").get()) as { seq: number } | undefined;
      highWater = row?.seq ?? 0;
      return Promise.resolve();
    },
    heal: () => {
      raw((db) => db.prepare('DELETE FROM session_ends WHERE seq > ?').run(highWater));
      return Promise.resolve();
    },
    deliver: () => reader.putMeta('feed-rig-nudge', ++nudges),
  };
}

const NO_GAP = { cut: () => Promise.resolve(), heal: () => Promise.resolve(), deliver: () => Promise.resolve() };

function sqliteTarget(): StoreTarget {
  const dirs = tempDirs();
  return {
    id: 'sqlite',
    name: 'SQLite, one connection to a file',
    skip: () => Promise.resolve(false),
    start: () => Promise.resolve(),
    stop: () => Promise.resolve(dirs.removeAll()),
    async open(label) {
      const store = await openSqliteStore(join(dirs.make(), `${label}.db`));
      return { store, close: () => store.close() };
    },
    async openPair(label) {
      const path = join(dirs.make(), `${label}.db`);
      const a = await openSqliteStore(path);
      const b = await openSqliteStore(path);
      return { a, b, close: () => Promise.all([a.close(), b.close()]).then(() => undefined), rewindAudit: (t, seq) => Promise.resolve(rewindSqliteAudit(path, t, seq)) };
    },
    async openFeedRig({ gap }) {
      const path = join(dirs.make(), 'feed.db');
      const writer = await openSqliteStore(path);
      const reader = await openSqliteStore(path, gap ? { feedPollMs: 3_600_000 } : {});
      return {
        writer,
        reader,
        ...(gap ? sqliteGap(path, reader) : NO_GAP),
        close: () => Promise.all([writer.close(), reader.close()]).then(() => undefined),
      };
    },
  };
}

/** Connections in worker threads on one file (sqlite-worker.ts); a store view calls some of them. */
interface WorkerPool {
  /** A store whose calls go round-robin to the workers `indexes`. */
  view(indexes: number[]): Store;
  terminate(): Promise<void>;
}

async function openWorkerPool(size: number, options: WorkerOptions): Promise<WorkerPool> {
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const callbacks = new Map<number, (...args: unknown[]) => void>();
  let nextId = 0;
  let nextCallback = 0;
  let subStores: string[] = [];

  const workers = await Promise.all(
    Array.from(
      { length: size },
      () =>
        new Promise<Worker>((resolve, reject) => {
          const w = new Worker(new URL('./sqlite-worker.ts', import.meta.url), { workerData: options });
          w.on('message', (m: WorkerMessage) => {
            if ('ready' in m) {
              subStores = m.subStores;
              resolve(w);
            } else if ('callback' in m) {
              callbacks.get(m.callback)?.(...m.args);
            } else {
              const p = pending.get(m.id);
              pending.delete(m.id);
              if (m.ok) p?.resolve(m.value);
              else p?.reject(revive(m.error));
            }
          });
          w.on('error', (err: Error) => {
            reject(err);
            for (const p of pending.values()) p.reject(err);
          });
        }),
    ),
  );

  function callOn(w: Worker, path: string[], args: unknown[]): Promise<unknown> {
    const id = nextId++;
    const sent = args.map((a): unknown => {
      if (typeof a !== 'function') return a;
      const token: CallbackToken = { __callback: nextCallback++ };
      callbacks.set(token.__callback, a as (...args: unknown[]) => void);
      return token;
    });
    return new Promise<unknown>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      const call: WorkerCall = { id, path, args: sent };
      w.postMessage(call);
    }).then((value) => {
      if (typeof value !== 'object' || value === null || typeof (value as HandleToken).__handle !== 'number') return value;
      // A value with methods stayed in that worker (a subscription): its methods call it there.
      const token = value as HandleToken;
      return Object.fromEntries(token.methods.map((m) => [m, (...a: unknown[]) => callOn(w, ['#handle', String(token.__handle), m], a)]));
    });
  }

  function view(indexes: number[]): Store {
    const mine = indexes.map((i) => workers[i] as Worker);
    let next = 0;
    const call = (path: string[], args: unknown[]): Promise<unknown> => {
      if (path.length === 1 && path[0] === 'close') return Promise.all(mine.map((w) => callOn(w, path, args))).then(() => undefined);
      return callOn(mine[next++ % mine.length] as Worker, path, args);
    };
    const methods = (prefix: string[]): object =>
      new Proxy(
        {},
        {
          get(_target, prop) {
            if (typeof prop !== 'string' || prop === 'then') return undefined;
            return (...args: unknown[]) => call([...prefix, prop], args);
          },
        },
      );
    const subs = new Map(subStores.map((s) => [s, methods([s])]));
    return new Proxy({} as Store, {
      get(_target, prop) {
        if (prop === 'kind') return 'sqlite';
        if (typeof prop !== 'string' || prop === 'then') return undefined;
        return subs.get(prop) ?? ((...args: unknown[]) => call([prop], args));
      },
    });
  }

  return {
    view,
    terminate: () => Promise.all(workers.map((w) => w.terminate())).then(() => undefined),
  };
}

/** Rebuilds an error that crossed the thread boundary, keeping its class, code and status. */
function revive(e: { name: string; message: string; code?: string; status?: number }): Error {
  const code = e.code !== undefined && isErrorCode(e.code) ? e.code : undefined;
  if (e.status === 409 && code !== undefined) return new Conflict(code, e.message);
  if (e.status === 503) return new StoreUnavailable(e.message);
  if (e.status !== undefined && code !== undefined) return new TesseraError(e.status, code, e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

/** How many connections (worker threads) a store of this target spreads its calls over. */
const WORKERS = 4;

/**
 * Worker threads start slowly (each loads the adapter), so the suites that never close their
 * store share one pool of WORKERS connections on one file (their tests make their own ids, as on a
 * shared Redis); the session suite has a pool of its own (its test of `close` closes one), and so
 * has the gap rig (its reader does not poll).
 */
function sqliteWorkersTarget(): StoreTarget {
  const dirs = tempDirs();
  const pools: WorkerPool[] = [];
  const pool = async (size: number, options: WorkerOptions): Promise<WorkerPool> => {
    const p = await openWorkerPool(size, options);
    pools.push(p);
    return p;
  };
  let shared: Promise<WorkerPool> | null = null;
  let sharedPath = '';
  const sharedPool = (): Promise<WorkerPool> => (shared ??= pool(WORKERS, { path: (sharedPath = join(dirs.make(), 'shared.db')) }));
  const all = Array.from({ length: WORKERS }, (_, i) => i);
  const kept = () => Promise.resolve(); // the shared pool ends with the target
  return {
    id: 'sqlite-workers',
    name: `SQLite, ${WORKERS} connections in worker threads on one file`,
    skip: () => Promise.resolve(false),
    start: () => Promise.resolve(),
    async stop() {
      shared = null;
      await Promise.all(pools.splice(0).map((p) => p.terminate()));
      dirs.removeAll();
    },
    async open(label) {
      if (label !== 'sessions') return { store: (await sharedPool()).view(all), close: kept };
      const p = await pool(WORKERS, { path: join(dirs.make(), `${label}.db`) });
      return { store: p.view(all), close: () => p.terminate() };
    },
    async openPair() {
      // Two "processes" of two connections each.
      const p = await sharedPool();
      // The rewind goes past the workers' connections to the file, as a restore would.
      return { a: p.view([0, 1]), b: p.view([2, 3]), close: kept, rewindAudit: (t, seq) => Promise.resolve(rewindSqliteAudit(sharedPath, t, seq)) };
    },
    async openFeedRig({ gap }) {
      if (!gap) {
        // The reader is one connection, so that its subscription and its writes are in one worker.
        const p = await sharedPool();
        return { writer: p.view([0, 1]), reader: p.view([2]), ...NO_GAP, close: kept };
      }
      const path = join(dirs.make(), 'feed-gap.db');
      const writers = await pool(1, { path });
      const readers = await pool(1, { path, feedPollMs: 3_600_000 });
      const reader = readers.view([0]);
      return {
        writer: writers.view([0]),
        reader,
        ...sqliteGap(path, reader),
        close: () => Promise.all([writers.terminate(), readers.terminate()]).then(() => undefined),
      };
    },
  };
}

// ---- Redis ----------------------------------------------------------------------------------

/** Stores on one Redis URL, each on a key prefix of its own that closing deletes. */
function redisStores(url: () => string) {
  async function open(label: string): Promise<OpenedTarget> {
    const prefix = testPrefix(label);
    const store = await openRedisStore(url(), { prefix });
    return {
      store,
      close: async () => {
        await store.close();
        await purgePrefix(url(), prefix);
      },
    };
  }
  async function openPair(label: string): Promise<StorePair> {
    const prefix = testPrefix(label);
    const a = await openRedisStore(url(), { prefix });
    const b = await openRedisStore(url(), { prefix });
    return {
      a,
      b,
      close: async () => {
        await a.close();
        await b.close();
        await purgePrefix(url(), prefix);
      },
      rewindAudit: (t, seq) => rewindRedisAudit(url(), prefix, t, seq),
    };
  }
  return { open, openPair };
}

/** StorePair.rewindAudit on Redis (key layout: src/store/redis/audit.ts). */
async function rewindRedisAudit(url: string, prefix: string, tenantId: string, seq: number): Promise<void> {
  const base = `${prefix}{a:${tenantId}}:`;
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  try {
    const entries = (await conn.send(`${base}log`, ['XRANGE', `${base}log`, '-', '+'])) as Array<[string, string[]]>;
    const seqOf = (id: string) => Number(id.split('-')[1]);
    const kept = entries.find(([id]) => seqOf(id) === seq);
    if (kept === undefined) throw new Error(`no audit record ${seq} of ${tenantId}`);
    for (const [id] of entries.filter(([id]) => seqOf(id) > seq)) {
      await conn.send(`${base}log`, ['XDEL', `${base}log`, id]);
      await conn.send(`${base}anomalies`, ['XDEL', `${base}anomalies`, id]);
    }
    const record = JSON.parse(kept[1][1] as string) as { hash: string };
    await conn.send(`${base}head`, ['HSET', `${base}head`, 'seq', String(seq), 'hash', record.hash, 'ms', kept[0].split('-')[0] as string]);
  } finally {
    await conn.close();
  }
}

/** StorePair.rewindAudit on SQLite: past the append-only trigger, as a restore would be. */
function rewindSqliteAudit(path: string, tenantId: string, seq: number): void {
  const db = new DatabaseSync(path);
  try {
    db.exec('PRAGMA busy_timeout = 5000');
    db.exec('BEGIN IMMEDIATE');
    const trigger = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_delete'").get() as { sql: string };
    db.exec('DROP TRIGGER audit_events_no_delete');
    db.prepare('DELETE FROM audit_events WHERE tenant_id = ? AND seq > ?').run(tenantId, seq);
    const { hash } = db.prepare('SELECT hash FROM audit_events WHERE tenant_id = ? AND seq = ?').get(tenantId, seq) as { hash: string };
    db.prepare('UPDATE audit_chains SET head_seq = ?, head_hash = ? WHERE tenant_id = ?').run(seq, hash, tenantId);
    db.exec(trigger.sql);
    db.exec('COMMIT');
  } finally {
    db.close();
  }
}

/** StorePair.rewindAudit on PostgreSQL: past the append-only triggers (a superuser's session), as a restore would be. */
async function rewindPostgresAudit(url: string, tenantId: string, seq: number): Promise<void> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query('BEGIN');
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq > $2', [tenantId, seq]);
    await c.query('UPDATE audit_chains SET head_seq = $2, head_hash = (SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2) WHERE tenant_id = $1', [tenantId, seq]);
    await c.query('COMMIT');
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Ends every subscriber connection on these servers (started by the test: nobody else's). */
async function killSubscribers(url: string): Promise<void> {
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 2000 });
  try {
    for (const send of await conn.masters()) await send(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
  } finally {
    await conn.close();
  }
}

/** A rig whose reader is on servers the test started: `cut` ends its subscriber connection. */
function ownServerRig(url: () => string): (opts: { gap: boolean }) => Promise<FeedRig> {
  return async () => {
    const { a: writer, b: reader, close } = await redisStores(url).openPair('feed');
    return {
      writer,
      reader,
      cut: () => killSubscribers(url()),
      heal: () => Promise.resolve(),
      deliver: () => Promise.resolve(),
      close,
    };
  };
}

function redisStandaloneTarget(): StoreTarget {
  let url = process.env.TESSERA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const stores = redisStores(() => url);
  return {
    id: 'redis',
    name: 'Redis standalone',
    async skip() {
      const shared = await redisUrlForTests();
      url = shared.url;
      return requireOrSkip(shared.unavailable);
    },
    start: () => Promise.resolve(),
    stop: () => Promise.resolve(),
    open: stores.open,
    openPair: stores.openPair,
    async openFeedRig({ gap }) {
      if (!gap) {
        const { a: writer, b: reader, close } = await stores.openPair('feed');
        return { writer, reader, ...NO_GAP, close };
      }
      // The shared server has other clients' subscribers: the reader goes through a TCP proxy of
      // its own, whose connections `cut` ends (and refuses new ones until `heal`).
      const prefix = testPrefix('feed-gap');
      const server = new URL(url);
      const proxy: TcpProxy = await startTcpProxy(Number(server.port || 6379), server.hostname);
      const viaProxy = new URL(url);
      viaProxy.hostname = '127.0.0.1';
      viaProxy.port = String(proxy.port);
      const writer = await openRedisStore(url, { prefix });
      const reader = await openRedisStore(viaProxy.toString(), { prefix });
      return {
        writer,
        reader,
        cut: () => {
          proxy.refuseNew(true);
          for (const c of proxy.connections) c.client.destroy();
          return Promise.resolve();
        },
        heal: () => Promise.resolve(proxy.refuseNew(false)),
        deliver: () => Promise.resolve(),
        close: async () => {
          await writer.close();
          await reader.close();
          await proxy.close();
          await purgePrefix(url, prefix);
        },
      };
    },
  };
}

function redisClusterTarget(): StoreTarget {
  let cluster: StartedRedis | undefined;
  const url = (): string => {
    if (!cluster) throw new Error('the test cluster did not start');
    return cluster.url;
  };
  const stores = redisStores(url);
  return {
    id: 'redis-cluster',
    name: 'Redis Cluster, 3 masters started here',
    skip: () => Promise.resolve(requireOrSkip(redisBinariesMissing())),
    async start() {
      cluster = await startRedisCluster();
    },
    stop: async () => cluster?.stop(),
    open: stores.open,
    openPair: stores.openPair,
    openFeedRig: ownServerRig(url),
  };
}

function redisSentinelTarget(): StoreTarget {
  let set: StartedRedis | undefined;
  const url = (): string => {
    if (!set) throw new Error('the test Sentinel set did not start');
    return set.url;
  };
  const stores = redisStores(url);
  return {
    id: 'redis-sentinel',
    name: 'Redis through Sentinel: a master, a replica and 3 Sentinels started here',
    skip: () => Promise.resolve(requireOrSkip(redisBinariesMissing())),
    async start() {
      // No failover wanted here (test/chaos/sentinel-failover.test.ts has those): a slow machine
      // must not look like a dead master.
      set = await startRedisSentinelSet({ downAfterMs: 30_000 });
    },
    stop: async () => set?.stop(),
    open: stores.open,
    openPair: stores.openPair,
    openFeedRig: ownServerRig(url),
  };
}

// ---- PostgreSQL -----------------------------------------------------------------------------

/**
 * A PostgreSQL store with a pool of `max` connections. TESSERA_TEST_PG_DRIVER=postgres.js runs
 * the suites on the other driver (the benchmark compares them).
 */
export async function openPostgresTestStore(url: string, max = 6): Promise<PostgresSessionStore> {
  if (process.env.TESSERA_TEST_PG_DRIVER !== 'postgres.js') return openPostgresStore(url, { max });
  const { openPostgresJsDriver } = await import('../support/postgresjs-driver.ts');
  const driver = await openPostgresJsDriver(parsePostgresUrl(url), { max, statementTimeoutMs: DEFAULT_STATEMENT_TIMEOUT_MS });
  return openPostgresStore(url, { driver });
}

function postgresTarget(): StoreTarget {
  const databases: TestDatabase[] = [];
  const openStore = (url: string): Promise<Store> => openPostgresTestStore(url);
  async function database(label: string): Promise<TestDatabase> {
    const db = await createTestDatabase(label);
    databases.push(db);
    return db;
  }
  async function openPair(label: string): Promise<StorePair & { db: TestDatabase }> {
    const db = await database(label);
    const a = await openStore(db.url);
    const b = await openStore(db.url);
    return {
      a,
      b,
      db,
      close: async () => {
        await a.close();
        await b.close();
        await db.drop();
      },
      rewindAudit: (t, seq) => rewindPostgresAudit(db.url, t, seq),
    };
  }
  return {
    id: 'postgres',
    name: 'PostgreSQL, a database of its own per store',
    skip: async () => requirePostgresOrSkip(await postgresUnavailable()),
    start: () => Promise.resolve(),
    stop: async () => {
      await Promise.all(databases.splice(0).map((d) => d.drop()));
    },
    async open(label) {
      const db = await database(label);
      const store = await openStore(db.url);
      return {
        store,
        close: async () => {
          await store.close();
          await db.drop();
        },
      };
    },
    openPair,
    async openFeedRig() {
      const { a: writer, b: reader, db, close } = await openPair('feed');
      return {
        writer,
        reader,
        // Ends the LISTEN connections of this database; the reader's feed listens again by itself.
        cut: async () => {
          await terminateListeners(db.name);
        },
        heal: () => Promise.resolve(),
        deliver: () => Promise.resolve(),
        close,
      };
    },
  };
}
