// What only the SQLite adapter has, beyond the conformance matrix (test/store/targets.ts, which
// runs every suite on one connection and on connections in worker threads): files, schema
// versions, locks, purging, the end log's local delivery and pruning, the pruning of the log of
// messages between the processes.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import { buildTenant } from '../../src/domain/tenant.ts';
import { PEER_MESSAGE_RETENTION_MS } from '../../src/store/sqlite/coordination.ts';
import { migrations } from '../../src/store/sqlite/migrations.ts';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.ts';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-sqlite-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

// ---- what only the SQLite adapter has -------------------------------------------------------

const T0 = Date.now();

function appSession(tenantId = 't-sqlite', userId = 'u-1') {
  return issueSession({ tenantId, userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, T0).session;
}

describe('SQLite store specifics', () => {
  it("lets two store instances on one file see each other's writes", async () => {
    const path = join(tempDir(), 'shared.db');
    const a = await openSqliteStore(path);
    const b = await openSqliteStore(path);
    try {
      const s = appSession();
      await a.createSession(s, T0);
      expect(await b.getSessionByHandle(s.handle)).toStrictEqual(s);
      await b.revokeSession(s.handle, 'logout', T0 + 1);
      expect(await a.getSessionByHandle(s.handle)).toMatchObject({ status: 'revoked', revokeReason: 'logout' });
      await a.putMeta('k', { v: 1 });
      expect(await b.getMeta('k')).toStrictEqual({ v: 1 });
      expect(await b.putMetaIfAbsent('k', { v: 2 })).toStrictEqual({ v: 1 });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('purges ended sessions a day after their absolute expiry, children before parents, as Redis key TTLs do', async () => {
    const store = await openSqliteStore(join(tempDir(), 'purge.db'));
    try {
      const parent = issueSession({ tenantId: 't-p', userId: 'u-p', kind: 'idp', lifetime: DEFAULT_LIFETIMES.idp, authMethod: 'password' }, T0).session;
      await store.createSession(parent, T0);
      const child = issueSession(
        { tenantId: 't-p', userId: 'u-p', kind: 'app', parentHandle: parent.handle, lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password', notAfter: parent.absoluteExpiresAt },
        T0,
      ).session;
      await store.createSession(child, T0);
      await store.addRefreshToken({ tokenHash: 'h-' + child.handle, sessionHandle: child.handle, tenantId: 't-p', userId: 'u-p', createdAt: T0, rotatedAt: null, successorHash: null });
      const kept = appSession('t-p', 'u-keep');
      await store.createSession(kept, T0);
      await store.revokeSession(parent.handle, 'logout', T0 + 1000);
      const day = 24 * 3600 * 1000;
      // Within the retention the ended sessions stay readable.
      await store.sweepExpired(parent.absoluteExpiresAt + day - 1, 100);
      expect(await store.getSessionByHandle(parent.handle)).not.toBeNull();
      // A session still active at its expiry is first swept to `expired` (and purged later).
      expect(await store.getSessionByHandle(kept.handle)).toMatchObject({ status: 'expired' });
      // Past it: the child (and its refresh token) first, the parent in a later sweep.
      await store.sweepExpired(parent.absoluteExpiresAt + day + 1, 100);
      expect(await store.getSessionByHandle(child.handle)).toBeNull();
      expect(await store.getRefreshToken('h-' + child.handle)).toBeNull();
      await store.sweepExpired(parent.absoluteExpiresAt + day + 2, 100);
      expect(await store.getSessionByHandle(parent.handle)).toBeNull();
      expect(await store.getSessionByHandle(kept.handle)).toBeNull();
    } finally {
      await store.close();
    }
  });

  it('creates missing parent folders, uses WAL, and says it is sqlite', async () => {
    const path = join(tempDir(), 'a', 'b', 'tessera.db');
    const store = await openSqliteStore(path);
    expect(store.kind).toBe('sqlite');
    await store.close();
    const db = new DatabaseSync(path);
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    db.close();
  });

  it('records the schema version and keeps data across reopening', async () => {
    migrations.forEach((m, i) => expect(m.version).toBe(i + 1));
    const path = join(tempDir(), 'tessera.db');
    const s = appSession();
    const first = await openSqliteStore(path);
    await first.createSession(s, T0);
    await first.close();
    const db = new DatabaseSync(path);
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: migrations.length });
    db.close();
    const second = await openSqliteStore(path);
    expect(await second.getSessionByHandle(s.handle)).toStrictEqual(s);
    await second.close();
  });

  it('works in memory', async () => {
    const store = await openSqliteStore(':memory:');
    const s = appSession();
    await store.createSession(s, T0);
    expect(await store.getSessionBySecretHash(s.secretHash)).toStrictEqual(s);
    await store.close();
  });

  it('refuses a schema newer than it knows', async () => {
    const path = join(tempDir(), 'future.db');
    const db = new DatabaseSync(path);
    db.exec(`PRAGMA user_version = ${migrations.length + 1}`);
    db.close();
    await expect(openSqliteStore(path)).rejects.toBeInstanceOf(StoreUnavailable);
  });

  it('reports a file that is not a database, or a path it cannot create, as StoreUnavailable', async () => {
    const dir = tempDir();
    const garbage = join(dir, 'garbage.db');
    writeFileSync(garbage, 'this is not a database '.repeat(200));
    await expect(openSqliteStore(garbage)).rejects.toMatchObject({ code: 'store_unavailable' });
    await expect(openSqliteStore(join(garbage, 'below-a-file.db'))).rejects.toMatchObject({ code: 'store_unavailable' });
  });

  it('fails fast with StoreUnavailable while another writer holds the lock, and recovers', async () => {
    const path = join(tempDir(), 'locked.db');
    const store = await openSqliteStore(path, { busyTimeoutMs: 50 });
    const s = appSession();
    await store.createSession(s, T0);
    const other = new DatabaseSync(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const t = appSession();
      await expect(store.createSession(t, T0)).rejects.toMatchObject({ code: 'store_unavailable', status: 503 });
      // Readers are not blocked by a writer (WAL).
      expect(await store.getSessionByHandle(s.handle)).toStrictEqual(s);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    const u = appSession();
    expect(await store.createSession(u, T0)).toMatchObject({ ok: true });
    await store.close();
  });

  // In one process the conformance races cannot fail (DatabaseSync serializes every call), and
  // even across worker threads a missing transaction shows only now and then, because the
  // read-to-write window is microseconds. This proves the atomicity deterministically: every
  // operation that decides and writes takes the file's write lock before it reads anything, so
  // while another connection holds that lock each of them waits — even a call that would end up
  // writing nothing (an unknown token, a full limit) — instead of deciding on a stale read.
  it('makes every deciding operation take the write lock before it reads', async () => {
    const path = join(tempDir(), 'locking.db');
    const store = await openSqliteStore(path, { busyTimeoutMs: 20 });
    const s = appSession('t-lock', 'u-lock');
    await store.createSession(s, T0);
    const token = { tokenHash: 'tok', sessionHandle: s.handle, tenantId: 't-lock', userId: 'u-lock', createdAt: T0, rotatedAt: null, successorHash: null };
    await store.addRefreshToken(token);
    const user = { id: 'u-lock', tenantId: 't-lock', email: 'lock@example.com', passwordHash: null, roles: [], createdAt: T0, updatedAt: T0 };
    await store.createUser(user);

    const other = new DatabaseSync(path);
    other.exec('BEGIN IMMEDIATE');
    try {
      const deciding: Record<string, () => Promise<unknown>> = {
        createSession: () => store.createSession(appSession('t-lock', 'u-lock'), T0, { kind: 'app', max: 1, policy: 'reject_new' }),
        touchSession: () => store.touchSession('unknown', T0, null),
        updateSessionData: () => store.updateSessionData('unknown', { a: 1 }, T0),
        revokeSession: () => store.revokeSession('unknown', 'logout', T0),
        revokeUserSessions: () => store.revokeUserSessions('t-none', 'u-none', 'admin', T0),
        revokeTenantSessions: () => store.revokeTenantSessions('t-none', 'admin', T0),
        consumeSession: () => store.consumeSession('unknown', T0),
        renewAfterExpiry: () => store.renewAfterExpiry('unknown', appSession(), T0),
        addRefreshToken: () => store.addRefreshToken({ ...token, tokenHash: 'tok2' }),
        rotateRefreshToken: () => store.rotateRefreshToken('unknown', 'next', T0, 10_000, null),
        sweepExpired: () => store.sweepExpired(T0, 10),
        createUser: () => store.createUser({ ...user, id: 'u-2', email: 'two@example.com' }),
        updateUser: () => store.updateUser({ ...user, roles: ['admin'] }),
        putTenant: () => store.putTenant(buildTenant('t-lock', {}, T0)),
        putMeta: () => store.putMeta('k', 1),
        putMetaIfAbsent: () => store.putMetaIfAbsent('k', 1),
        hitCounter: () => store.hitCounter('c', 1_000, T0),
        resetCounter: () => store.resetCounter('c'),
      };
      for (const [name, op] of Object.entries(deciding)) {
        await expect(op(), name).rejects.toMatchObject({ code: 'store_unavailable' });
      }
      // Plain reads are one statement each and are not blocked by a writer (WAL).
      expect(await store.getSessionByHandle(s.handle)).toStrictEqual(s);
      expect(await store.getRefreshToken('tok')).toStrictEqual(token);
      expect(await store.listSessions({ tenantId: 't-lock', now: T0, limit: 10 })).toMatchObject({ items: [s] });
      await expect(store.ping()).resolves.toBeUndefined();
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(await store.rotateRefreshToken('tok', 'tok3', T0 + 1, 10_000, null)).toMatchObject({ outcome: 'rotated' });
    await store.close();
  });

  it('feeds every end to subscribers: at once from its own writes, by polling from other connections', async () => {
    const path = join(tempDir(), 'feed.db');
    const a = await openSqliteStore(path, { feedPollMs: 5 });
    const b = await openSqliteStore(path);
    const heard: string[] = [];
    let resets = 0;
    const sub = await a.subscribeSessionEnds(
      (hs) => heard.push(...hs),
      () => resets++,
    );
    try {
      // Through `a` itself: revoke with subtree, eviction, consume, refresh-token reuse, sweep.
      const app = appSession('t-feed', 'u1');
      await a.createSession(app, T0);
      const redirect = issueSession(
        { tenantId: 't-feed', userId: 'u1', kind: 'redirect', parentHandle: app.handle, lifetime: DEFAULT_LIFETIMES.redirect, authMethod: 'password' },
        T0,
      ).session;
      await a.createSession(redirect, T0);
      await a.revokeSession(app.handle, 'logout', T0 + 1);
      expect(heard).toStrictEqual([app.handle, redirect.handle]);

      const old = appSession('t-feed', 'u2');
      await a.createSession(old, T0);
      await a.createSession(appSession('t-feed', 'u2'), T0 + 1, { kind: 'app', max: 1, policy: 'evict_oldest' });
      const flow = issueSession({ tenantId: 't-feed', userId: null, kind: 'flow', lifetime: DEFAULT_LIFETIMES.flow, authMethod: 'oidc' }, T0).session;
      await a.createSession(flow, T0);
      await a.consumeSession(flow.secretHash, T0 + 1);
      const s3 = appSession('t-feed', 'u3');
      await a.createSession(s3, T0);
      await a.addRefreshToken({ tokenHash: 'r3', sessionHandle: s3.handle, tenantId: 't-feed', userId: 'u3', createdAt: T0, rotatedAt: null, successorHash: null });
      await a.rotateRefreshToken('r3', 'r3b', T0 + 1, 0, null);
      await a.rotateRefreshToken('r3', 'r3c', T0 + 2, 0, null);
      const stale = issueSession({ tenantId: 't-feed', userId: 'u4', kind: 'app', lifetime: { idle: 1, absolute: 2 }, authMethod: 'password' }, T0).session;
      await a.createSession(stale, T0);
      await a.sweepExpired(T0 + 5_000, 100);
      expect(heard).toStrictEqual([app.handle, redirect.handle, old.handle, flow.handle, s3.handle, stale.handle]);

      // Through another connection: seen by polling.
      const other = appSession('t-feed', 'u5');
      await b.createSession(other, T0);
      await b.revokeSession(other.handle, 'admin', T0 + 1);
      await vi.waitFor(() => expect(heard).toContain(other.handle), { timeout: 2_000, interval: 5 });
      expect(resets).toBe(0);

      await sub.close();
      const after = appSession('t-feed', 'u6');
      await a.createSession(after, T0);
      await a.revokeSession(after.handle, 'logout', T0 + 1);
      expect(heard).not.toContain(after.handle);
    } finally {
      await sub.close();
      await a.close();
      await b.close();
    }
  });

  it('tells a subscriber to reset when ends it never read were pruned from the log', async () => {
    const path = join(tempDir(), 'feed-gap.db');
    const a = await openSqliteStore(path, { feedPollMs: 60_000 });
    const b = await openSqliteStore(path);
    const heard: string[] = [];
    const changes: string[] = [];
    const sub = await a.subscribeSessionEnds(
      (hs) => heard.push(...hs),
      (change) => changes.push(change),
    );
    try {
      const s1 = appSession('t-gap', 'u1');
      const s2 = appSession('t-gap', 'u2');
      for (const s of [s1, s2]) {
        await b.createSession(s, T0);
        await b.revokeSession(s.handle, 'admin', T0 + 1);
      }
      const raw = new DatabaseSync(path);
      raw.prepare('DELETE FROM session_ends WHERE handle = ?').run(s1.handle);
      raw.close();
      await a.putMeta('any-write', true); // a write through `a` delivers at once
      expect(changes).toStrictEqual(['down', 'up']); // lost, and delivering again at once
      expect(heard).toStrictEqual([s2.handle]);
    } finally {
      await sub.close();
      await a.close();
      await b.close();
    }
  });

  it("reads the log of peer messages after a commit only if it wrote some: other processes' messages come with the poll, not after every write", async () => {
    const path = join(tempDir(), 'peers-commit.db');
    const a = await openSqliteStore(path, { feedPollMs: 60_000 });
    const b = await openSqliteStore(path, { feedPollMs: 60_000 });
    const heard: string[] = [];
    const sub = await a.subscribePeers(
      (m) => heard.push(m),
      () => undefined,
    );
    try {
      await b.publishToPeers(['from-b']);
      await a.putMeta('any-write', true); // no peer message in it: the log is not read
      expect(heard).toStrictEqual([]);
      await a.publishToPeers(['from-a']); // its own, at once — with what came before it, in order
      expect(heard).toStrictEqual(['from-b', 'from-a']);
    } finally {
      await sub.close();
      await a.close();
      await b.close();
    }
  });

  it('prunes messages between the processes older than PEER_MESSAGE_RETENTION_MS with the expiry sweep, and keeps the newer', async () => {
    const path = join(tempDir(), 'peers.db');
    const store = await openSqliteStore(path);
    try {
      await store.publishToPeers(['old one', 'old two', 'recent']);
      const raw = new DatabaseSync(path);
      try {
        const old = Date.now() - PEER_MESSAGE_RETENTION_MS - 1_000;
        raw.prepare("UPDATE peer_messages SET recorded_at = ? WHERE message LIKE 'old %'").run(old);
        const messages = () => (raw.prepare('SELECT message FROM peer_messages ORDER BY seq').all() as { message: string }[]).map((r) => r.message);
        expect(messages()).toStrictEqual(['old one', 'old two', 'recent']);
        await store.sweepExpired(T0, 100); // housekeeping rides along
        expect(messages()).toStrictEqual(['recent']);
      } finally {
        raw.close();
      }
    } finally {
      await store.close();
    }
  });
});
