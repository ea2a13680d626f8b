// The conformance suite of the sessions, accounts and meta ports (src/store/port.ts), run on every
// target of the matrix (test/store/targets.ts). It is where the races are proven — many concurrent
// callers through Promise.all, one winner — so an asynchronous adapter is truly raced.
//
// Rules that let many runs share one store (a long-lived Redis):
// - every test makes its own tenant and user ids; nothing relies on an empty store;
// - times are passed in and anchored to the real clock at the start of the run (T0). Tests move
//   `now` forward for their own sessions; the only global operation, sweepExpired, is called
//   with now = T0, and the sessions it should find were created in the past. So an adapter that
//   uses the real clock for housekeeping (key TTLs) is not confused, and a sweep never expires
//   another run's sessions early.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Conflict } from '../../src/domain/errors.ts';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, effectiveStatus, isValid, issueSession } from '../../src/domain/session.ts';
import type { Lifetime, Session, SessionKind } from '../../src/domain/session.ts';
import { buildTenant } from '../../src/domain/tenant.ts';
import type { User } from '../../src/domain/user.ts';
import { USER_LIST_MAX } from '../../src/store/accounts-port.ts';
import type { Coordination } from '../../src/store/coordination-port.ts';
import type { CreateLimit, CreateSessionResult, Page, RefreshToken, RotateResult, SessionStore } from '../../src/store/port.ts';

export interface OpenedStore {
  store: SessionStore;
  /** Releases what `open` made. Must be safe to call after `store.close()`. */
  close: () => Promise<void>;
}

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Data that breaks naive codecs: empty arrays vs objects, 16+ significant digits, unicode. */
const RICH_DATA: Record<string, unknown> = {
  state: 'st_' + 'x'.repeat(40),
  nested: { deeper: { list: [1, 'two', { three: 3 }, null, true, false] }, empty: {} },
  emptyList: [],
  listOfEmpties: [[], {}, [[]], [{}]],
  largestDateMs: 8_640_000_000_000_000,
  maxSafeInteger: Number.MAX_SAFE_INTEGER,
  negativeEpochMs: -1_767_225_600_000,
  seventeenDigits: 0.30000000000000004,
  tiny: 5e-324,
  unicode: 'Grüße, 你好, مرحبا, 👩‍👩‍👧, e\u0301',
  escapes: 'a "quoted" \\ backslash / slash \n newline \t tab',
  nothing: null,
};

/**
 * Declares the suite for one adapter. `open` is called once for the suite (and once more by the
 * test of `close`); each call must return an independent store instance.
 */
export function describeStoreConformance(
  name: string,
  open: () => Promise<OpenedStore>,
  opts?: { skip?: boolean },
): void {
  describe.skipIf(opts?.skip === true)(name, () => {
    const T0 = Date.now();
    let opened: OpenedStore | undefined;
    let store: SessionStore;

    beforeAll(async () => {
      opened = await open();
      store = opened.store;
    });
    afterAll(async () => {
      await opened?.close();
    });

    // ---- helpers --------------------------------------------------------------------------

    interface Ids {
      tenantId: string;
      userId: string;
    }

    function fresh(): Ids {
      return { tenantId: `t-${randomUUID()}`, userId: `u-${randomUUID()}` };
    }

    interface IssueOptions {
      at?: number;
      parent?: Session;
      lifetime?: Lifetime;
      data?: Record<string, unknown>;
      userId?: string | null;
      authMethod?: string;
    }

    function issue(ids: Ids, kind: SessionKind, o: IssueOptions = {}): Session {
      const at = o.at ?? T0;
      const userId = o.userId !== undefined ? o.userId : kind === 'flow' ? null : ids.userId;
      return issueSession(
        {
          tenantId: ids.tenantId,
          userId,
          kind,
          parentHandle: o.parent?.handle ?? null,
          lifetime: o.lifetime ?? DEFAULT_LIFETIMES[kind],
          authMethod: o.authMethod ?? 'password',
          clientId: kind === 'app' ? 'demo-app' : null,
          device: { userAgent: 'conformance', ip: '192.0.2.1' },
          ...(o.data ? { data: o.data } : {}),
          ...(o.parent ? { notAfter: o.parent.absoluteExpiresAt } : {}),
        },
        at,
      ).session;
    }

    function ok(r: CreateSessionResult): { session: Session; evicted: Session[] } {
      if (!r.ok) throw new Error(`expected the session to be created, got ${JSON.stringify(r)}`);
      return r;
    }

    /** Issues and stores a session created at `o.at` (default T0). */
    async function make(ids: Ids, kind: SessionKind, o: IssueOptions = {}): Promise<Session> {
      const s = issue(ids, kind, o);
      return ok(await store.createSession(s, s.createdAt)).session;
    }

    /** A session created two hours before T0 with a short lifetime: expired at T0 in real time. */
    function makeExpired(ids: Ids, kind: SessionKind = 'app'): Promise<Session> {
      return make(ids, kind, { at: T0 - 2 * HOUR, lifetime: { idle: kind === 'app' || kind === 'idp' ? 60 : null, absolute: 600 } });
    }

    async function stored(handle: string): Promise<Session> {
      const s = await store.getSessionByHandle(handle);
      if (s === null) throw new Error(`session ${handle} is not stored`);
      return s;
    }

    function handles(list: readonly Session[]): string[] {
      return list.map((s) => s.handle);
    }

    function sorted(list: readonly Session[]): Session[] {
      return [...list].sort((a, b) => a.createdAt - b.createdAt || (a.handle < b.handle ? -1 : a.handle > b.handle ? 1 : 0));
    }

    async function validHandles(ids: Ids, kind: SessionKind, now: number): Promise<string[]> {
      const page = await store.listSessions({ tenantId: ids.tenantId, userId: ids.userId, kind, status: 'active', now, limit: 500 });
      expect(page.nextCursor).toBeNull();
      return handles(page.items);
    }

    async function listAll(query: Parameters<SessionStore['listSessions']>[0]): Promise<{ items: Session[]; pages: number[] }> {
      const items: Session[] = [];
      const pages: number[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 1000; i++) {
        const page = await store.listSessions({ ...query, cursor });
        items.push(...page.items);
        pages.push(page.items.length);
        cursor = page.nextCursor;
        if (cursor === null) return { items, pages };
      }
      throw new Error('listSessions never returned nextCursor: null');
    }

    /** Runs sweepExpired(T0, max) until it returns nothing; returns everything it returned. */
    async function sweepAll(max = 500): Promise<Session[]> {
      const out: Session[] = [];
      for (let i = 0; i < 10_000; i++) {
        const got = await store.sweepExpired(T0, max);
        expect(got.length).toBeLessThanOrEqual(max);
        if (got.length === 0) return out;
        out.push(...got);
      }
      throw new Error('sweepExpired never ran dry');
    }

    function outcome<R extends { outcome: string }, K extends R['outcome']>(r: R, k: K): Extract<R, { outcome: K }> {
      expect(r.outcome).toBe(k);
      return r as Extract<R, { outcome: K }>;
    }

    function firstToken(s: Session, tokenHash = hashSecret(newSecret())): RefreshToken {
      return {
        tokenHash,
        sessionHandle: s.handle,
        tenantId: s.tenantId,
        userId: s.userId as string,
        createdAt: s.createdAt,
        rotatedAt: null,
        successorHash: null,
      };
    }

    function newUser(tenantId: string, email: string, o: Partial<User> = {}): User {
      return {
        id: `u-${randomUUID()}`,
        tenantId,
        email,
        passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDE',
        roles: [],
        createdAt: T0,
        updatedAt: T0,
        ...o,
      };
    }

    // ---- create and read ------------------------------------------------------------------

    describe('createSession and the getters', () => {
      it('round-trips a session exactly, by handle and by secret hash', async () => {
        const ids = fresh();
        const s = issueSession(
          {
            tenantId: ids.tenantId,
            userId: ids.userId,
            kind: 'app',
            lifetime: DEFAULT_LIFETIMES.app,
            authMethod: 'oidc',
            clientId: 'client-ü',
            device: {
              userAgent: 'Mozilla/5.0 (X11; Linux x86_64) 日本語 🚀',
              ip: '2001:db8::1',
              location: { country: 'CH', city: 'Zürich', lat: 47.376887, lon: 8.541694 },
            },
            data: RICH_DATA,
          },
          T0,
        ).session;
        const r = await store.createSession(s, T0);
        expect(r).toStrictEqual({ ok: true, session: s, evicted: [] });
        expect(await store.getSessionByHandle(s.handle)).toStrictEqual(s);
        expect(await store.getSessionBySecretHash(s.secretHash)).toStrictEqual(s);
      });

      it('keeps a data key named __proto__ as an own key, and pollutes no prototype', async () => {
        const data = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as Record<string, unknown>;
        const s = await make(fresh(), 'app', { data });
        const read = await stored(s.handle);
        expect(Object.keys(read.data).sort()).toStrictEqual(['__proto__', 'ok']);
        expect(Object.getPrototypeOf(read.data)).toBe(Object.prototype);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });

      it("answers every refusal with the catalogue's code and status, the same on every adapter", async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const t = firstToken(s);
        await store.addRefreshToken(t);
        await expect(store.addRefreshToken({ ...t, createdAt: T0 + 1 })).rejects.toMatchObject({ code: 'refresh_token_exists', status: 409 });
        await expect(store.addRefreshToken(firstToken(issue(ids, 'app')))).rejects.toMatchObject({ code: 'session_not_found', status: 404 });
        const orphan = issue(ids, 'redirect', { parent: issue(ids, 'app') });
        await expect(store.createSession(orphan, T0)).rejects.toMatchObject({ code: 'invalid_parent', status: 409 });
        await expect(store.createSession({ ...issue(ids, 'app'), handle: s.handle }, T0)).rejects.toMatchObject({ code: 'session_exists' });
        await expect(store.createSession({ ...issue(ids, 'app'), secretHash: s.secretHash }, T0)).rejects.toMatchObject({ code: 'session_exists' });
        const user = newUser(ids.tenantId, `${randomUUID()}@example.com`);
        await expect(store.updateUser(user)).rejects.toMatchObject({ code: 'user_not_found', status: 404 });
        await store.createUser(user);
        const taken = `${randomUUID()}@example.com`;
        await store.createUser(newUser(ids.tenantId, taken));
        await expect(store.updateUser({ ...user, email: taken })).rejects.toMatchObject({ code: 'user_exists', status: 409 });
      });

      it('round-trips a flow session without a user, with empty device and data', async () => {
        const ids = fresh();
        const s = issueSession(
          { tenantId: ids.tenantId, userId: null, kind: 'flow', lifetime: DEFAULT_LIFETIMES.flow, authMethod: 'oidc' },
          T0,
        ).session;
        expect(s.device).toStrictEqual({});
        expect(s.data).toStrictEqual({});
        ok(await store.createSession(s, T0));
        expect(await store.getSessionByHandle(s.handle)).toStrictEqual(s);
        expect(await store.getSessionBySecretHash(s.secretHash)).toStrictEqual(s);
      });

      it('returns null for an unknown handle or secret hash', async () => {
        expect(await store.getSessionByHandle(`nope.${randomUUID()}`)).toBeNull();
        expect(await store.getSessionBySecretHash(hashSecret(newSecret()))).toBeNull();
        expect(await store.getSessionWithUserBySecretHash(hashSecret(newSecret()))).toBeNull();
      });

      it('getSessionWithUserBySecretHash: the record by secret hash whatever its status, with its user as stored', async () => {
        const ids = fresh();
        const user = await store.createUser(newUser(ids.tenantId, `${randomUUID()}@example.com`, { id: ids.userId, roles: ['admin'] }));
        // The same user id in another tenant is another user: never answered for this one.
        await store.createUser(newUser(`t-${randomUUID()}`, `${randomUUID()}@example.com`, { id: ids.userId }));
        const app = await make(ids, 'app');
        const token = await make(ids, 'flow', { userId: ids.userId, data: { purpose: 'sso_token', appHandle: app.handle } });
        expect(await store.getSessionWithUserBySecretHash(token.secretHash)).toStrictEqual({ session: token, user });
        expect(await store.getSessionWithUserBySecretHash(app.secretHash)).toStrictEqual({ session: app, user });
        // The user as it is now (a disabled one too), and the session ended as it is stored.
        const disabled = await store.updateUser({ ...user, disabled: true, updatedAt: T0 + MINUTE });
        const [revoked] = await store.revokeSession(token.handle, 'admin', T0 + MINUTE);
        expect(await store.getSessionWithUserBySecretHash(token.secretHash)).toStrictEqual({ session: revoked, user: disabled });
        // A user not stored (or deleted), and a session without a user: user null.
        const orphan = await make(fresh(), 'app');
        expect(await store.getSessionWithUserBySecretHash(orphan.secretHash)).toStrictEqual({ session: orphan, user: null });
        const flow = await make(ids, 'flow');
        expect(await store.getSessionWithUserBySecretHash(flow.secretHash)).toStrictEqual({ session: flow, user: null });
        expect(await store.deleteUser(ids.tenantId, ids.userId)).toBe(true);
        expect(await store.getSessionWithUserBySecretHash(app.secretHash)).toStrictEqual({ session: await stored(app.handle), user: null });
      });

      it('stores a child below a valid parent of the same tenant', async () => {
        const ids = fresh();
        const idp = await make(ids, 'idp');
        const app = await make(ids, 'app', { parent: idp });
        const redirect = await make(ids, 'redirect', { parent: app, at: T0 + MINUTE });
        expect((await stored(redirect.handle)).parentHandle).toBe(app.handle);
        expect((await stored(app.handle)).parentHandle).toBe(idp.handle);
      });

      it('refuses a parent that is unknown, ended, or of another tenant, and stores nothing', async () => {
        const ids = fresh();
        const other = fresh();
        const revokedApp = await make(ids, 'app');
        await store.revokeSession(revokedApp.handle, 'logout', T0);
        const expiredApp = await makeExpired(ids);
        const foreignApp = await make(other, 'app');
        const unknownParent = issue(ids, 'app'); // never stored
        for (const parent of [unknownParent, revokedApp, expiredApp, foreignApp]) {
          const child = issue(ids, 'redirect', { parent, at: T0 + SECOND });
          await expect(store.createSession(child, T0 + SECOND)).rejects.toThrow();
          expect(await store.getSessionByHandle(child.handle)).toBeNull();
        }
      });

      it('refuses a second session with the same handle or the same secret hash', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const sameHandle = { ...issue(ids, 'app'), handle: s.handle };
        await expect(store.createSession(sameHandle, T0)).rejects.toThrow();
        expect(await stored(s.handle)).toStrictEqual(s);
        const sameSecret = { ...issue(ids, 'app'), secretHash: s.secretHash };
        await expect(store.createSession(sameSecret, T0)).rejects.toThrow();
        expect(await store.getSessionByHandle(sameSecret.handle)).toBeNull();
        expect(await store.getSessionBySecretHash(s.secretHash)).toStrictEqual(s);
      });
    });

    // ---- limits ---------------------------------------------------------------------------

    describe('createSession with a limit', () => {
      const evict3: CreateLimit = { kind: 'app', max: 3, policy: 'evict_oldest' };
      const reject3: CreateLimit = { kind: 'app', max: 3, policy: 'reject_new' };

      it('evict_oldest: revokes the oldest with limit_evicted, its subtree too, and reports them', async () => {
        const ids = fresh();
        const a0 = await make(ids, 'app', { at: T0 });
        const a1 = await make(ids, 'app', { at: T0 + 1 });
        const a2 = await make(ids, 'app', { at: T0 + 2 });
        const red = await make(ids, 'redirect', { parent: a0, at: T0 + 2 });
        const a3 = issue(ids, 'app', { at: T0 + 3 });
        const r = ok(await store.createSession(a3, T0 + 3, evict3));
        expect(r.session).toStrictEqual(a3);
        expect(r.evicted[0]).toMatchObject({ handle: a0.handle, status: 'revoked', revokeReason: 'limit_evicted', endedAt: T0 + 3 });
        expect(new Set(handles(r.evicted))).toStrictEqual(new Set([a0.handle, red.handle]));
        expect(await stored(a0.handle)).toMatchObject({ status: 'revoked', revokeReason: 'limit_evicted', endedAt: T0 + 3 });
        expect(await stored(red.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked' });
        expect(new Set(await validHandles(ids, 'app', T0 + 3))).toStrictEqual(new Set([a1.handle, a2.handle, a3.handle]));
      });

      it('evict_oldest: after a lowered limit, evicts as many as needed, oldest first', async () => {
        const ids = fresh();
        const old: Session[] = [];
        for (let i = 0; i < 5; i++) old.push(await make(ids, 'app', { at: T0 + i }));
        const fresh1 = issue(ids, 'app', { at: T0 + 10 });
        const r = ok(await store.createSession(fresh1, T0 + 10, { kind: 'app', max: 2, policy: 'evict_oldest' }));
        expect(handles(r.evicted)).toStrictEqual(handles(old.slice(0, 4)));
        expect(new Set(await validHandles(ids, 'app', T0 + 10))).toStrictEqual(new Set([old[4]!.handle, fresh1.handle]));
      });

      it('reject_new: refuses the session over the limit and changes nothing', async () => {
        const ids = fresh();
        const existing = [await make(ids, 'app'), await make(ids, 'app'), await make(ids, 'app')];
        const extra = issue(ids, 'app', { at: T0 + 1 });
        expect(await store.createSession(extra, T0 + 1, reject3)).toStrictEqual({ ok: false, reason: 'limit_reached', active: 3 });
        expect(await store.getSessionByHandle(extra.handle)).toBeNull();
        for (const s of existing) expect(await stored(s.handle)).toStrictEqual(s);
      });

      it('counts only valid sessions of the limited kind, of this user and tenant', async () => {
        const ids = fresh();
        await make(ids, 'idp');
        await make(ids, 'idp');
        await make(ids, 'idp');
        await makeExpired(ids);
        await makeExpired(ids);
        const revoked = await make(ids, 'app');
        await store.revokeSession(revoked.handle, 'logout', T0);
        await make({ tenantId: ids.tenantId, userId: `u-${randomUUID()}` }, 'app'); // another user
        await make({ tenantId: `t-${randomUUID()}`, userId: ids.userId }, 'app'); // same user id, other tenant
        const limit: CreateLimit = { kind: 'app', max: 2, policy: 'reject_new' };
        ok(await store.createSession(issue(ids, 'app'), T0 + 1, limit));
        ok(await store.createSession(issue(ids, 'app'), T0 + 1, limit));
        expect(await store.createSession(issue(ids, 'app'), T0 + 1, limit)).toStrictEqual({
          ok: false,
          reason: 'limit_reached',
          active: 2,
        });
        const evicting = ok(await store.createSession(issue(ids, 'app'), T0 + 2, { ...limit, policy: 'evict_oldest' }));
        expect(evicting.evicted).toHaveLength(1);
        expect(evicting.evicted[0]!.kind).toBe('app');
      });

      it('THE RACE, evict_oldest: 100 concurrent logins leave exactly 3, each eviction reported once', async () => {
        const ids = fresh();
        const sessions = Array.from({ length: 100 }, () => issue(ids, 'app'));
        const results = await Promise.all(sessions.map((s) => store.createSession(s, T0, evict3)));
        const evicted = results.flatMap((r) => ok(r).evicted);
        const evictedHandles = handles(evicted);
        expect(new Set(evictedHandles).size).toBe(evictedHandles.length);
        expect(evictedHandles).toHaveLength(97);
        for (const e of evicted) expect(e).toMatchObject({ status: 'revoked', revokeReason: 'limit_evicted' });

        const valid = await validHandles(ids, 'app', T0);
        expect(valid).toHaveLength(3);
        expect(new Set([...valid, ...evictedHandles])).toStrictEqual(new Set(handles(sessions)));
        for (const h of evictedHandles) {
          expect(await stored(h)).toMatchObject({ status: 'revoked', revokeReason: 'limit_evicted' });
        }
      });

      it('THE RACE, reject_new: of 100 concurrent logins exactly 3 succeed, 97 get limit_reached', async () => {
        const ids = fresh();
        const sessions = Array.from({ length: 100 }, () => issue(ids, 'app'));
        const results = await Promise.all(sessions.map((s) => store.createSession(s, T0, reject3)));
        const accepted = sessions.filter((_, i) => results[i]!.ok);
        const refused = results.filter((r) => !r.ok);
        expect(accepted).toHaveLength(3);
        expect(refused).toHaveLength(97);
        for (const r of refused) expect(r).toStrictEqual({ ok: false, reason: 'limit_reached', active: 3 });
        expect(new Set(await validHandles(ids, 'app', T0))).toStrictEqual(new Set(handles(accepted)));
        for (const s of sessions.filter((_, i) => !results[i]!.ok)) {
          expect(await store.getSessionByHandle(s.handle)).toBeNull();
        }
      });
    });

    // ---- touch and data -------------------------------------------------------------------

    describe('touchSession', () => {
      it('records activity and slides the idle expiry', async () => {
        const ids = fresh();
        const s = await make(ids, 'app'); // idle expiry T0 + 15 min
        const t1 = await store.touchSession(s.handle, T0 + 10 * MINUTE, T0 + 25 * MINUTE);
        expect(t1).toStrictEqual({ ...s, lastSeenAt: T0 + 10 * MINUTE, idleExpiresAt: T0 + 25 * MINUTE });
        expect(await stored(s.handle)).toStrictEqual(t1);
        // Past the original idle expiry, still valid thanks to the touch.
        const t2 = await store.touchSession(s.handle, T0 + 20 * MINUTE, T0 + 35 * MINUTE);
        expect(t2).toMatchObject({ lastSeenAt: T0 + 20 * MINUTE, idleExpiresAt: T0 + 35 * MINUTE, status: 'active' });
      });

      it('caps the new idle expiry at the absolute expiry', async () => {
        const ids = fresh();
        const s = await make(ids, 'app', { lifetime: { idle: 900, absolute: 1800 } }); // absolute expiry T0 + 30 min
        const t = await store.touchSession(s.handle, T0 + 10 * MINUTE, T0 + 35 * MINUTE);
        expect(t).toStrictEqual({ ...s, lastSeenAt: T0 + 10 * MINUTE, idleExpiresAt: T0 + 30 * MINUTE });
        expect(await stored(s.handle)).toStrictEqual(t);
        // Nothing outlives the absolute expiry: past it the session is expired, not idle-valid.
        expect(effectiveStatus(await stored(s.handle), T0 + 31 * MINUTE)).toBe('expired');
        expect(await store.touchSession(s.handle, T0 + 31 * MINUTE, T0 + 46 * MINUTE)).toBeNull();
      });

      it('refuses an expired session and changes nothing', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        expect(await store.touchSession(s.handle, T0 + 16 * MINUTE, T0 + 31 * MINUTE)).toBeNull();
        expect(await stored(s.handle)).toStrictEqual(s);
      });

      it('refuses a revoked session and changes nothing', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const [revoked] = await store.revokeSession(s.handle, 'logout', T0 + MINUTE);
        expect(await store.touchSession(s.handle, T0 + 2 * MINUTE, T0 + 17 * MINUTE)).toBeNull();
        expect(await stored(s.handle)).toStrictEqual(revoked);
      });

      it('returns null for an unknown handle', async () => {
        expect(await store.touchSession(`nope.${randomUUID()}`, T0, T0 + MINUTE)).toBeNull();
      });
    });

    describe('updateSessionData', () => {
      it('merges the patch; a null value removes its key', async () => {
        const ids = fresh();
        const s = await make(ids, 'app', { data: { a: 1, b: { c: 2 }, list: [1, 2], keep: 'yes' } });
        const u = await store.updateSessionData(s.handle, { a: null, b: { e: [] }, d: 'ünï' }, T0 + MINUTE);
        const data = { b: { e: [] }, list: [1, 2], keep: 'yes', d: 'ünï' };
        expect(u).toStrictEqual({ ...s, data });
        expect(await stored(s.handle)).toStrictEqual({ ...s, data });
      });

      it('loses no key when 20 patches race', async () => {
        const ids = fresh();
        const s = await make(ids, 'app', { data: { base: true } });
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.updateSessionData(s.handle, { [`k${i}`]: i }, T0 + SECOND)),
        );
        for (const r of results) expect(r).not.toBeNull();
        const expected: Record<string, unknown> = { base: true };
        for (let i = 0; i < 20; i++) expected[`k${i}`] = i;
        expect((await stored(s.handle)).data).toStrictEqual(expected);
      });

      it('refuses an expired, revoked or unknown session and changes nothing', async () => {
        const ids = fresh();
        const s = await make(ids, 'app', { data: { a: 1 } });
        expect(await store.updateSessionData(s.handle, { a: 2 }, T0 + 16 * MINUTE)).toBeNull();
        expect(await stored(s.handle)).toStrictEqual(s);
        const [revoked] = await store.revokeSession(s.handle, 'logout', T0 + MINUTE);
        expect(await store.updateSessionData(s.handle, { a: 3 }, T0 + 2 * MINUTE)).toBeNull();
        expect(await stored(s.handle)).toStrictEqual(revoked);
        expect(await store.updateSessionData(`nope.${randomUUID()}`, { a: 4 }, T0)).toBeNull();
      });
    });

    // ---- revocation -----------------------------------------------------------------------

    describe('revocation', () => {
      it('revokeSession ends the subtree (idp → app → redirect) and returns only what it changed, root first', async () => {
        const ids = fresh();
        const idp = await make(ids, 'idp');
        const app = await make(ids, 'app', { parent: idp });
        const redirect = await make(ids, 'redirect', { parent: app });
        const app2 = await make(ids, 'app', { parent: idp });
        const redirect2 = await make(ids, 'redirect', { parent: app2 });
        const lone = await make(ids, 'app');

        const first = await store.revokeSession(app.handle, 'logout', T0 + MINUTE);
        expect(handles(first)).toStrictEqual([app.handle, redirect.handle]);
        expect(first[0]).toStrictEqual({ ...app, status: 'revoked', revokeReason: 'logout', endedAt: T0 + MINUTE });
        expect(first[1]).toStrictEqual({ ...redirect, status: 'revoked', revokeReason: 'parent_revoked', endedAt: T0 + MINUTE });
        expect(await stored(app.handle)).toStrictEqual(first[0]);
        for (const s of [idp, app2, redirect2, lone]) expect(await stored(s.handle)).toStrictEqual(s);

        const second = await store.revokeSession(idp.handle, 'admin', T0 + 2 * MINUTE);
        expect(second[0]).toMatchObject({ handle: idp.handle, status: 'revoked', revokeReason: 'admin', endedAt: T0 + 2 * MINUTE });
        expect(new Set(handles(second))).toStrictEqual(new Set([idp.handle, app2.handle, redirect2.handle]));
        expect(await stored(app2.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked' });
        expect(await stored(redirect2.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked' });
        // Already ended sessions keep their first reason and time.
        expect(await stored(app.handle)).toStrictEqual(first[0]);
        expect(await stored(lone.handle)).toStrictEqual(lone);

        expect(await store.revokeSession(idp.handle, 'admin', T0 + 3 * MINUTE)).toStrictEqual([]);
        expect(await store.revokeSession(`nope.${randomUUID()}`, 'admin', T0)).toStrictEqual([]);
      });

      it('revokeSession ends an idle-expired (still renewable) session and the valid descendant below it', async () => {
        const ids = fresh();
        const idp = await make(ids, 'idp');
        const app = await make(ids, 'app', { parent: idp }); // idle expiry T0 + 15 min
        const redirect = await make(ids, 'redirect', { parent: app, at: T0 + 10 * MINUTE }); // valid until T0 + 30 min
        const now = T0 + 16 * MINUTE;
        const changed = await store.revokeSession(idp.handle, 'logout', now);
        expect(new Set(handles(changed))).toStrictEqual(new Set([idp.handle, app.handle, redirect.handle]));
        expect(changed[0]!.handle).toBe(idp.handle);
        expect(await stored(redirect.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked', endedAt: now });
        expect(await stored(app.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked', endedAt: now });
      });

      it('item 2: a revoked idle-expired session is never renewed (renewAfterExpiry answers revoked)', async () => {
        const ids = fresh();
        const app = await make(ids, 'app'); // idle expiry T0 + 15 min
        const now = T0 + 16 * MINUTE;
        expect(handles(await store.revokeSession(app.handle, 'logout', now))).toStrictEqual([app.handle]);
        const successor = issue(ids, 'app', { at: now, authMethod: 'renewed' });
        const r = await store.renewAfterExpiry(app.handle, successor, now + 1);
        expect(r.outcome).toBe('revoked');
        expect(await store.getSessionByHandle(successor.handle)).toBeNull();
        // A session past its absolute expiry stays as it is.
        const old = await makeExpired(ids);
        expect(await store.revokeSession(old.handle, 'logout', now)).toStrictEqual([]);
      });

      it("revokeUserSessions ends all of one user's sessions except exceptHandle's subtree", async () => {
        const ids = fresh();
        const idp1 = await make(ids, 'idp');
        const app1 = await make(ids, 'app', { parent: idp1 });
        const redirect1 = await make(ids, 'redirect', { parent: app1 });
        const app2 = await make(ids, 'app');
        const idp2 = await make(ids, 'idp');
        const app3 = await make(ids, 'app', { parent: idp2 });
        const redirect3 = await make(ids, 'redirect', { parent: app3 });
        const earlier = await make(ids, 'app');
        const [earlierRevoked] = await store.revokeSession(earlier.handle, 'logout', T0);
        await makeExpired(ids);
        const otherUser = await make({ tenantId: ids.tenantId, userId: `u-${randomUUID()}` }, 'app');
        const flow = await make(ids, 'flow');
        const now = T0 + MINUTE;

        const changed = await store.revokeUserSessions(ids.tenantId, ids.userId, 'user_revoked', now, { exceptHandle: idp2.handle });
        expect(new Set(handles(changed))).toStrictEqual(new Set([idp1.handle, app1.handle, redirect1.handle, app2.handle]));
        for (const s of changed) expect(s).toMatchObject({ status: 'revoked', endedAt: now });
        for (const s of [idp1, app1, redirect1, app2]) expect((await stored(s.handle)).status).toBe('revoked');
        for (const s of [idp2, app3, redirect3, otherUser, flow]) expect(await stored(s.handle)).toStrictEqual(s);
        expect(await stored(earlier.handle)).toStrictEqual(earlierRevoked);

        const rest = await store.revokeUserSessions(ids.tenantId, ids.userId, 'password_changed', now + 1);
        expect(new Set(handles(rest))).toStrictEqual(new Set([idp2.handle, app3.handle, redirect3.handle]));
        expect(await store.revokeUserSessions(ids.tenantId, ids.userId, 'admin', now + 2)).toStrictEqual([]);
        expect(await stored(otherUser.handle)).toStrictEqual(otherUser);
      });

      it('revokeUserSessions keeps the ancestors of exceptHandle too (no active child under an ended parent)', async () => {
        const ids = fresh();
        const idp = await make(ids, 'idp');
        const current = await make(ids, 'app', { parent: idp });
        const sibling = await make(ids, 'app', { parent: idp });
        const other = await make(ids, 'app');
        const changed = await store.revokeUserSessions(ids.tenantId, ids.userId, 'user', T0 + MINUTE, { exceptHandle: current.handle });
        expect(new Set(handles(changed))).toStrictEqual(new Set([sibling.handle, other.handle]));
        expect(await stored(idp.handle)).toStrictEqual(idp);
        expect(await stored(current.handle)).toStrictEqual(current);
      });

      it('revokeTenantSessions ends every valid session of the tenant and nothing elsewhere', async () => {
        const a = fresh();
        const a2: Ids = { tenantId: a.tenantId, userId: `u-${randomUUID()}` };
        const b: Ids = { tenantId: `t-${randomUUID()}`, userId: a.userId };
        const s1 = await make(a, 'app');
        const idp = await make(a2, 'idp');
        const s2 = await make(a2, 'app', { parent: idp });
        const flow = await make(a, 'flow');
        const expired = await makeExpired(a);
        const elsewhere = await make(b, 'app');
        const now = T0 + MINUTE;
        const changed = await store.revokeTenantSessions(a.tenantId, 'tenant_revoked', now);
        expect(new Set(handles(changed))).toStrictEqual(new Set([s1.handle, idp.handle, s2.handle, flow.handle]));
        for (const s of changed) expect(s).toMatchObject({ status: 'revoked', endedAt: now });
        for (const s of [s1, idp, s2, flow]) expect((await stored(s.handle)).status).toBe('revoked');
        expect(effectiveStatus(await stored(expired.handle), now)).toBe('expired');
        expect(await stored(elsewhere.handle)).toStrictEqual(elsewhere);
        expect(await store.revokeTenantSessions(a.tenantId, 'tenant_revoked', now + 1)).toStrictEqual([]);
      });
    });

    // ---- listing --------------------------------------------------------------------------

    describe('listSessions', () => {
      const ids = fresh();
      const other: Ids = { tenantId: ids.tenantId, userId: `u-${randomUUID()}` };
      let userApps: Session[] = [];
      let otherIdps: Session[] = [];
      let flows: Session[] = [];

      beforeAll(async () => {
        // 25 sessions, in groups of three with the same createdAt, so the handle breaks ties.
        userApps = await Promise.all(
          Array.from({ length: 25 }, (_, i) => make(ids, 'app', { at: T0 + Math.floor(i / 3) * SECOND })),
        );
        otherIdps = await Promise.all(Array.from({ length: 5 }, (_, i) => make(other, 'idp', { at: T0 + i })));
        flows = await Promise.all([make(ids, 'flow'), make(ids, 'flow')]);
      });

      it("pages a user's sessions by (createdAt, handle): 25 with limit 10 → 10/10/5, no gaps, no duplicates", async () => {
        const { items, pages } = await listAll({ tenantId: ids.tenantId, userId: ids.userId, now: T0, limit: 10 });
        expect(pages).toStrictEqual([10, 10, 5]);
        expect(handles(items)).toStrictEqual(handles(sorted(userApps)));
        expect(items).toStrictEqual(sorted(userApps));
      });

      it('lists a whole tenant, flows included', async () => {
        const { items } = await listAll({ tenantId: ids.tenantId, now: T0, limit: 7 });
        expect(handles(items)).toStrictEqual(handles(sorted([...userApps, ...otherIdps, ...flows])));
      });

      it('filters by kind', async () => {
        const idps = await listAll({ tenantId: ids.tenantId, kind: 'idp', now: T0, limit: 500 });
        expect(handles(idps.items)).toStrictEqual(handles(sorted(otherIdps)));
        const flowPage = await store.listSessions({ tenantId: ids.tenantId, kind: 'flow', now: T0, limit: 500 });
        expect(new Set(handles(flowPage.items))).toStrictEqual(new Set(handles(flows)));
        const none = await store.listSessions({ tenantId: ids.tenantId, userId: ids.userId, kind: 'redirect', now: T0, limit: 10 });
        expect(none).toStrictEqual({ items: [], nextCursor: null });
      });

      it('ends with nextCursor null when the last page is exactly full', async () => {
        const p1 = await store.listSessions({ tenantId: ids.tenantId, userId: other.userId, now: T0, limit: 5 });
        expect(p1.items).toHaveLength(5);
        expect(p1.nextCursor).toBeNull();
        const p2 = await store.listSessions({ tenantId: ids.tenantId, userId: other.userId, now: T0, limit: 3 });
        expect(p2.nextCursor).not.toBeNull();
        const p3 = await store.listSessions({ tenantId: ids.tenantId, userId: other.userId, now: T0, limit: 3, cursor: p2.nextCursor });
        expect(handles([...p2.items, ...p3.items])).toStrictEqual(handles(sorted(otherIdps)));
        expect(p3.nextCursor).toBeNull();
      });

      it('returns an empty page for a user without sessions', async () => {
        expect(await store.listSessions({ tenantId: ids.tenantId, userId: `u-${randomUUID()}`, now: T0, limit: 10 })).toStrictEqual({
          items: [],
          nextCursor: null,
        });
      });

      it('treats an empty cursor as the first page, and refuses a cursor it did not issue and a limit out of range', async () => {
        const q = { tenantId: ids.tenantId, userId: other.userId, now: T0, limit: 3 };
        const first = await store.listSessions(q);
        expect(await store.listSessions({ ...q, cursor: '' })).toStrictEqual(first);
        expect(await store.listSessions({ ...q, cursor: null })).toStrictEqual(first);
        await expect(store.listSessions({ ...q, cursor: 'bm9wZQ' })).rejects.toMatchObject({ code: 'invalid_cursor' });
        await expect(store.listSessions({ ...q, cursor: 'not a cursor' })).rejects.toMatchObject({ code: 'invalid_cursor' });
        await expect(store.listSessions({ ...q, limit: 0 })).rejects.toMatchObject({ code: 'invalid_limit' });
        await expect(store.listSessions({ ...q, limit: 501 })).rejects.toMatchObject({ code: 'invalid_limit' });
      });

      it('refuses a cursor it did not issue and a limit out of range on the tenant listing too', async () => {
        const q = { tenantId: ids.tenantId, now: T0, limit: 10 };
        await expect(store.listSessions({ ...q, cursor: 'not-a-cursor' })).rejects.toMatchObject({ code: 'invalid_cursor' });
        await expect(store.listSessions({ ...q, limit: 501 })).rejects.toMatchObject({ code: 'invalid_limit' });
      });

      it('filters by the effective status at `now`', async () => {
        const w = fresh();
        const valid = await Promise.all(Array.from({ length: 4 }, (_, i) => make(w, 'app', { at: T0 + i })));
        const toRevoke = await Promise.all(Array.from({ length: 3 }, () => make(w, 'app')));
        for (const s of toRevoke) await store.revokeSession(s.handle, 'logout', T0 + SECOND);
        const expired = [await makeExpired(w), await makeExpired(w)];
        await sweepAll(); // one of them (at least) now has the stored status `expired`
        const q = { tenantId: w.tenantId, userId: w.userId, now: T0 + SECOND, limit: 500 };
        const active = await store.listSessions({ ...q, status: 'active' });
        expect(handles(active.items)).toStrictEqual(handles(valid));
        const ended = await store.listSessions({ ...q, status: 'expired' });
        expect(new Set(handles(ended.items))).toStrictEqual(new Set(handles(expired)));
        const revoked = await store.listSessions({ ...q, status: 'revoked' });
        expect(new Set(handles(revoked.items))).toStrictEqual(new Set(handles(toRevoke)));

        const p1 = await store.listSessions({ ...q, status: 'active', limit: 2 });
        const p2 = await store.listSessions({ ...q, status: 'active', limit: 2, cursor: p1.nextCursor });
        expect(handles([...p1.items, ...p2.items])).toStrictEqual(handles(valid));
        expect(p2.nextCursor).toBeNull();

        // Later, the idle expiry has passed for the valid ones: same records, other status.
        const later = { ...q, now: T0 + 16 * MINUTE };
        expect((await store.listSessions({ ...later, status: 'active' })).items).toStrictEqual([]);
        const laterExpired = await store.listSessions({ ...later, status: 'expired' });
        expect(new Set(handles(laterExpired.items))).toStrictEqual(new Set(handles([...valid, ...expired])));
      });
    });

    // ---- single use -----------------------------------------------------------------------

    describe('consumeSession', () => {
      it('of 50 concurrent consumers exactly one gets the session', async () => {
        const ids = fresh();
        const app = await make(ids, 'app');
        const redirect = await make(ids, 'redirect', { parent: app, data: { consentId: 'c-1', target: '/consents/c-1' } });
        const now = T0 + MINUTE;
        const results = await Promise.all(Array.from({ length: 50 }, () => store.consumeSession(redirect.secretHash, now)));
        const winners = results.filter((r) => r !== null);
        expect(winners).toHaveLength(1);
        const consumed = { ...redirect, status: 'revoked', revokeReason: 'consumed', endedAt: now };
        expect(winners[0]).toStrictEqual(consumed);
        expect(await stored(redirect.handle)).toStrictEqual(consumed);
        expect(await stored(app.handle)).toStrictEqual(app);
        expect(await store.consumeSession(redirect.secretHash, now + 1)).toBeNull();
      });

      it('consumes a flow session (no user)', async () => {
        const ids = fresh();
        const flow = await make(ids, 'flow', { data: { state: 's', nonce: 'n', codeVerifier: 'v', orgSlug: 'acme', callbackPort: 8400 } });
        expect(await store.consumeSession(flow.secretHash, T0 + MINUTE)).toMatchObject({
          handle: flow.handle,
          data: flow.data,
          status: 'revoked',
          revokeReason: 'consumed',
        });
      });

      it('cannot consume an expired, revoked or unknown session', async () => {
        const ids = fresh();
        const flow = await make(ids, 'flow'); // 10 min absolute
        expect(await store.consumeSession(flow.secretHash, T0 + 11 * MINUTE)).toBeNull();
        expect(await stored(flow.handle)).toStrictEqual(flow);
        const flow2 = await make(ids, 'flow');
        const [revoked] = await store.revokeSession(flow2.handle, 'admin', T0);
        expect(await store.consumeSession(flow2.secretHash, T0 + SECOND)).toBeNull();
        expect(await stored(flow2.handle)).toStrictEqual(revoked);
        expect(await store.consumeSession(hashSecret(newSecret()), T0)).toBeNull();
      });
    });

    // ---- single use, then activation (the SSO token exchange) ------------------------------

    describe('redeemSession', () => {
      /** An SSO login as its callback leaves it: an idp session, a pending app session below it, the one-time token. */
      async function ssoLogin(ids: Ids, o: { appData?: Record<string, unknown> } = {}): Promise<{ idp: Session; app: Session; token: Session }> {
        const idp = await make(ids, 'idp');
        const app = await make(ids, 'app', { parent: idp, data: o.appData ?? { mode: 'pending', orgSlug: 'acme' } });
        const token = await make(ids, 'flow', { userId: ids.userId, data: { purpose: 'sso_token', appHandle: app.handle } });
        return { idp, app, token };
      }

      function target(app: Session, now: number, refreshToken: RefreshToken | null = firstToken(app)) {
        return { handle: app.handle, expectData: { mode: 'pending' }, patch: { mode: 'token', orgSlug: null, xsrfHash: 'x' }, idleExpiresAt: now + 15 * MINUTE, refreshToken };
      }

      it('consumes the secret and, in the same step, patches and touches the target and stores its first refresh token', async () => {
        const ids = fresh();
        const { app, token } = await ssoLogin(ids);
        const now = T0 + MINUTE;
        const t = { ...firstToken(app), createdAt: now };
        const r = outcome(await store.redeemSession(token.secretHash, target(app, now, t), now), 'redeemed');
        const consumed = { ...token, status: 'revoked', revokeReason: 'consumed', endedAt: now };
        // The consumed record stays in the store, not in the reply (the caller read it before).
        expect(Object.keys(r).sort()).toStrictEqual(['outcome', 'session']);
        const activated = { ...app, data: { mode: 'token', xsrfHash: 'x' }, lastSeenAt: now, idleExpiresAt: now + 15 * MINUTE };
        expect(r.session).toStrictEqual(activated);
        expect(await stored(app.handle)).toStrictEqual(activated);
        expect(await stored(token.handle)).toStrictEqual(consumed);
        expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
        // Once: the secret is spent, and the target stays as the first exchange left it.
        expect(await store.redeemSession(token.secretHash, target(app, now + SECOND), now + SECOND)).toStrictEqual({ outcome: 'not_consumed' });
        expect(await stored(app.handle)).toStrictEqual(activated);
      });

      it('caps the idle expiry at the absolute expiry; a null idle expiry clears it', async () => {
        const ids = fresh();
        const a = await ssoLogin(ids);
        const now = T0 + MINUTE;
        const r = outcome(await store.redeemSession(a.token.secretHash, { ...target(a.app, now), idleExpiresAt: a.app.absoluteExpiresAt + HOUR }, now), 'redeemed');
        expect(r.session.idleExpiresAt).toBe(a.app.absoluteExpiresAt);
        const b = await ssoLogin(ids);
        const r2 = outcome(await store.redeemSession(b.token.secretHash, { ...target(b.app, now, null), idleExpiresAt: null }, now), 'redeemed');
        expect(r2.session.idleExpiresAt).toBeNull();
        expect(isValid(await stored(b.app.handle), now + HOUR)).toBe(true);
      });

      it('of 20 concurrent exchanges of one secret exactly one redeems, and only its refresh token is stored', async () => {
        const ids = fresh();
        const { app, token } = await ssoLogin(ids);
        const now = T0 + MINUTE;
        const tokens = Array.from({ length: 20 }, () => firstToken(app));
        const results = await Promise.all(tokens.map((t) => store.redeemSession(token.secretHash, target(app, now, t), now)));
        expect(results.filter((r) => r.outcome === 'redeemed')).toHaveLength(1);
        expect(results.filter((r) => r.outcome === 'not_consumed')).toHaveLength(19);
        const stores = await Promise.all(tokens.map((t) => store.getRefreshToken(t.tokenHash)));
        expect(stores.filter((t) => t !== null)).toHaveLength(1);
        expect(stores[results.findIndex((r) => r.outcome === 'redeemed')]).not.toBeNull();
      });

      it('consumes the secret but leaves alone a target that ended, is another user\'s, lacks the expected data or does not exist', async () => {
        const ids = fresh();
        const check = async (login: { app: Session; token: Session }, targetHandle: string, unchanged: Session, now = T0 + MINUTE): Promise<void> => {
          const t = { ...firstToken(login.app), sessionHandle: targetHandle };
          const r = outcome(await store.redeemSession(login.token.secretHash, { ...target(login.app, now, t), handle: targetHandle }, now), 'target_unusable');
          expect(r.consumed).toStrictEqual({ ...login.token, status: 'revoked', revokeReason: 'consumed', endedAt: now });
          expect(await stored(login.token.handle)).toStrictEqual(r.consumed);
          expect(await stored(unchanged.handle)).toStrictEqual(unchanged);
          expect(await store.getRefreshToken(t.tokenHash)).toBeNull();
        };
        const ended = await ssoLogin(ids);
        const [revokedApp] = await store.revokeSession(ended.app.handle, 'logout', T0 + SECOND);
        await check(ended, ended.app.handle, revokedApp!);
        // Idle-expired: the app's 15 idle minutes are over at T0 + 16 min; a token made at T0 + 10 min is still valid.
        const idle = await ssoLogin(ids);
        const late = await make(ids, 'flow', { at: T0 + 10 * MINUTE, userId: ids.userId, data: { purpose: 'sso_token' } });
        await check({ app: idle.app, token: late }, idle.app.handle, idle.app, T0 + 16 * MINUTE);
        const mode = await ssoLogin(ids, { appData: { mode: 'token' } });
        await check(mode, mode.app.handle, mode.app);
        const other = await ssoLogin(ids);
        const stranger = await make({ tenantId: ids.tenantId, userId: `u-${randomUUID()}` }, 'app', { data: { mode: 'pending' } });
        await check(other, stranger.handle, stranger);
        const gone = await ssoLogin(ids);
        await check(gone, `${gone.app.handle.slice(0, 13)}${'A'.repeat(22)}`, gone.app);
      });

      it('changes nothing for a secret that is unknown, expired or already consumed', async () => {
        const ids = fresh();
        const { app, token } = await ssoLogin(ids);
        expect(await store.redeemSession(hashSecret(newSecret()), target(app, T0 + MINUTE), T0 + MINUTE)).toStrictEqual({ outcome: 'not_consumed' });
        const late = T0 + 11 * MINUTE; // the token's 10 minutes are over, the app's idle 15 are not
        const t = firstToken(app);
        expect(await store.redeemSession(token.secretHash, target(app, late, t), late)).toStrictEqual({ outcome: 'not_consumed' });
        expect(await stored(token.handle)).toStrictEqual(token);
        expect(await stored(app.handle)).toStrictEqual(app);
        expect(await store.getRefreshToken(t.tokenHash)).toBeNull();
        const used = await ssoLogin(ids);
        expect(await store.consumeSession(used.token.secretHash, T0 + MINUTE)).not.toBeNull();
        expect(await store.redeemSession(used.token.secretHash, target(used.app, T0 + MINUTE), T0 + MINUTE)).toStrictEqual({ outcome: 'not_consumed' });
        expect(await stored(used.app.handle)).toStrictEqual(used.app);
      });

      it('refuses a refresh token that is already stored, and changes nothing', async () => {
        const ids = fresh();
        const { app, token } = await ssoLogin(ids);
        const other = await make(ids, 'app');
        const t = firstToken(other);
        await store.addRefreshToken(t);
        const now = T0 + MINUTE;
        await expect(store.redeemSession(token.secretHash, target(app, now, { ...t, sessionHandle: app.handle }), now)).rejects.toMatchObject({
          code: 'refresh_token_exists',
          status: 409,
        });
        expect(await stored(token.handle)).toStrictEqual(token);
        expect(await stored(app.handle)).toStrictEqual(app);
        expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
      });

      // lookUpAndRedeem: the look-up and the redeem in one step when the caller's plan holds.
      /** An SSO login of a stored user, its token bound as a command-line login's (`codeChallenge`). */
      async function planLogin(o: { user?: Partial<User> | null; tokenData?: Record<string, unknown> } = {}) {
        const ids = fresh();
        const user = o.user === null ? null : await store.createUser(newUser(ids.tenantId, `${randomUUID()}@example.com`, { id: ids.userId, roles: ['admin'], ...o.user }));
        const login = await ssoLogin(ids);
        const token = await make(ids, 'flow', { userId: ids.userId, data: o.tokenData ?? { purpose: 'sso_token', appHandle: login.app.handle, codeChallenge: 'c', flowBinding: 'b' } });
        return { ids, user, app: login.app, token };
      }
      function plan(ids: Ids, now: number, o: { expectSeen?: Record<string, string | null>; tenantId?: string; kind?: SessionKind } = {}) {
        return {
          kind: o.kind ?? ('flow' as const),
          tenants: [{ tenantId: o.tenantId ?? ids.tenantId, idleExpiresAt: now + 15 * MINUTE }],
          expectSeen: o.expectSeen ?? { purpose: 'sso_token', codeChallenge: 'c' },
          targetField: 'appHandle',
          target: { expectData: { mode: 'pending' }, patch: { mode: 'token', orgSlug: null } },
          refreshToken: { tokenHash: hashSecret(newSecret()), createdAt: now },
        };
      }

      it('lookUpAndRedeem: when the plan holds, consumes and activates as redeemSession, with the user, in one step', async () => {
        const { ids, user, app, token } = await planLogin();
        const now = T0 + MINUTE;
        const p = plan(ids, now);
        const r = outcome(await store.lookUpAndRedeem(token.secretHash, p, now), 'redeemed');
        const activated = { ...app, data: { mode: 'token' }, lastSeenAt: now, idleExpiresAt: now + 15 * MINUTE };
        expect(r).toStrictEqual({ outcome: 'redeemed', session: activated, user });
        expect(await stored(app.handle)).toStrictEqual(activated);
        expect(await stored(token.handle)).toStrictEqual({ ...token, status: 'revoked', revokeReason: 'consumed', endedAt: now });
        const t = { tokenHash: p.refreshToken.tokenHash, sessionHandle: app.handle, tenantId: ids.tenantId, userId: ids.userId, createdAt: now, rotatedAt: null, successorHash: null };
        expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
        // Once: the plan still holds for the spent record, which is no longer valid.
        const p2 = plan(ids, now + SECOND);
        expect(await store.lookUpAndRedeem(token.secretHash, p2, now + SECOND)).toStrictEqual({ outcome: 'not_consumed' });
        expect(await stored(app.handle)).toStrictEqual(activated);
        expect(await store.getRefreshToken(p2.refreshToken.tokenHash)).toBeNull();
        // A browser login's binding: a challenge expected absent, the binding present.
        const b = await planLogin({ tokenData: undefined });
        const browser = await make(b.ids, 'flow', { userId: b.ids.userId, data: { purpose: 'sso_token', appHandle: b.app.handle, flowBinding: 'b' } });
        outcome(await store.lookUpAndRedeem(browser.secretHash, plan(b.ids, now, { expectSeen: { purpose: 'sso_token', codeChallenge: null, flowBinding: 'b' } }), now), 'redeemed');
        // Several tenants: the record's own, with the idle expiry given for it; null clears it.
        const c = await planLogin();
        const several = { ...plan(c.ids, now), tenants: [{ tenantId: `t-${randomUUID()}`, idleExpiresAt: now + MINUTE }, { tenantId: c.ids.tenantId, idleExpiresAt: now + 7 * MINUTE }, { tenantId: `t-${randomUUID()}`, idleExpiresAt: null }] };
        expect(outcome(await store.lookUpAndRedeem(c.token.secretHash, several, now), 'redeemed').session.idleExpiresAt).toBe(now + 7 * MINUTE);
        const d = await planLogin();
        const cleared = { ...plan(d.ids, now), tenants: [{ tenantId: d.ids.tenantId, idleExpiresAt: null }] };
        expect(outcome(await store.lookUpAndRedeem(d.token.secretHash, cleared, now), 'redeemed').session.idleExpiresAt).toBeNull();
        // The user's record whatever its text (Redis reads the usual one without decoding it and
        // decodes any other): escapes in it, an explicit disabled: false, "disabled" as text only.
        for (const u of [{ email: `a"b\\c-${randomUUID()}@example.com` }, { disabled: false }, { email: `x","disabled":true,"y-${randomUUID()}@example.com` }]) {
          const e = await planLogin({ user: u });
          expect(outcome(await store.lookUpAndRedeem(e.token.secretHash, plan(e.ids, now), now), 'redeemed').user).toStrictEqual(e.user);
        }
      });

      it('lookUpAndRedeem and redeemSession: a one-time token with descendants revokes them too (parent_revoked)', async () => {
        const now = T0 + MINUTE;
        for (const how of ['lookUpAndRedeem', 'redeemSession'] as const) {
          const { ids, app, token } = await planLogin();
          const child = await make(ids, 'flow', { userId: ids.userId, parent: token, data: { purpose: 'probe' } });
          const grand = await make(ids, 'flow', { userId: ids.userId, parent: child, data: { purpose: 'probe2' } });
          if (how === 'lookUpAndRedeem') outcome(await store.lookUpAndRedeem(token.secretHash, plan(ids, now), now), 'redeemed');
          else outcome(await store.redeemSession(token.secretHash, target(app, now, null), now), 'redeemed');
          expect(await stored(token.handle)).toMatchObject({ status: 'revoked', revokeReason: 'consumed' });
          expect(await stored(child.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked' });
          expect(await stored(grand.handle)).toMatchObject({ status: 'revoked', revokeReason: 'parent_revoked' });
        }
      });

      it('lookUpAndRedeem: when the plan does not hold, changes nothing and answers the look-up', async () => {
        const now = T0 + MINUTE;
        const check = async (login: { app: Session; token: Session }, p: ReturnType<typeof plan>): Promise<void> => {
          const r = outcome(await store.lookUpAndRedeem(login.token.secretHash, p, now), 'looked');
          expect(r.found).toStrictEqual(await store.getSessionWithUserBySecretHash(login.token.secretHash));
          expect(r.found?.session).toStrictEqual(login.token);
          expect(await stored(login.token.handle)).toStrictEqual(login.token);
          expect(await stored(login.app.handle)).toStrictEqual(login.app);
          expect(await store.getRefreshToken(p.refreshToken.tokenHash)).toBeNull();
        };
        const a = await planLogin();
        await check(a, plan(a.ids, now, { tenantId: `t-${randomUUID()}` }));
        await check(a, plan(a.ids, now, { kind: 'app' }));
        await check(a, plan(a.ids, now, { expectSeen: { purpose: 'sso_token', codeChallenge: 'd' } }));
        await check(a, plan(a.ids, now, { expectSeen: { purpose: 'other', codeChallenge: 'c' } }));
        await check(a, plan(a.ids, now, { expectSeen: { purpose: 'sso_token', codeChallenge: null, flowBinding: 'b' } }));
        await check(a, plan(a.ids, now, { expectSeen: { purpose: 'sso_token', codeChallenge: 'c', missing: 'x' } }));
        const disabled = await planLogin({ user: { disabled: true } });
        await check(disabled, plan(disabled.ids, now));
        const noUser = await planLogin({ user: null });
        await check(noUser, plan(noUser.ids, now));
        expect(outcome(await store.lookUpAndRedeem(noUser.token.secretHash, plan(noUser.ids, now), now), 'looked').found?.user).toBeNull();
        const noTarget = await planLogin({ tokenData: { purpose: 'sso_token', codeChallenge: 'c' } });
        await check(noTarget, plan(noTarget.ids, now));
        const notString = await planLogin({ tokenData: { purpose: 'sso_token', codeChallenge: 'c', appHandle: 7 } });
        await check(notString, plan(notString.ids, now));
        // The same user id in another tenant is another user.
        const elsewhere = fresh();
        await store.createUser(newUser(elsewhere.tenantId, `${randomUUID()}@example.com`, { id: a.ids.userId }));
        await check(a, plan(a.ids, now, { tenantId: elsewhere.tenantId }));
        expect(await store.lookUpAndRedeem(hashSecret(newSecret()), plan(a.ids, now), now)).toStrictEqual({ outcome: 'looked', found: null });
        // The plan holding after all these: redeemed.
        outcome(await store.lookUpAndRedeem(a.token.secretHash, plan(a.ids, now), now), 'redeemed');
      });

      it('lookUpAndRedeem: a target that is not usable is left alone (the secret consumed); of 20 concurrent calls one redeems', async () => {
        const now = T0 + MINUTE;
        const a = await planLogin();
        await store.updateSessionData(a.app.handle, { mode: 'token' }, T0 + SECOND);
        const before = await stored(a.app.handle);
        const p = plan(a.ids, now);
        const r = outcome(await store.lookUpAndRedeem(a.token.secretHash, p, now), 'target_unusable');
        expect(r.consumed).toStrictEqual({ ...a.token, status: 'revoked', revokeReason: 'consumed', endedAt: now });
        expect(await stored(a.app.handle)).toStrictEqual(before);
        expect(await store.getRefreshToken(p.refreshToken.tokenHash)).toBeNull();
        const b = await planLogin();
        const plans = Array.from({ length: 20 }, () => plan(b.ids, now));
        const results = await Promise.all(plans.map((q) => store.lookUpAndRedeem(b.token.secretHash, q, now)));
        expect(results.filter((x) => x.outcome === 'redeemed')).toHaveLength(1);
        expect(results.filter((x) => x.outcome === 'not_consumed')).toHaveLength(19);
        const tokens = await Promise.all(plans.map((q) => store.getRefreshToken(q.refreshToken.tokenHash)));
        expect(tokens.filter((t) => t !== null)).toHaveLength(1);
        // An expired token: not consumed, nothing changed.
        const c = await planLogin();
        const late = T0 + 11 * MINUTE;
        expect(await store.lookUpAndRedeem(c.token.secretHash, plan(c.ids, late), late)).toStrictEqual({ outcome: 'not_consumed' });
        expect(await stored(c.token.handle)).toStrictEqual(c.token);
        expect(await stored(c.app.handle)).toStrictEqual(c.app);
      });
    });

    // ---- renew once after expiry ----------------------------------------------------------

    describe('renewAfterExpiry', () => {
      function successorOf(p: Session, now: number): Session {
        return issueSession(
          {
            tenantId: p.tenantId,
            userId: p.userId,
            kind: p.kind,
            lifetime: DEFAULT_LIFETIMES.app,
            authMethod: 'renewed',
            clientId: p.clientId,
            device: p.device,
          },
          now,
        ).session;
      }

      it('answers still_valid while the predecessor is valid, and creates nothing', async () => {
        const ids = fresh();
        const p = await make(ids, 'app');
        const succ = successorOf(p, T0 + 5 * MINUTE);
        const r = outcome(await store.renewAfterExpiry(p.handle, succ, T0 + 5 * MINUTE), 'still_valid');
        expect(r.session).toStrictEqual(p);
        expect(await store.getSessionByHandle(succ.handle)).toBeNull();
        expect((await stored(p.handle)).successorHandle).toBeNull();
      });

      it('after expiry, 50 concurrent callers with the same successor converge; exactly one creates it', async () => {
        const ids = fresh();
        const p = await make(ids, 'app');
        const now = T0 + 16 * MINUTE;
        const succ = successorOf(p, now);
        const results = await Promise.all(Array.from({ length: 50 }, () => store.renewAfterExpiry(p.handle, { ...succ }, now)));
        for (const r of results) expect(r.outcome).toBe('renewed');
        const renewed = results.map((r) => outcome(r, 'renewed'));
        expect(new Set(renewed.map((r) => r.session.handle))).toStrictEqual(new Set([succ.handle]));
        expect(renewed.filter((r) => r.created)).toHaveLength(1);
        for (const r of renewed) expect(r.session).toStrictEqual(succ);
        expect((await stored(p.handle)).successorHandle).toBe(succ.handle);
        expect(await store.getSessionBySecretHash(succ.secretHash)).toStrictEqual(succ);
        expect(isValid(await stored(succ.handle), now)).toBe(true);

        const later = outcome(await store.renewAfterExpiry(p.handle, successorOf(p, now + MINUTE), now + MINUTE), 'renewed');
        expect(later.created).toBe(false);
        expect(later.session.handle).toBe(succ.handle);
      });

      it('after expiry, 50 concurrent callers with different successors converge on one of them', async () => {
        const ids = fresh();
        const p = await make(ids, 'app');
        const now = T0 + 16 * MINUTE;
        const successors = Array.from({ length: 50 }, () => successorOf(p, now));
        const results = await Promise.all(successors.map((s) => store.renewAfterExpiry(p.handle, s, now)));
        const renewed = results.map((r) => outcome(r, 'renewed'));
        const winner = renewed[0]!.session.handle;
        for (const r of renewed) expect(r.session.handle).toBe(winner);
        expect(renewed.filter((r) => r.created)).toHaveLength(1);
        expect(handles(successors)).toContain(winner);
        for (const s of successors) {
          if (s.handle === winner) expect(await stored(s.handle)).toStrictEqual(s);
          else expect(await store.getSessionByHandle(s.handle)).toBeNull();
        }
        expect((await stored(p.handle)).successorHandle).toBe(winner);
      });

      it('renews a predecessor that the sweeper already marked expired', async () => {
        const ids = fresh();
        const p = await makeExpired(ids);
        await sweepAll();
        expect((await stored(p.handle)).status).toBe('expired');
        const succ = successorOf(p, T0);
        const r = outcome(await store.renewAfterExpiry(p.handle, succ, T0), 'renewed');
        expect(r).toStrictEqual({ outcome: 'renewed', session: succ, created: true, evicted: [] });
      });

      it('never renews a revoked predecessor', async () => {
        const ids = fresh();
        const p = await make(ids, 'app');
        const [revoked] = await store.revokeSession(p.handle, 'logout', T0 + MINUTE);
        const succ = successorOf(p, T0 + 16 * MINUTE);
        expect(await store.renewAfterExpiry(p.handle, succ, T0 + 16 * MINUTE)).toStrictEqual({ outcome: 'revoked', session: revoked });
        expect(await store.getSessionByHandle(succ.handle)).toBeNull();
      });

      it('item 10: a new successor counts against the limit like a login (reject_new refuses, evict_oldest evicts)', async () => {
        const ids = fresh();
        const p = await make(ids, 'app'); // idle-expired at T0 + 16 min
        const now = T0 + 16 * MINUTE;
        const other = await make(ids, 'app', { at: now - MINUTE });
        const refused = await store.renewAfterExpiry(p.handle, successorOf(p, now), now, { kind: 'app', max: 1, policy: 'reject_new' });
        expect(refused).toStrictEqual({ outcome: 'limit_reached', active: 1 });
        expect((await stored(p.handle)).successorHandle).toBeNull();
        const succ = successorOf(p, now);
        const r = outcome(await store.renewAfterExpiry(p.handle, succ, now, { kind: 'app', max: 1, policy: 'evict_oldest' }), 'renewed');
        expect(r.created).toBe(true);
        expect(handles(r.evicted)).toStrictEqual([other.handle]);
        expect(await stored(other.handle)).toMatchObject({ status: 'revoked', revokeReason: 'limit_evicted' });
        expect(isValid(await stored(succ.handle), now)).toBe(true);
      });

      it('answers missing for an unknown predecessor', async () => {
        const ids = fresh();
        const succ = issue(ids, 'app');
        expect(await store.renewAfterExpiry(`nope.${randomUUID()}`, succ, T0)).toStrictEqual({ outcome: 'missing' });
        expect(await store.getSessionByHandle(succ.handle)).toBeNull();
      });
    });

    // ---- refresh tokens -------------------------------------------------------------------

    describe('refresh tokens', () => {
      const GRACE = 10 * SECOND;

      it('stores the first token of a session', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const t = firstToken(s);
        await store.addRefreshToken(t);
        expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
        expect(await store.getRefreshToken(hashSecret(newSecret()))).toBeNull();
      });

      it('rotates, allows a grace window, then treats reuse as theft and revokes the session tree', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const redirect = await make(ids, 'redirect', { parent: s });
        const t0 = firstToken(s);
        await store.addRefreshToken(t0);
        const h1 = hashSecret(newSecret());
        const at1 = T0 + MINUTE;

        // First use: rotated; the session is touched.
        const r1 = outcome(await store.rotateRefreshToken(t0.tokenHash, h1, at1, GRACE, at1 + 15 * MINUTE), 'rotated');
        const successor: RefreshToken = { ...t0, tokenHash: h1, createdAt: at1, rotatedAt: null, successorHash: null };
        expect(r1.successor).toStrictEqual(successor);
        expect(r1.session).toStrictEqual({ ...s, lastSeenAt: at1, idleExpiresAt: at1 + 15 * MINUTE });
        expect(await stored(s.handle)).toStrictEqual(r1.session);
        expect(await store.getRefreshToken(t0.tokenHash)).toStrictEqual({ ...t0, rotatedAt: at1, successorHash: h1 });
        expect(await store.getRefreshToken(h1)).toStrictEqual(successor);

        // Same token again within the grace window: the stored successor, whatever was offered.
        const offered = hashSecret(newSecret());
        const g = outcome(await store.rotateRefreshToken(t0.tokenHash, offered, at1 + 5 * SECOND, GRACE, null), 'grace');
        expect(g.token).toStrictEqual({ ...t0, rotatedAt: at1, successorHash: h1 });
        expect(g.session.handle).toBe(s.handle);
        expect(await store.getRefreshToken(offered)).toBeNull();
        expect(await store.getRefreshToken(h1)).toStrictEqual(successor);

        // The successor rotates on in its turn.
        const h2 = hashSecret(newSecret());
        const at2 = at1 + MINUTE;
        outcome(await store.rotateRefreshToken(h1, h2, at2, GRACE, at2 + 15 * MINUTE), 'rotated');

        // The first token after the grace window: reuse. Session and subtree are revoked.
        const at3 = at2 + MINUTE;
        const reused = outcome(await store.rotateRefreshToken(t0.tokenHash, hashSecret(newSecret()), at3, GRACE, null), 'reused');
        expect(reused.session).toMatchObject({ handle: s.handle, status: 'revoked', revokeReason: 'refresh_reuse', endedAt: at3 });
        expect(reused.revoked[0]!.handle).toBe(s.handle);
        expect(new Set(handles(reused.revoked))).toStrictEqual(new Set([s.handle, redirect.handle]));
        expect(await stored(s.handle)).toMatchObject({ status: 'revoked', revokeReason: 'refresh_reuse' });
        expect((await stored(redirect.handle)).status).toBe('revoked');

        // The whole family is dead now.
        const after = await store.rotateRefreshToken(h2, hashSecret(newSecret()), at3 + 1, GRACE, null);
        expect(outcome(after, 'inactive').session.status).toBe('revoked');
        expect((await store.rotateRefreshToken(t0.tokenHash, hashSecret(newSecret()), at3 + 2, GRACE, null)).outcome).toBe('inactive');
      });

      it('counts the grace window inclusively and caps the new idle expiry at the absolute expiry', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const t0 = firstToken(s);
        await store.addRefreshToken(t0);
        const h1 = hashSecret(newSecret());
        const at1 = T0 + MINUTE;
        const r = outcome(await store.rotateRefreshToken(t0.tokenHash, h1, at1, GRACE, s.absoluteExpiresAt + 3_600_000), 'rotated');
        expect(r.session.idleExpiresAt).toBe(s.absoluteExpiresAt);
        expect((await store.rotateRefreshToken(t0.tokenHash, h1, at1 + GRACE, GRACE, null)).outcome).toBe('grace');
        expect((await store.rotateRefreshToken(t0.tokenHash, h1, at1 + GRACE + 1, GRACE, null)).outcome).toBe('reused');
      });

      it('treats a rotated token as reuse within the grace window once its successor has rotated in its turn', async () => {
        // E.g. a token rotated at one site, its successor rotated at a second site after a
        // switch-over, then the old token shown there a few seconds later (second-site.test.ts).
        const ids = fresh();
        const s = await make(ids, 'app');
        const t0 = firstToken(s);
        await store.addRefreshToken(t0);
        const h1 = hashSecret(newSecret());
        const h2 = hashSecret(newSecret());
        const at1 = T0 + MINUTE;
        outcome(await store.rotateRefreshToken(t0.tokenHash, h1, at1, GRACE, at1 + 15 * MINUTE), 'rotated');
        outcome(await store.rotateRefreshToken(h1, h2, at1 + SECOND, GRACE, at1 + 15 * MINUTE), 'rotated');
        // The successor itself within its own grace window still converges (tabs racing on h1).
        expect((await store.rotateRefreshToken(h1, h2, at1 + 2 * SECOND, GRACE, null)).outcome).toBe('grace');
        const reused = outcome(await store.rotateRefreshToken(t0.tokenHash, h1, at1 + 3 * SECOND, GRACE, null), 'reused');
        expect(reused.session).toMatchObject({ handle: s.handle, status: 'revoked', revokeReason: 'refresh_reuse' });
        expect((await store.rotateRefreshToken(h2, hashSecret(newSecret()), at1 + 4 * SECOND, GRACE, null)).outcome).toBe('inactive');
      });

      it('of 20 concurrent rotations of one token exactly one rotates, the rest get grace', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const t0 = firstToken(s);
        await store.addRefreshToken(t0);
        const h1 = hashSecret(newSecret());
        const now = T0 + MINUTE;
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.rotateRefreshToken(t0.tokenHash, h1, now, GRACE, now + 15 * MINUTE)),
        );
        expect(results.filter((r) => r.outcome === 'rotated')).toHaveLength(1);
        const graces = results.filter((r): r is Extract<RotateResult, { outcome: 'grace' }> => r.outcome === 'grace');
        expect(graces).toHaveLength(19);
        for (const r of graces) expect(r.token.successorHash).toBe(h1);
        expect(await store.getRefreshToken(h1)).toMatchObject({ tokenHash: h1, rotatedAt: null });
      });

      it('answers inactive for a token whose session is expired or revoked, and changes nothing', async () => {
        const ids = fresh();
        const s = await make(ids, 'app');
        const t = firstToken(s);
        await store.addRefreshToken(t);
        const r = await store.rotateRefreshToken(t.tokenHash, hashSecret(newSecret()), T0 + 16 * MINUTE, GRACE, null);
        expect(r).toStrictEqual({ outcome: 'inactive', session: s });
        expect(await store.getRefreshToken(t.tokenHash)).toStrictEqual(t);
        expect(await stored(s.handle)).toStrictEqual(s);

        const s2 = await make(ids, 'app');
        const t2 = firstToken(s2);
        await store.addRefreshToken(t2);
        const [revoked] = await store.revokeSession(s2.handle, 'logout', T0 + SECOND);
        const r2 = await store.rotateRefreshToken(t2.tokenHash, hashSecret(newSecret()), T0 + 2 * SECOND, GRACE, null);
        expect(r2).toStrictEqual({ outcome: 'inactive', session: revoked });
        expect(await store.getRefreshToken(t2.tokenHash)).toStrictEqual(t2);
      });

      it('answers unknown for a token it never saw', async () => {
        expect(await store.rotateRefreshToken(hashSecret(newSecret()), hashSecret(newSecret()), T0, GRACE, null)).toStrictEqual({
          outcome: 'unknown',
        });
      });
    });

    // ---- sweeping -------------------------------------------------------------------------

    describe('sweepExpired', () => {
      it('returns each expired session exactly once, even with 5 concurrent sweepers', async () => {
        const ids = fresh();
        const expired = await Promise.all(Array.from({ length: 12 }, () => makeExpired(ids)));
        const flowExpired = await makeExpired(ids, 'flow');
        const valid = await Promise.all(Array.from({ length: 3 }, () => make(ids, 'app', { at: T0 - MINUTE })));
        const revokedThenExpired = await makeExpired(ids);
        await store.revokeSession(revokedThenExpired.handle, 'logout', T0 - 2 * HOUR + SECOND);

        const swept = (await Promise.all(Array.from({ length: 5 }, () => sweepAll(4)))).flat();
        const mine = swept.filter((s) => s.tenantId === ids.tenantId);
        const counts = new Map<string, number>();
        for (const s of mine) counts.set(s.handle, (counts.get(s.handle) ?? 0) + 1);
        const expectedHandles = handles([...expired, flowExpired]);
        expect(new Set(counts.keys())).toStrictEqual(new Set(expectedHandles));
        for (const n of counts.values()) expect(n).toBe(1);
        for (const s of mine) expect(s.status).toBe('expired');
        for (const h of expectedHandles) expect((await stored(h)).status).toBe('expired');
        for (const s of valid) expect(await stored(s.handle)).toStrictEqual(s);
        expect((await stored(revokedThenExpired.handle)).status).toBe('revoked');
      });

      it('returns at most `max` per call', async () => {
        const ids = fresh();
        await Promise.all(Array.from({ length: 3 }, () => makeExpired(ids)));
        expect(await store.sweepExpired(T0, 1)).toHaveLength(1);
        expect((await store.sweepExpired(T0, 2)).length).toBeLessThanOrEqual(2);
        await sweepAll();
      });
    });

    // ---- users ----------------------------------------------------------------------------

    describe('users', () => {
      it('creates, reads by id and by email, and updates a user', async () => {
        const { tenantId } = fresh();
        const u = newUser(tenantId, `jürgen-${randomUUID()}@exämple.de`, { roles: ['admin', 'auditor'] });
        expect(await store.createUser(u)).toStrictEqual(u);
        expect(await store.getUser(tenantId, u.id)).toStrictEqual(u);
        expect(await store.findUserByEmail(tenantId, u.email)).toStrictEqual(u);
        const changed: User = { ...u, passwordHash: null, roles: [], updatedAt: T0 + MINUTE };
        expect(await store.updateUser(changed)).toStrictEqual(changed);
        expect(await store.getUser(tenantId, u.id)).toStrictEqual(changed);
        expect(await store.findUserByEmail(tenantId, u.email)).toStrictEqual(changed);
      });

      it('returns null for an unknown user, email, or the right id in another tenant', async () => {
        const { tenantId } = fresh();
        const u = newUser(tenantId, `${randomUUID()}@example.com`);
        await store.createUser(u);
        expect(await store.getUser(tenantId, `u-${randomUUID()}`)).toBeNull();
        expect(await store.getUser(`t-${randomUUID()}`, u.id)).toBeNull();
        expect(await store.findUserByEmail(tenantId, `${randomUUID()}@example.com`)).toBeNull();
        expect(await store.findUserByEmail(`t-${randomUUID()}`, u.email)).toBeNull();
      });

      it("refuses a second user with a tenant's email (Conflict user_exists); another tenant may use it", async () => {
        const { tenantId } = fresh();
        const email = `${randomUUID()}@example.com`;
        const first = await store.createUser(newUser(tenantId, email));
        const dup = newUser(tenantId, email);
        const err: unknown = await store.createUser(dup).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(Conflict);
        expect(err).toMatchObject({ code: 'user_exists', status: 409 });
        expect(await store.getUser(tenantId, dup.id)).toBeNull();
        expect(await store.findUserByEmail(tenantId, email)).toStrictEqual(first);
        const elsewhere = newUser(`t-${randomUUID()}`, email);
        expect(await store.createUser(elsewhere)).toStrictEqual(elsewhere);
      });

      it('of 20 concurrent sign-ups with one email exactly one succeeds', async () => {
        const { tenantId } = fresh();
        const email = `${randomUUID()}@example.com`;
        const users = Array.from({ length: 20 }, () => newUser(tenantId, email));
        const results = await Promise.allSettled(users.map((u) => store.createUser(u)));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [users[i]!] : []));
        expect(won).toHaveLength(1);
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'user_exists' });
        }
        expect(await store.findUserByEmail(tenantId, email)).toStrictEqual(won[0]);
      });

      it('keeps the disabled flag', async () => {
        const { tenantId } = fresh();
        const u = newUser(tenantId, `${randomUUID()}@example.com`);
        await store.createUser(u);
        const off: User = { ...u, disabled: true, updatedAt: T0 + MINUTE };
        expect(await store.updateUser(off)).toStrictEqual(off);
        expect(await store.getUser(tenantId, u.id)).toStrictEqual(off);
        const on: User = { ...u, updatedAt: T0 + 2 * MINUTE };
        await store.updateUser(on);
        expect(await store.getUser(tenantId, u.id)).toStrictEqual(on);
      });

      it('changes an email: the new one finds the user, the old one is free; another user\'s email is refused', async () => {
        const { tenantId } = fresh();
        const u = await store.createUser(newUser(tenantId, `old-${randomUUID()}@example.com`));
        const other = await store.createUser(newUser(tenantId, `other-${randomUUID()}@example.com`));
        const moved: User = { ...u, email: `new-${randomUUID()}@example.com`, updatedAt: T0 + MINUTE };
        expect(await store.updateUser(moved)).toStrictEqual(moved);
        expect(await store.findUserByEmail(tenantId, moved.email)).toStrictEqual(moved);
        expect(await store.findUserByEmail(tenantId, u.email)).toBeNull();
        expect(await store.createUser(newUser(tenantId, u.email))).toMatchObject({ email: u.email });
        await expect(store.updateUser({ ...moved, email: other.email })).rejects.toMatchObject({ code: 'user_exists', status: 409 });
        expect(await store.getUser(tenantId, u.id)).toStrictEqual(moved);
        expect(await store.findUserByEmail(tenantId, other.email)).toStrictEqual(other);
        const listed = await store.listUsers({ tenantId, limit: 10 });
        expect(listed.items.filter((x) => x.id === u.id)).toStrictEqual([moved]);
      });

      it('lists a tenant by email with a cursor and an email prefix, and nothing of other tenants', async () => {
        const { tenantId } = fresh();
        const emails = ['carl@x.example', 'anna@x.example', 'bob@y.example', 'anne@y.example', 'an@z.example'];
        for (const e of emails) await store.createUser(newUser(tenantId, e));
        await store.createUser(newUser(`t-${randomUUID()}`, 'aaa@x.example'));
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const page: Page<User> = await store.listUsers({ tenantId, limit: 2, cursor });
          expect(page.items.length).toBeLessThanOrEqual(2);
          seen.push(...page.items.map((x) => x.email));
          cursor = page.nextCursor;
        } while (cursor !== null);
        expect(seen).toEqual([...emails].sort());
        const an = await store.listUsers({ tenantId, emailPrefix: 'ann', limit: 10 });
        expect(an.items.map((x) => x.email)).toEqual(['anna@x.example', 'anne@y.example']);
        const first = await store.listUsers({ tenantId, emailPrefix: 'an', limit: 1 });
        expect(first.items.map((x) => x.email)).toEqual(['an@z.example']);
        const rest = await store.listUsers({ tenantId, emailPrefix: 'an', limit: 5, cursor: first.nextCursor });
        expect(rest.nextCursor).toBeNull();
        expect(rest.items.map((x) => x.email)).toEqual(['anna@x.example', 'anne@y.example']);
        expect((await store.listUsers({ tenantId, emailPrefix: 'zz', limit: 5 })).items).toEqual([]);
        await expect(store.listUsers({ tenantId, limit: 5, cursor: '!!' })).rejects.toMatchObject({ code: 'invalid_cursor' });
      });

      it('refuses a users limit out of range (invalid_limit, 1..USER_LIST_MAX) as the other listings do', async () => {
        const { tenantId } = fresh();
        await store.createUser(newUser(tenantId, `${randomUUID()}@example.com`));
        for (const limit of [0, -1, 1.5, USER_LIST_MAX + 1, Number.MAX_SAFE_INTEGER]) {
          await expect(store.listUsers({ tenantId, limit }), String(limit)).rejects.toMatchObject({ code: 'invalid_limit', status: 400 });
        }
        expect((await store.listUsers({ tenantId, limit: USER_LIST_MAX })).items).toHaveLength(1);
        expect((await store.listUsers({ tenantId, limit: 1 })).items).toHaveLength(1);
      });

      it('deletes a user: record and email claim gone, listing without it; a second delete answers false', async () => {
        const { tenantId } = fresh();
        const u = await store.createUser(newUser(tenantId, `${randomUUID()}@example.com`));
        const keep = await store.createUser(newUser(tenantId, `${randomUUID()}@example.com`));
        expect(await store.deleteUser(tenantId, u.id)).toBe(true);
        expect(await store.getUser(tenantId, u.id)).toBeNull();
        expect(await store.findUserByEmail(tenantId, u.email)).toBeNull();
        expect((await store.listUsers({ tenantId, limit: 10 })).items).toStrictEqual([keep]);
        expect(await store.deleteUser(tenantId, u.id)).toBe(false);
        expect(await store.deleteUser(`t-${randomUUID()}`, keep.id)).toBe(false);
        expect(await store.getUser(tenantId, keep.id)).toStrictEqual(keep);
        expect(await store.createUser(newUser(tenantId, u.email))).toMatchObject({ email: u.email });
      });
    });

    // ---- tenants and metadata -------------------------------------------------------------

    describe('tenants', () => {
      it('puts and gets the effective tenant; a second put replaces it', async () => {
        const { tenantId } = fresh();
        expect(await store.getTenant(tenantId)).toBeNull();
        const t1 = buildTenant(tenantId, { profile: 'integration' }, T0);
        expect(t1.sessionLimit.max).toBeNull();
        expect(await store.putTenant(t1)).toStrictEqual(t1);
        expect(await store.getTenant(tenantId)).toStrictEqual(t1);
        const t2 = buildTenant(
          tenantId,
          { profile: 'production', lifetimes: { appIdle: 600 }, sessionLimit: { max: 7, policy: 'reject_new' }, anomalyPolicy: 'revoke' },
          T0 + MINUTE,
          t1,
        );
        expect(await store.putTenant(t2)).toStrictEqual(t2);
        expect(await store.getTenant(tenantId)).toStrictEqual(t2);
      });

      it('lists tenants by id and deletes one', async () => {
        const a = `t-a-${randomUUID()}`;
        const b = `t-b-${randomUUID()}`;
        await store.putTenant(buildTenant(b, {}, T0));
        await store.putTenant(buildTenant(a, {}, T0));
        const ids = (await store.listTenants()).map((t) => t.id);
        expect(ids).toEqual(expect.arrayContaining([a, b]));
        expect([...ids].sort()).toEqual(ids);
        expect(await store.deleteTenant(a)).toBe(true);
        expect(await store.getTenant(a)).toBeNull();
        expect((await store.listTenants()).map((t) => t.id)).not.toContain(a);
        expect(await store.deleteTenant(a)).toBe(false);
        expect(await store.getTenant(b)).not.toBeNull();
      });
    });

    describe('meta', () => {
      it('gets null for an absent key, then what was put', async () => {
        const key = `conformance:${randomUUID()}`;
        expect(await store.getMeta(key)).toBeNull();
        await store.putMeta(key, { keys: [{ kid: 'k1', alg: 'EdDSA' }], empty: [], n: Number.MAX_SAFE_INTEGER });
        expect(await store.getMeta(key)).toStrictEqual({ keys: [{ kid: 'k1', alg: 'EdDSA' }], empty: [], n: Number.MAX_SAFE_INTEGER });
        await store.putMeta(key, 'replaced');
        expect(await store.getMeta(key)).toBe('replaced');
      });

      it('putMetaIfAbsent keeps the first value; concurrent callers all see the same one', async () => {
        const key = `conformance:${randomUUID()}`;
        const values = Array.from({ length: 20 }, (_, i) => ({ secret: `value-${i}`, list: [] }));
        const seen = await Promise.all(values.map((v) => store.putMetaIfAbsent(key, v)));
        const stored0 = await store.getMeta(key);
        expect(values).toContainEqual(stored0);
        for (const v of seen) expect(v).toStrictEqual(stored0);
        expect(await store.putMetaIfAbsent(key, 'late')).toStrictEqual(stored0);
      });
    });

    // ---- shared counters (Coordination) ---------------------------------------------------

    describe('counters', () => {
      const counters = () => store as unknown as Coordination;
      it('counts hits in a fixed window; 30 concurrent hits count 30; a new window starts at 1', async () => {
        const key = `conformance:${randomUUID()}`;
        const results = await Promise.all(Array.from({ length: 30 }, () => counters().hitCounter(key, 60_000, T0)));
        expect(results.map((r) => r.count).sort((a, b) => a - b)).toStrictEqual(Array.from({ length: 30 }, (_, i) => i + 1));
        expect(await counters().peekCounter(key, T0 + 1)).toStrictEqual({ count: 30, resetAt: T0 + 60_000 });
        expect(await counters().hitCounter(key, 60_000, T0 + 60_000)).toStrictEqual({ count: 1, resetAt: T0 + 120_000 });
      });

      it('takes a reservation back with a negative hit, never below zero', async () => {
        const key = `conformance:${randomUUID()}`;
        await counters().hitCounter(key, 60_000, T0);
        await counters().hitCounter(key, 60_000, T0);
        expect((await counters().hitCounter(key, 60_000, T0 + 1, -1)).count).toBe(1);
        expect((await counters().hitCounter(key, 60_000, T0 + 2, -5)).count).toBe(0);
        const fresh = `conformance:${randomUUID()}`;
        expect((await counters().hitCounter(fresh, 60_000, T0, -1)).count).toBe(0);
        await counters().resetCounter(key);
        expect(await counters().peekCounter(key, T0 + 3)).toBeNull();
      });
    });

    // ---- availability ---------------------------------------------------------------------

    describe('availability', () => {
      it('ping resolves while the store answers', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('after close, calls reject with StoreUnavailable', async () => {
        const second = await open();
        try {
          await second.store.close();
          await expect(second.store.ping()).rejects.toMatchObject({ code: 'store_unavailable', status: 503 });
          await expect(second.store.getSessionByHandle(`nope.${randomUUID()}`)).rejects.toMatchObject({ code: 'store_unavailable' });
        } finally {
          await second.close();
        }
      });
    });
  });
}
