// What only the PostgreSQL adapter has: libpq-style URLs, versioned migrations (and two
// processes migrating one fresh database at once), the audit table's append-only triggers, the
// pool's size and statement timeout, 503 when the database goes away and recovery when it is
// back, and the LISTEN feed's failures: a silent listener is noticed, and while the feed is down the
// session cache reads the store on every check (that every end reaches another instance is the
// feed suite of the conformance matrix, test/store/feed-conformance.ts).

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import { SessionCache } from '../../src/sessions/session-cache.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { migrations, planMigrations } from '../../src/store/postgres/migrations.ts';
import { openPostgresStore, type PostgresSessionStore } from '../../src/store/postgres/postgres-store.ts';
import { InvalidPostgresUrl, parsePostgresUrl, redactPostgresUrl } from '../../src/store/postgres/url.ts';
import {
  bringDatabaseBack,
  createTestDatabase,
  postgresUnavailable,
  requirePostgresOrSkip,
  refuseConnections,
  takeDatabaseAway,
  terminateListeners,
  type TestDatabase,
} from '../support/postgres.ts';

const T0 = Date.now();
const skip = requirePostgresOrSkip(await postgresUnavailable());

function session(tenantId: string, userId: string | null, kind: Session['kind'] = 'app', parent?: Session): Session {
  return issueSession(
    {
      tenantId,
      userId,
      kind,
      lifetime: DEFAULT_LIFETIMES[kind],
      authMethod: 'password',
      parentHandle: parent?.handle ?? null,
      ...(parent ? { notAfter: parent.absoluteExpiresAt } : {}),
    },
    T0,
  ).session;
}

async function created(store: PostgresSessionStore, s: Session): Promise<Session> {
  const r = await store.createSession(s, T0);
  if (!r.ok) throw new Error('not created');
  return r.session;
}

async function waitUntil(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('parsePostgresUrl (libpq parameters)', () => {
  const files: Record<string, string> = { '/ca.pem': 'CA', '/client.pem': 'CERT', '/client.key': 'KEY' };
  const read = (p: string): string => {
    const f = files[p];
    if (f === undefined) throw new Error('ENOENT');
    return f;
  };

  it('reads host, port, database, user and password; postgresql:// too', () => {
    const t = parsePostgresUrl('postgresql://ada:s%40cret@db.example.com:6543/tessera_prod?application_name=edge', read);
    expect(t).toMatchObject({ host: 'db.example.com', port: 6543, database: 'tessera_prod', user: 'ada', password: 's@cret', sslmode: 'disable', ssl: false, applicationName: 'edge' });
    expect(parsePostgresUrl('postgres://127.0.0.1/x', read)).toMatchObject({ port: 5432, user: 'postgres', database: 'x' });
  });

  it('gives sslmode its libpq meaning', () => {
    expect(parsePostgresUrl('postgres://h/d?sslmode=require', read).ssl).toMatchObject({ rejectUnauthorized: false });
    // require with a root certificate checks the chain (as verify-ca), not the host name
    const requireCa = parsePostgresUrl('postgres://h/d?sslmode=require&sslrootcert=/ca.pem', read).ssl;
    expect(requireCa).toMatchObject({ rejectUnauthorized: true, ca: 'CA' });
    expect(typeof (requireCa as { checkServerIdentity?: unknown }).checkServerIdentity).toBe('function');
    const full = parsePostgresUrl('postgres://h/d?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/client.pem&sslkey=/client.key', read);
    expect(full.ssl).toMatchObject({ rejectUnauthorized: true, ca: 'CA', cert: 'CERT', key: 'KEY', servername: 'h' });
    expect((full.ssl as { checkServerIdentity?: unknown }).checkServerIdentity).toBeUndefined();
    expect(parsePostgresUrl('postgres://h/d?sslmode=verify-ca&sslrootcert=system', read).sslmode).toBe('verify-full');
  });

  it('refuses what would silently weaken or misread the connection', () => {
    for (const bad of [
      'postgres://h/d?sslmode=prefer',
      'postgres://h/d?sslmode=allow',
      'postgres://h/d?sslmode=verify-ca',
      'postgres://h/d?sslmode=bogus',
      'postgres://h/d?sslrootcert=/ca.pem',
      'postgres://h/d?sslmode=require&sslcert=/client.pem',
      'postgres://h/d?sslmode=require&sslrootcert=/missing.pem',
      'postgres://h/d?ssl=true',
      'postgres://h:99999/d',
      'redis://h/d',
    ]) {
      expect(() => parsePostgresUrl(bad, read), bad).toThrow(InvalidPostgresUrl);
    }
  });

  it('never repeats a password in its messages', () => {
    expect(redactPostgresUrl('postgres://ada:hunter2@h/d?sslpassword=topsecret')).toBe('postgres://ada:***@h/d?sslpassword=***');
    try {
      parsePostgresUrl('postgres://ada:hunter2@h/d?sslmode=prefer', read);
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
    }
  });
});

describe('when nothing listens', () => {
  it('opening answers StoreUnavailable within the connect timeout', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer();
      srv.listen(0, '127.0.0.1', () => {
        const a = srv.address();
        srv.close(() => resolve(typeof a === 'object' && a ? a.port : 1));
      });
    });
    await expect(openPostgresStore(`postgres://postgres@127.0.0.1:${port}/x?connect_timeout=1`)).rejects.toBeInstanceOf(StoreUnavailable);
  });
});

describe.skipIf(skip)('PostgreSQL specifics', () => {
  let db: TestDatabase;
  let a: PostgresSessionStore;
  let b: PostgresSessionStore;

  beforeAll(async () => {
    db = await createTestDatabase('adapter');
    // Three processes opening one fresh database at once: one migrates, the others wait and find it done.
    const opened = await Promise.all([0, 1, 2].map(() => openPostgresStore(db.url, { max: 3 })));
    [a, b] = opened as [PostgresSessionStore, PostgresSessionStore];
    await (opened[2] as PostgresSessionStore).close();
  }, 30_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await db?.drop();
  });

  async function sql<R>(text: string, params: unknown[] = []): Promise<R[]> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query(text, params)).rows as R[];
    } finally {
      await c.end();
    }
  }

  it('says it is postgres, and has every migration once', async () => {
    expect(a.kind).toBe('postgres');
    const rows = await sql<{ version: number }>('SELECT version FROM tessera_migrations ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
    expect((await planMigrations(a.driver)).pending).toEqual([]);
  });

  it('`tessera migrate --dry-run` lists what is missing and changes nothing; `tessera migrate` applies it', async () => {
    const fresh = await createTestDatabase('cli');
    try {
      const cli = (args: string[]) =>
        spawnSync(process.execPath, [fileURLToPath(new URL('../../src/cli.ts', import.meta.url)), 'migrate', ...args], {
          encoding: 'utf8',
          timeout: 60_000,
          env: { PATH: process.env.PATH ?? '', TESSERA_STORE: fresh.url, COOKIE_SECRET_SIGN_KEY: 'k'.repeat(43) },
        });
      const dry = cli(['--dry-run']);
      expect(dry.status, dry.stderr).toBe(0);
      expect(dry.stdout).toContain('postgres: schema version 0');
      for (const m of migrations) expect(dry.stdout).toContain(`would apply ${m.version}: ${m.description}`);
      const c = new pg.Client({ connectionString: fresh.url });
      await c.connect();
      try {
        expect((await c.query("SELECT to_regclass('sessions') AS t")).rows[0]).toEqual({ t: null });
        const applied = cli([]);
        expect(applied.status, applied.stderr).toBe(0);
        expect(applied.stdout).toContain(`postgres: schema version 0 -> ${migrations.length}`);
        expect((await c.query('SELECT count(*)::int AS n FROM tessera_migrations')).rows[0]).toEqual({ n: migrations.length });
      } finally {
        await c.end();
      }
      const again = cli(['--dry-run']);
      expect(again.stdout).toContain('up to date');
    } finally {
      await fresh.drop();
    }
  }, 120_000);

  it('refuses a database whose schema is newer than this Tessera', async () => {
    const newer = await createTestDatabase('newer');
    try {
      const s = await openPostgresStore(newer.url);
      await s.close();
      const c = new pg.Client({ connectionString: newer.url });
      await c.connect();
      await c.query("INSERT INTO tessera_migrations (version, description) VALUES (999, 'from the future')");
      await c.end();
      await expect(openPostgresStore(newer.url)).rejects.toThrow(/newer than this Tessera/);
    } finally {
      await newer.drop();
    }
  });

  it('keeps the audit log append-only in the database: UPDATE, DELETE and TRUNCATE are refused', async () => {
    const tenantId = `t-audit-${randomBytes(4).toString('hex')}`;
    const input = {
      time: T0,
      tenantId,
      type: 'session.created',
      userId: 'u1',
      sessionId: null,
      kind: 'app',
      headers: { requestId: 'r', correlationId: null, activityId: null, tenantId, sessionId: null },
      ip: null,
      userAgent: null,
      location: null,
      details: {},
    };
    await a.audit.append(input);
    await a.audit.append({ ...input, time: T0 + 1 });
    await expect(sql("UPDATE audit_events SET type = 'x' WHERE tenant_id = $1", [tenantId])).rejects.toThrow(/append-only/);
    await expect(sql('DELETE FROM audit_events WHERE tenant_id = $1', [tenantId])).rejects.toThrow(/append-only/);
    await expect(sql('TRUNCATE audit_events')).rejects.toThrow(/append-only/);
    // Retention may remove what is behind the anchor, through prune (which moves the anchor first).
    expect(await a.audit.prune(T0 + 1, 10)).toBe(1);
    expect((await a.audit.chainState(tenantId)).anchor?.seq).toBe(1);
    expect(await sql('SELECT seq FROM audit_events WHERE tenant_id = $1', [tenantId])).toEqual([{ seq: '2' }]);
  });

  it('keeps the pool at its configured size under a burst', async () => {
    const small = await openPostgresStore(db.url, { max: 2 });
    try {
      const tag = `pool-${randomBytes(3).toString('hex')}`;
      await Promise.all(Array.from({ length: 30 }, (_, i) => small.hitCounter(`${tag}:${i % 3}`, 60_000, T0)));
      const [row] = await sql<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tessera' AND query NOT ILIKE 'LISTEN%'",
        [db.name],
      );
      // a and b have 3 each at most, `small` 2 at most.
      expect(Number(row?.n)).toBeLessThanOrEqual(3 + 3 + 2);
      expect((await small.peekCounter(`${tag}:0`, T0))?.count).toBe(10);
    } finally {
      await small.close();
    }
  });

  it('answers StoreUnavailable when a statement outlives the statement timeout (a lock held elsewhere)', async () => {
    const quick = await openPostgresStore(db.url, { max: 2, statementTimeoutMs: 300 });
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      const s = await created(a, session(`t-${randomBytes(4).toString('hex')}`, 'u1'));
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM sessions WHERE handle = $1 FOR UPDATE', [s.handle]);
      await expect(quick.touchSession(s.handle, T0 + 1, null)).rejects.toBeInstanceOf(StoreUnavailable);
      await holder.query('ROLLBACK');
      expect((await quick.touchSession(s.handle, T0 + 1, null))?.lastSeenAt).toBe(T0 + 1);
    } finally {
      await holder.end();
      await quick.close();
    }
  });

  it('a listening connection that goes silent without any event (half-open) is noticed by its probes: down, then up again', async () => {
    const proxy = await startTcpProxy(Number(new URL(db.url).port || 5432), new URL(db.url).hostname);
    const viaProxy = new URL(db.url);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const c = await openPostgresStore(viaProxy.toString(), { max: 2 });
    const changes: string[] = [];
    try {
      await c.ping();
      const before = proxy.connections.length;
      const sub = (await c.subscribeSessionEnds(() => undefined, (change) => changes.push(change))) as { close(): Promise<void>; isLive(): boolean };
      try {
        expect(proxy.connections.length).toBe(before + 1); // the LISTEN connection
        expect(sub.isLive()).toBe(true);
        const frozenAt = Date.now();
        proxy.freeze(before, true); // stays open, carries nothing: no error, no end
        await waitUntil('the probes to notice the silent listener', 15_000, () => !sub.isLive());
        expect(changes).toContain('down');
        process.stdout.write(`[postgres] silent listener detected after ${Date.now() - frozenAt} ms\n`);
        // A new listening connection through the proxy works: the feed is back.
        await waitUntil('the feed to come back', 15_000, () => sub.isLive());
        expect(changes.at(-1)).toBe('up');
      } finally {
        await sub.close();
      }
    } finally {
      await c.close();
      await proxy.close();
    }
  }, 60_000);

  it('while the feed is down the cache reads the store on every check; it resumes when the feed is back', async () => {
    const cache = new SessionCache(a);
    await cache.start(a);
    const sub = (await a.subscribeSessionEnds(() => undefined, () => undefined)) as { close(): Promise<void>; isLive(): boolean };
    try {
      const tenantId = `t-cache-${randomBytes(4).toString('hex')}`;
      const s = await created(a, session(tenantId, 'u1'));
      expect(await cache.getValid(s.handle, T0 + 1)).not.toBeNull();
      const missesBefore = cache.misses;
      expect(await cache.getValid(s.handle, T0 + 1)).not.toBeNull();
      expect(cache.misses).toBe(missesBefore); // served from the cache

      // The feed's connection ends and the database refuses new connections, so it stays down;
      // the pool's open connections still work.
      await a.ping();
      await refuseConnections(db.name);
      try {
        expect(await terminateListeners(db.name)).toBeGreaterThan(0);
        await waitUntil('the feed to notice', 5000, () => sub.isLive() === false);
        // A check now reads the store (and must not re-fill the cache) …
        expect(await cache.getValid(s.handle, T0 + 2)).not.toBeNull();
        // … so that a revocation whose notification is lost is still seen by the next check.
        await a.revokeSession(s.handle, 'admin', T0 + 2);
        expect(await cache.getValid(s.handle, T0 + 3)).toBeNull();
      } finally {
        await bringDatabaseBack(db.name);
      }
      await waitUntil('the feed to come back', 10_000, () => sub.isLive());
      const s2 = await created(a, session(tenantId, 'u2'));
      expect(await cache.getValid(s2.handle, T0 + 1)).not.toBeNull();
      const misses = cache.misses;
      expect(await cache.getValid(s2.handle, T0 + 1)).not.toBeNull();
      expect(cache.misses).toBe(misses); // cached again
    } finally {
      await sub.close();
      await cache.stop();
    }
  }, 30_000);

  it('answers StoreUnavailable while the database is away, and works again by itself when it is back', async () => {
    const tenantId = `t-away-${randomBytes(4).toString('hex')}`;
    const s = await created(a, session(tenantId, 'u1'));
    await takeDatabaseAway(db.name);
    try {
      await expect(a.getSessionByHandle(s.handle)).rejects.toBeInstanceOf(StoreUnavailable);
      await expect(a.createSession(session(tenantId, 'u1'), T0)).rejects.toBeInstanceOf(StoreUnavailable);
      await expect(a.ping()).rejects.toBeInstanceOf(StoreUnavailable);
    } finally {
      await bringDatabaseBack(db.name);
    }
    await waitUntil('the store to answer again', 10_000, async () => (await a.getSessionByHandle(s.handle)) !== null);
    expect((await a.getSessionByHandle(s.handle))?.handle).toBe(s.handle);
  }, 30_000);
});
