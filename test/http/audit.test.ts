// The audit trail end to end (issue 7), on SQLite and on Redis: every lifecycle event once with
// the request headers (docs/api.md §Request headers), IP, user agent and location; the admin API
// over the log; the hash chain catching a record edited or deleted directly in the store (API and
// `tessera audit verify`); JSON-lines export that verifies offline; no raw secret in the store or
// the logs after a full login / refresh / reuse / logout scenario; /metrics; /readyz; and the live
// SSE stream.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { ChainVerifier, type AuditRecord } from '../../src/domain/audit-chain.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import { buildApp } from '../../src/http/app.ts';
import type { App, Deps } from '../../src/http/deps.ts';
import { liveStreamSettings } from '../../src/http/routes/admin-audit.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';
import type { Store } from '../../src/store/open.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { admin, ADMIN_TOKEN, COOKIE_SECRET, openTestStore, provision, redisTestUrl, startTestServer, uniqueTenant, type StoreChoice, type TestServer } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';
import { buildMmdb, cityRecord } from '../support/mmdb-writer.ts';
import { CLI } from '../support/tessera-process.ts';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery';
const WRONG = 'wrong horse battery!';
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0';
const GEO = { 'x-geo-country': 'DE', 'x-geo-city': 'Berlin', 'x-geo-lat': '52.52', 'x-geo-lon': '13.405', 'x-forwarded-for': '198.51.100.7' };

type Res = Awaited<ReturnType<App['inject']>>;

function cookieOf(res: Res, name: string): string | null {
  const raw = res.headers['set-cookie'];
  for (const c of Array.isArray(raw) ? raw : raw ? [raw] : []) {
    const pair = c.split(';')[0] as string;
    const eq = pair.indexOf('=');
    if (pair.slice(0, eq) === name) return pair.slice(eq + 1);
  }
  return null;
}

describe.each(storeChoices())('the audit trail on %s', (choice: StoreChoice) => {
  let app: App;
  let deps: Deps;
  let runtime: Runtime;
  let store: Store;
  let cleanup: () => Promise<void>;
  let storeEnv: Record<string, string>;
  let sqlitePath: string | null = null;
  let redisPrefix = '';
  let pgUrl: string | null = null;
  const logLines: string[] = [];
  const clock = new ManualClock(Date.UTC(2026, 2, 2, 10, 0, 0));

  beforeAll(async () => {
    const opened = await openTestStore(choice);
    store = opened.store;
    cleanup = opened.cleanup;
    sqlitePath = opened.config.store.sqlitePath;
    redisPrefix = opened.config.redisPrefix;
    pgUrl = opened.config.store.kind === 'postgres' ? opened.config.store.url : null;
    storeEnv = { TESSERA_STORE: opened.config.store.url, TESSERA_REDIS_PREFIX: redisPrefix, COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET };
    const config = loadConfig({
      ...storeEnv,
      TESSERA_ADMIN_TOKEN: ADMIN_TOKEN,
      TESSERA_PUBLIC_URL: 'https://tessera.test',
      TESSERA_TRUSTED_PROXIES: '127.0.0.1',
    });
    runtime = await createRuntime({ ...config, cookieSecret: COOKIE_SECRET }, store, clock, {
      adminTokenHash: hashSecret(ADMIN_TOKEN),
      throttle: { accountFailures: 50, ipFailures: 500, windowMs: 60_000 },
    });
    deps = runtime.deps;
    const logger = pino({ level: 'info', base: { service: 'tessera' } }, { write: (line: string) => void logLines.push(line) });
    app = await buildApp(deps, { logger });
    runtime.serve(app);
    await runtime.start();
  });
  afterAll(async () => {
    await runtime?.stop(); // the listener, the background work, the feeds, the store
    await cleanup?.();
  });

  const listAudit = async (query: string): Promise<{ items: Array<AuditRecord & { time: string }>; nextCursor: string | null }> => {
    await deps.monitor.flush();
    const res = await app.inject({ url: `/api/v1/admin/audit?${query}`, headers: admin });
    expect(res.statusCode).toBe(200);
    return res.json();
  };
  const exported = async (tenantId: string): Promise<AuditRecord[]> => {
    await deps.monitor.flush();
    const res = await app.inject({ url: `/api/v1/admin/audit/export?tenantId=${tenantId}`, headers: admin });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
    return res.body
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditRecord);
  };
  const verify = async (tenantId?: string) => {
    await deps.monitor.flush();
    const res = await app.inject({ url: `/api/v1/admin/audit/verify${tenantId ? `?tenantId=${tenantId}` : ''}`, headers: admin });
    expect(res.statusCode).toBe(200);
    return res.json() as { ok: boolean; tenants: Array<{ tenantId: string; ok: boolean; records: number; problems: Array<{ seq: number; problem: string }> }> };
  };

  /** A tenant with a few records: n logins (token mode), for tamper tests. */
  async function tenantWithRecords(n: number): Promise<string> {
    const tenantId = uniqueTenant();
    const email = 'tamper@example.com';
    await provision(app, tenantId, email, PASSWORD);
    for (let i = 0; i < n; i++) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
      expect(r.statusCode).toBe(200);
    }
    await deps.monitor.flush();
    return tenantId;
  }

  // ---- tampering directly in the store ------------------------------------------------------

  async function withRedis<T>(fn: (conn: RedisConnection) => Promise<T>): Promise<T> {
    const conn = await openConnection(parseRedisUrl(redisTestUrl()), { connectTimeoutMs: 1500, commandTimeoutMs: 2000 });
    try {
      return await fn(conn);
    } finally {
      await conn.close();
    }
  }

  async function withPg<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: pgUrl as string });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  async function editRecord(tenantId: string, seq: number): Promise<void> {
    if (choice === 'postgres') {
      await withPg(async (c) => {
        // The schema refuses it...
        await expect(c.query('UPDATE audit_events SET body = body WHERE tenant_id = $1 AND seq = $2', [tenantId, seq])).rejects.toThrow(/append-only/);
        // ...so whoever edits the database turns the guard off first.
        await c.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update');
        await c.query(
          "UPDATE audit_events SET body = jsonb_set(body::jsonb, '{ip}', '\"192.0.2.66\"')::text WHERE tenant_id = $1 AND seq = $2",
          [tenantId, seq],
        );
        await c.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update');
      });
      return;
    }
    if (choice === 'sqlite') {
      const db = new DatabaseSync(sqlitePath as string);
      try {
        // The schema refuses it...
        const guarded = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_update'").get() !== undefined;
        if (guarded) {
          expect(() => db.prepare('UPDATE audit_events SET body = body WHERE tenant_id = ? AND seq = ?').run(tenantId, seq)).toThrow(/append-only/);
          // ...so whoever edits the file drops the guard first.
          db.exec('DROP TRIGGER audit_events_no_update');
        }
        db.prepare("UPDATE audit_events SET body = json_set(body, '$.ip', '192.0.2.66') WHERE tenant_id = ? AND seq = ?").run(tenantId, seq);
      } finally {
        db.close();
      }
      return;
    }
    // A stream entry cannot be changed in place: rewrite the stream with one entry altered.
    await withRedis(async (conn) => {
      const key = `${redisPrefix}{a:${tenantId}}:log`;
      const entries = (await conn.send(key, ['XRANGE', key, '-', '+'])) as Array<[string, string[]]>;
      await conn.send(key, ['DEL', key]);
      for (const [id, fields] of entries) {
        const r = JSON.parse(fields[1] as string) as AuditRecord;
        if (r.seq === seq) r.ip = '192.0.2.66';
        await conn.send(key, ['XADD', key, id, 'r', JSON.stringify(r)]);
      }
    });
  }

  async function deleteRecord(tenantId: string, seq: number): Promise<void> {
    if (choice === 'postgres') {
      await withPg(async (c) => {
        await expect(c.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq = $2', [tenantId, seq])).rejects.toThrow(/append-only/);
        await expect(c.query('TRUNCATE audit_events')).rejects.toThrow(/append-only/);
        await c.query('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_delete');
        await c.query('DELETE FROM audit_events WHERE tenant_id = $1 AND seq = $2', [tenantId, seq]);
        await c.query('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_delete');
      });
      return;
    }
    if (choice === 'sqlite') {
      const db = new DatabaseSync(sqlitePath as string);
      try {
        const guarded = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'audit_events_no_delete'").get() !== undefined;
        if (guarded) {
          expect(() => db.prepare('DELETE FROM audit_events WHERE tenant_id = ? AND seq = ?').run(tenantId, seq)).toThrow(/append-only/);
          db.exec('DROP TRIGGER audit_events_no_delete');
        }
        db.prepare('DELETE FROM audit_events WHERE tenant_id = ? AND seq = ?').run(tenantId, seq);
      } finally {
        db.close();
      }
      return;
    }
    await withRedis(async (conn) => {
      const key = `${redisPrefix}{a:${tenantId}}:log`;
      const entries = (await conn.send(key, ['XRANGE', key, '-', '+'])) as Array<[string, string[]]>;
      const victim = entries.find(([, f]) => (JSON.parse(f[1] as string) as AuditRecord).seq === seq);
      await conn.send(key, ['XDEL', key, (victim as [string, string[]])[0]]);
    });
  }

  const cli = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const r = await run(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...storeEnv }, timeout: 30_000 });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  };

  // ---- the tests ----------------------------------------------------------------------------

  it('records every lifecycle event once, with the six headers, IP, user agent and location; raw secrets appear nowhere', async () => {
    const tenantId = uniqueTenant();
    const email = 'ada@example.com';
    const userId = await provision(app, tenantId, email, PASSWORD);
    const secrets: string[] = [PASSWORD, WRONG, ADMIN_TOKEN, COOKIE_SECRET];
    const ids = { 'x-request-id': randomUUID(), 'x-correlation-id': 'corr-audit-1', 'x-activity-id': randomUUID() };
    const login = (extra: Record<string, string> = {}, password = PASSWORD) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'x-tenant-id': tenantId, 'user-agent': FIREFOX, ...GEO, ...extra },
        payload: { email, password },
      });

    // Token mode: login, a call, refresh, reuse of the old refresh token after the grace window.
    const first = await login(ids);
    expect(first.statusCode).toBe(200);
    const pair1 = first.json() as { userSessionToken: string; refreshToken: string; sessionId: string };
    secrets.push(pair1.userSessionToken, pair1.refreshToken);
    const refreshed = await app.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', payload: { refreshToken: pair1.refreshToken } });
    const pair2 = refreshed.json() as { userSessionToken: string; refreshToken: string };
    secrets.push(pair2.userSessionToken, pair2.refreshToken);
    clock.advance(11_000);
    const reused = await app.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', payload: { refreshToken: pair1.refreshToken } });
    expect(reused.json()).toMatchObject({ code: 'refresh_token_reused' });

    // A wrong password; then a session that is logged out.
    expect((await login({}, WRONG)).statusCode).toBe(401);
    const third = (await login()).json() as { userSessionToken: string; refreshToken: string; sessionId: string };
    secrets.push(third.userSessionToken, third.refreshToken);
    expect((await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${third.userSessionToken}` } })).statusCode).toBe(204);

    // Cookie mode: login, a request a minute later slides the expiry (session.extended), logout.
    const cookieLogin = await login({ 'x-auth-mode': 'cookie' });
    const sid = cookieOf(cookieLogin, '__Host-sid') as string;
    const xsrf = (cookieLogin.json() as { xsrfToken: string }).xsrfToken;
    secrets.push(sid, decodeURIComponent(sid), xsrf);
    clock.advance(61_000);
    const slid = await app.inject({ url: '/api/v1/session', headers: { cookie: `__Host-sid=${sid}` } });
    expect(slid.statusCode).toBe(200);
    const slidCookie = cookieOf(slid, '__Host-sid');
    if (slidCookie) secrets.push(slidCookie, decodeURIComponent(slidCookie));
    const out = await app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { cookie: `__Host-sid=${sid}`, 'x-xsrf-token': xsrf } });
    expect(out.statusCode).toBe(204);

    // One session stays active for the metrics below.
    const fourth = (await login()).json() as { userSessionToken: string; refreshToken: string };
    secrets.push(fourth.userSessionToken, fourth.refreshToken);

    const records = await exported(tenantId);
    const summary = records.map((r) => [r.type, r.details.reason ?? r.details.mode ?? null]);
    expect(summary).toEqual([
      ['session.created', 'token'],
      ['session.refreshed', null],
      ['refresh_token.reused', null],
      ['anomaly.detected', 'refresh_token_reuse'],
      ['session.revoked', 'refresh_reuse'],
      ['login.failed', 'invalid_credentials'],
      ['session.created', 'token'],
      ['session.revoked', 'logout'],
      ['session.created', 'cookie'],
      ['session.extended', null],
      ['session.revoked', 'logout'],
      ['session.created', 'token'],
    ]);
    const created = records[0] as AuditRecord;
    expect(created).toMatchObject({
      tenantId,
      userId,
      sessionId: pair1.sessionId,
      kind: 'app',
      headers: { requestId: ids['x-request-id'], correlationId: 'corr-audit-1', activityId: ids['x-activity-id'], tenantId, sessionId: null },
      ip: '198.51.100.7',
      userAgent: FIREFOX,
      location: { country: 'DE', city: 'Berlin', lat: 52.52, lon: 13.405 },
    });
    expect(records.every((r) => r.headers.requestId !== null && r.headers.correlationId !== null)).toBe(true);
    expect(records.find((r) => r.type === 'anomaly.detected')?.details).toMatchObject({ action: 'revoke', evidence: { revokedSessions: [pair1.sessionId] } });

    // The export verifies offline, record by record.
    const v = new ChainVerifier(tenantId, null, { seq: records.length, hash: (records[records.length - 1] as AuditRecord).hash });
    for (const r of records) v.add(r);
    expect(v.finish().ok).toBe(true);

    // Scan the audit store and every log line for the raw secrets.
    const haystacks: Array<[string, string]> = [
      ['audit export', records.map((r) => JSON.stringify(r)).join('\n')],
      ['log lines', logLines.join('')],
    ];
    if (sqlitePath !== null) {
      for (const f of [sqlitePath, `${sqlitePath}-wal`]) if (existsSync(f)) haystacks.push([f, readFileSync(f).toString('latin1')]);
    } else if (pgUrl !== null) {
      const rows = await withPg(async (c) => (await c.query('SELECT body FROM audit_events')).rows as Array<{ body: string }>);
      haystacks.push(['postgres audit_events', rows.map((r) => r.body).join('\n')]);
    } else {
      const raw = await withRedis(async (conn) => {
        const key = `${redisPrefix}{a:${tenantId}}:log`;
        return JSON.stringify(await conn.send(key, ['XRANGE', key, '-', '+']));
      });
      haystacks.push(['redis audit stream', raw]);
    }
    expect(logLines.length).toBeGreaterThan(10);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThanOrEqual(20);
      for (const [where, text] of haystacks) {
        if (text.includes(secret)) throw new Error(`a raw secret (${secret.slice(0, 6)}…) is in the ${where}`);
      }
    }

    // Metrics, labelled by tenant and kind.
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    const text = metrics.body;
    const line = (prefix: string) => text.split('\n').find((l) => l.startsWith(prefix));
    expect(line(`tessera_sessions_active{tenant="${tenantId}",kind="app"}`)).toBe(`tessera_sessions_active{tenant="${tenantId}",kind="app"} 1`);
    expect(line(`tessera_sessions_created_total{tenant="${tenantId}",kind="app"}`)).toMatch(/ 4$/);
    expect(line(`tessera_sessions_refreshed_total{tenant="${tenantId}",kind="app"}`)).toMatch(/ 1$/);
    expect(line(`tessera_sessions_revoked_total{tenant="${tenantId}",kind="app",reason="logout"}`)).toMatch(/ 2$/);
    expect(line(`tessera_login_failures_total{tenant="${tenantId}",reason="invalid_credentials"}`)).toMatch(/ 1$/);
    expect(line(`tessera_anomalies_total{tenant="${tenantId}",reason="refresh_token_reuse",action="revoke"}`)).toMatch(/ 1$/);
    expect(line(`tessera_session_duration_seconds_count{tenant="${tenantId}",kind="app"}`)).toMatch(/ 3$/);
    expect(line('tessera_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/api/v1/auth/login",status="200"}')).toBeDefined();
    expect(line('tessera_audit_queue_length')).toBe('tessera_audit_queue_length 0');
  });

  it('keeps the active-session gauge right when one server creates a session and another ends it', async () => {
    const other = await startTestServer({ sharedStore: store, clock });
    try {
      const tenantId = uniqueTenant();
      await provision(app, tenantId, 'two@example.com', PASSWORD);
      const body = (await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email: 'two@example.com', password: PASSWORD } })).json() as { sessionId: string };
      await deps.monitor.flush();
      const active = async (a: App) => (await a.inject({ url: '/metrics' })).body.split('\n').find((l) => l.startsWith(`tessera_sessions_active{tenant="${tenantId}"`));
      expect(await active(other.app)).toBe(`tessera_sessions_active{tenant="${tenantId}",kind="app"} 1`);
      expect((await other.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${body.sessionId}`, headers: admin })).statusCode).toBe(200);
      await other.deps.monitor.flush();
      clock.advance(6_000); // past the gauge's read cache
      expect(await active(app)).toBe(`tessera_sessions_active{tenant="${tenantId}",kind="app"} 0`);
    } finally {
      await other.close();
    }
  });

  it('filters the log by user, type and time, newest first, through cursors; refuses other tenants to a tenant admin', async () => {
    const tenantId = await tenantWithRecords(3);
    const all = await listAudit(`tenantId=${tenantId}`);
    expect(all.items.map((r) => r.seq)).toEqual([3, 2, 1]);
    expect(all.items[0]?.time).toMatch(/^\d{4}-\d\d-\d\dT/);
    const p1 = await listAudit(`tenantId=${tenantId}&type=session.*&limit=2`);
    expect(p1.items.map((r) => r.seq)).toEqual([3, 2]);
    const p2 = await listAudit(`tenantId=${tenantId}&type=session.*&limit=2&cursor=${p1.nextCursor}`);
    expect(p2.items.map((r) => r.seq)).toEqual([1]);
    expect(p2.nextCursor).toBeNull();
    const iso = new Date(clock.now() + 1000).toISOString();
    expect((await listAudit(`tenantId=${tenantId}&from=${iso}`)).items).toEqual([]);
    expect((await listAudit(`tenantId=${tenantId}&userId=nobody`)).items).toEqual([]);
    expect((await app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}&cursor=zz`, headers: admin })).statusCode).toBe(400);
    expect((await app.inject({ url: '/api/v1/admin/audit', headers: admin })).json()).toMatchObject({ status: 400 });
    expect((await app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}` })).statusCode).toBe(401);

    // A tenant administrator reads their own tenant only.
    const own = uniqueTenant();
    await provision(app, own, 'boss@example.com', PASSWORD);
    const adminUser = await app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId: own, email: 'root@example.com', password: PASSWORD, roles: ['admin'] } });
    expect(adminUser.statusCode).toBe(201);
    const token = ((await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': own }, payload: { email: 'root@example.com', password: PASSWORD } })).json() as { userSessionToken: string }).userSessionToken;
    const asTenantAdmin = { authorization: `Bearer ${token}` };
    await deps.monitor.flush();
    expect((await app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}`, headers: asTenantAdmin })).statusCode).toBe(403);
    const mine = await app.inject({ url: '/api/v1/admin/audit', headers: asTenantAdmin });
    expect(mine.statusCode).toBe(200);
    expect((mine.json() as { items: AuditRecord[] }).items.every((r) => r.tenantId === own)).toBe(true);
    expect((await app.inject({ url: '/api/v1/admin/audit/verify', headers: asTenantAdmin })).json()).toMatchObject({ ok: true, tenants: [{ tenantId: own }] });
  });

  it('detects a single edited record, in the API and with `tessera audit verify`', async () => {
    const tenantId = await tenantWithRecords(4);
    expect(await verify(tenantId)).toMatchObject({ ok: true, tenants: [{ tenantId, ok: true, records: 4, problems: [] }] });
    const before = await cli(['audit', 'verify', '--tenant', tenantId]);
    expect(before.code).toBe(0);
    expect(before.stderr).toContain('audit log intact');

    await editRecord(tenantId, 2);
    const report = await verify(tenantId);
    expect(report.ok).toBe(false);
    expect(report.tenants[0]?.problems).toEqual([expect.objectContaining({ seq: 2, problem: 'hash_mismatch' })]);
    const after = await cli(['audit', 'verify', '--tenant', tenantId]);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain(`audit chain of tenant ${tenantId}: record 2: hash_mismatch`);
    expect(after.stderr).toContain('TAMPERED');
    // Verifying every tenant names this one.
    const everything = await cli(['audit', 'verify']);
    expect(everything.code).toBe(1);
    expect(JSON.parse(everything.stdout.split('\n').find((l) => l.includes(`"tenantId":"${tenantId}"`)) as string)).toMatchObject({ ok: false });
  }, 60_000); // two `tessera audit verify` processes; slow on a loaded machine

  it('detects a single deleted record, in the middle or at the end', async () => {
    const middle = await tenantWithRecords(4);
    await deleteRecord(middle, 2);
    const r1 = await verify(middle);
    expect(r1.ok).toBe(false);
    expect(r1.tenants[0]?.problems.map((p) => [p.seq, p.problem])).toEqual([
      [3, 'missing_records'],
      [3, 'broken_link'],
    ]);
    const c1 = await cli(['audit', 'verify', '--tenant', middle]);
    expect(c1.code).toBe(1);
    expect(c1.stderr).toContain('missing_records');

    const end = await tenantWithRecords(3);
    await deleteRecord(end, 3);
    const r2 = await verify(end);
    expect(r2.tenants[0]?.problems.map((p) => [p.seq, p.problem])).toEqual([[3, 'missing_records']]);
    expect((await cli(['audit', 'verify', '--tenant', end])).code).toBe(1);
  }, 60_000); // two `tessera audit verify` processes; slow on a loaded machine

  it('exports JSON lines from the command line too', async () => {
    const tenantId = await tenantWithRecords(2);
    const r = await cli(['audit', 'export', '--tenant', tenantId]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as AuditRecord);
    expect(lines.map((l) => [l.seq, l.type])).toEqual([
      [1, 'session.created'],
      [2, 'session.created'],
    ]);
    expect((await cli(['audit', 'export'])).code).toBe(2);
  });

  it('says on /readyz where locations come from', async () => {
    const ready = await app.inject({ url: '/readyz' });
    const checks = (ready.json() as { status: string; checks: Record<string, string> }).checks;
    expect(ready.json()).toMatchObject({ status: 'ready', checks: { store: 'ok', audit: 'ok' } });
    expect(checks.location).toMatch(/^headers from trusted proxies/);
    const bare = await startTestServer({ sharedStore: store });
    try {
      const bareChecks = ((await bare.app.inject({ url: '/readyz' })).json() as { checks: Record<string, string> }).checks;
      expect(bareChecks.location).toMatch(/^off: .*location rules are silent/);
    } finally {
      await bare.close();
    }
  });

  it('streams events live (SSE) within one second of the action, filtered by tenant and type', async () => {
    const tenantId = uniqueTenant();
    await provision(app, tenantId, 'live@example.com', PASSWORD);
    await deps.monitor.flush();
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    const abort = new AbortController();
    try {
      const res = await fetch(`${address}/api/v1/admin/events?tenantId=${tenantId}&type=session.*`, { headers: admin, signal: abort.signal });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      const nextEvent = async (): Promise<{ id: string; event: string; data: Record<string, unknown>; at: number }> => {
        for (;;) {
          const end = buffer.indexOf('\n\n');
          if (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
            if (fields.event === undefined) continue;
            return { id: fields.id as string, event: fields.event as string, data: JSON.parse(fields.data as string) as Record<string, unknown>, at: performance.now() };
          }
          const chunk = await reader.read();
          if (chunk.done) throw new Error('the stream ended');
          buffer += decoder.decode(chunk.value, { stream: true });
        }
      };
      // Another tenant's event and a filtered-out type must not arrive.
      await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email: 'live@example.com', password: WRONG } });
      const login = await app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email: 'live@example.com', password: PASSWORD } });
      const acted = performance.now();
      expect(login.statusCode).toBe(200);
      const e = await nextEvent();
      expect(e.event).toBe('session.created');
      expect(e.id).toBe(`${tenantId}:2`);
      expect(e.data).toMatchObject({ tenantId, type: 'session.created', sessionId: (login.json() as { sessionId: string }).sessionId });
      expect(e.at - acted).toBeLessThan(1000);
    } finally {
      abort.abort();
    }
  });
});

describe('locations from a MaxMind database on a running app', () => {
  it('locates the client address at login and records it on the session and the event', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-geo-'));
    const path = join(dir, 'city.mmdb');
    writeFileSync(path, buildMmdb([{ cidr: '198.51.100.0/24', data: cityRecord('DE', 'Hamburg', 53.5511, 9.9937) }]));
    const s = await startTestServer({ env: { TESSERA_GEOIP_DB: path } });
    try {
      const tenantId = uniqueTenant();
      await provision(s.app, tenantId, 'geo@example.com', PASSWORD);
      const ready = (await s.app.inject({ url: '/readyz' })).json() as { checks: Record<string, string> };
      expect(ready.checks.location).toBe('GeoIP database Tessera-Test-City');
      const res = await s.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        remoteAddress: '198.51.100.7',
        headers: { 'x-tenant-id': tenantId, ...GEO },
        payload: { email: 'geo@example.com', password: PASSWORD },
      });
      expect(res.statusCode).toBe(200);
      await s.deps.monitor.flush();
      const records = (await s.app.inject({ url: `/api/v1/admin/audit?tenantId=${tenantId}`, headers: admin })).json() as { items: AuditRecord[] };
      // The X-Geo headers came from an untrusted address and were ignored; the database answered.
      expect(records.items[0]).toMatchObject({ type: 'session.created', ip: '198.51.100.7', location: { country: 'DE', city: 'Hamburg', lat: 53.5511, lon: 9.9937 } });
      const session = (await s.app.inject({ url: `/api/v1/admin/sessions?tenantId=${tenantId}`, headers: admin })).json() as { items: Array<{ device: Record<string, unknown> }> };
      expect(session.items[0]?.device).toMatchObject({ ip: '198.51.100.7', location: { city: 'Hamburg' } });
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the live event stream (SSE) re-authorises its administrator and bounds its clients', () => {
  let s: TestServer;
  let address: string;
  const saved = { ...liveStreamSettings };
  const aborts: AbortController[] = [];

  beforeAll(async () => {
    // A re-check on every keep-alive tick, every 50 ms here (15 s in production).
    liveStreamSettings.keepAliveMs = 50;
    s = await startTestServer();
    address = await s.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    for (const a of aborts) a.abort();
    Object.assign(liveStreamSettings, saved);
    await s?.close();
  });

  /** A tenant administrator signed in with a bearer token. */
  async function tenantAdmin(): Promise<{ tenantId: string; userId: string; token: string; sessionId: string }> {
    const tenantId = uniqueTenant();
    expect((await s.app.inject({ method: 'PUT', url: `/api/v1/admin/tenants/${tenantId}`, headers: admin, payload: { profile: 'integration' } })).statusCode).toBe(200);
    const email = `boss-${randomUUID().slice(0, 8)}@example.com`;
    const u = await s.app.inject({ method: 'POST', url: '/api/v1/admin/users', headers: admin, payload: { tenantId, email, password: PASSWORD, roles: ['admin'] } });
    expect(u.statusCode).toBe(201);
    const login = await s.app.inject({ method: 'POST', url: '/api/v1/auth/login', headers: { 'x-tenant-id': tenantId }, payload: { email, password: PASSWORD } });
    expect(login.statusCode).toBe(200);
    const pair = login.json() as { userSessionToken: string; sessionId: string };
    return { tenantId, userId: (u.json() as { id: string }).id, token: pair.userSessionToken, sessionId: pair.sessionId };
  }

  /** Opens the stream; `ended` resolves once the server ends it. */
  async function open(headers: Record<string, string>, query = ''): Promise<{ status: number; code: string | null; ended: Promise<void>; close: () => void }> {
    const abort = new AbortController();
    aborts.push(abort);
    const res = await fetch(`${address}/api/v1/admin/events${query}`, { headers, signal: abort.signal });
    if (res.status !== 200) {
      const body = (await res.json()) as { code: string };
      return { status: res.status, code: body.code, ended: Promise.resolve(), close: () => abort.abort() };
    }
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const ended = (async () => {
      try {
        while (!(await reader.read()).done);
      } catch {
        // aborted or reset: ended too
      }
    })();
    return { status: 200, code: null, ended, close: () => abort.abort() };
  }

  const within = <T>(p: Promise<T>, ms: number) =>
    Promise.race([p.then(() => 'ended' as const), new Promise<'open'>((r) => setTimeout(() => r('open'), ms))]);

  it('ends the stream of an administrator whose role is taken away, whose session is revoked, or whose session expires', async () => {
    const kept = await tenantAdmin();
    const keptStream = await open({ authorization: `Bearer ${kept.token}` });
    const platform = await open(admin);
    expect(keptStream.status).toBe(200);

    const roleless = await tenantAdmin();
    const a = await open({ authorization: `Bearer ${roleless.token}` });
    expect(a.status).toBe(200);
    expect(await within(a.ended, 300)).toBe('open');
    const user = await s.store.getUser(roleless.tenantId, roleless.userId);
    await s.store.updateUser({ ...user!, roles: [], updatedAt: s.clock.now() });
    expect(await within(a.ended, 2000)).toBe('ended');

    const revoked = await tenantAdmin();
    const b = await open({ authorization: `Bearer ${revoked.token}` });
    expect(b.status).toBe(200);
    const del = await s.app.inject({ method: 'DELETE', url: `/api/v1/admin/sessions/${revoked.sessionId}`, headers: admin });
    expect(del.statusCode).toBeLessThan(300);
    expect(await within(b.ended, 2000)).toBe('ended');

    // Still an administrator with a valid session: the stream stays.
    expect(await within(keptStream.ended, 200)).toBe('open');
    // Past every lifetime of the session (13 h): its stream ends too; the bootstrap credential's does not.
    s.clock.advance(13 * 3600_000);
    expect(await within(keptStream.ended, 2000)).toBe('ended');
    expect(await within(platform.ended, 300)).toBe('open');
    platform.close();
  });

  it('allows 5 streams per administrator and 100 per process (429 beyond)', async () => {
    const boss = await tenantAdmin();
    const headers = { authorization: `Bearer ${boss.token}` };
    const mine = [];
    for (let i = 0; i < 5; i++) mine.push(await open(headers));
    expect(mine.map((m) => m.status)).toEqual([200, 200, 200, 200, 200]);
    const sixth = await open(headers);
    expect(sixth.status).toBe(429);
    expect(sixth.code).toBe('too_many_streams');
    // Another administrator is not affected by this one's streams.
    const other = await open(admin);
    expect(other.status).toBe(200);
    // Closing one frees its place.
    mine[0]!.close();
    let again = await open(headers);
    for (let i = 0; i < 40 && again.status === 429; i++) {
      await new Promise((r) => setTimeout(r, 25));
      again = await open(headers);
    }
    expect(again.status).toBe(200);

    // The per-process cap counts every administrator's streams.
    const perProcess = liveStreamSettings.maxPerProcess;
    liveStreamSettings.maxPerProcess = 7; // 5 of boss + 1 platform open now
    try {
      expect((await open(admin)).status).toBe(200);
      const over = await open(admin);
      expect(over.status).toBe(429);
      expect(over.code).toBe('too_many_streams');
    } finally {
      liveStreamSettings.maxPerProcess = perProcess;
    }
    for (const a of aborts) a.abort();
  });

  it('drops a client that does not read once more than 1 MiB waits for it', async () => {
    // Catch the stream's listener, to feed it records faster than any real traffic would.
    let feed: ((r: AuditRecord) => void) | null = null;
    let unwatched = false;
    const realWatch = s.deps.monitor.watch.bind(s.deps.monitor);
    const spy = vi.spyOn(s.deps.monitor, 'watch').mockImplementation((filter, listener) => {
      feed = listener;
      const unwatch = realWatch(filter, listener);
      return () => {
        unwatched = true;
        return unwatch();
      };
    });
    try {
      // A client that never reads: its socket buffers fill, then the server's.
      const req = httpGet(`${address}/api/v1/admin/events`, { headers: admin }, (res) => res.pause());
      req.on('error', () => undefined);
      for (let i = 0; i < 100 && feed === null; i++) await new Promise((r) => setTimeout(r, 10));
      expect(feed).not.toBeNull();
      const record: AuditRecord = {
        id: 't-x:1', seq: 1, prevHash: '0', hash: '0', time: Date.now(), tenantId: 't-x', type: 'session.created', userId: null, sessionId: null, kind: null,
        headers: { requestId: null, correlationId: null, activityId: null, tenantId: null, sessionId: null }, ip: null, userAgent: null, location: null,
        details: { pad: 'x'.repeat(64 * 1024) },
      };
      // Up to 32 MiB, letting the socket flush between bursts; a dropped client stops it.
      for (let i = 0; i < 512 && !unwatched; i++) {
        feed!(record);
        if (i % 16 === 15) await new Promise((r) => setImmediate(r));
      }
      expect(unwatched).toBe(true);
      req.destroy();
    } finally {
      spy.mockRestore();
    }
  });
});
