// The conformance suite of the audit port (src/store/audit-port.ts), run on every target of the
// matrix (test/store/targets.ts) with two store instances on the same data (a file, a key prefix,
// a database), because the chain must hold when two processes append to one tenant at once.

import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/audit/verify.ts';
import type { AuditEventInput, AuditRecord } from '../../src/domain/audit-chain.ts';
import { TesseraError } from '../../src/domain/errors.ts';
import { emptyHistory, MAX_KNOWN, mergeLogin, type LoginObservation } from '../../src/store/audit-port.ts';
import type { SessionStore } from '../../src/store/port.ts';

export interface AuditPair {
  /** Two store instances (connections) on the same data. */
  a: SessionStore;
  b: SessionStore;
  close(): Promise<void>;
  /** Loses a tenant's records after `seq` and sets its head back to `seq`, below both (targets.ts StorePair). */
  rewindAudit?: (tenantId: string, seq: number) => Promise<void>;
}

const T0 = Date.UTC(2026, 2, 1, 12, 0, 0);

function event(tenantId: string, i: number, over: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    time: T0 + i * 1000,
    tenantId,
    type: 'session.created',
    userId: 'u1',
    sessionId: null,
    kind: 'app',
    headers: { requestId: randomUUID(), correlationId: 'c-1', activityId: null, tenantId, sessionId: null },
    ip: '203.0.113.7',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0',
    location: null,
    details: { n: i, nested: { ok: true, list: [1, 'two'] } },
    ...over,
  };
}

function tenant(): string {
  return `audit-${randomBytes(5).toString('hex')}`;
}

async function all(store: SessionStore, tenantId: string, order: 'asc' | 'desc' = 'asc', limit = 7): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let cursor: string | null = null;
  do {
    const page = await store.audit.list({ tenantId, order, cursor, limit });
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

export function describeAuditConformance(name: string, open: () => Promise<AuditPair>, opts?: { skip?: boolean }): void {
  describe.skipIf(opts?.skip === true)(name, () => {
    let pair: AuditPair | undefined;
    const a = () => (pair as AuditPair).a;
    const b = () => (pair as AuditPair).b;
    beforeAll(async () => {
      pair = await open();
    });
    afterAll(async () => {
      await pair?.close();
    });

    it('numbers and links each tenant’s records, and the chain verifies', async () => {
      const t = tenant();
      const first = await a().audit.append(event(t, 0));
      const second = await a().audit.append(event(t, 1, { type: 'session.revoked', details: { reason: 'logout' } }));
      expect(first).toMatchObject({ id: `${t}:1`, seq: 1, tenantId: t });
      expect(second.seq).toBe(2);
      expect(second.prevHash).toBe(first.hash);
      expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
      const stored = await all(a(), t);
      expect(stored).toEqual([first, second]);
      expect(await a().audit.chainState(t)).toEqual({ head: { seq: 2, hash: second.hash }, anchor: null });
      const report = await verifyChain(a().audit, t);
      expect(report).toMatchObject({ ok: true, records: 2, firstSeq: 1, lastSeq: 2, problems: [] });
      expect(await a().audit.tenants()).toContain(t);
      // Another tenant's chain is its own.
      const other = await a().audit.append(event(tenant(), 0));
      expect(other.seq).toBe(1);
    });

    it('keeps one chain without gaps or forks when two connections append to a tenant at once', async () => {
      const t = tenant();
      const appends = Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? a() : b()).audit.append(event(t, i)));
      const records = await Promise.all(appends);
      expect(records.map((r) => r.seq).sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      const stored = await all(b(), t, 'asc', 25);
      expect(stored.map((r) => r.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      for (let i = 1; i < stored.length; i++) expect((stored[i] as AuditRecord).prevHash).toBe((stored[i - 1] as AuditRecord).hash);
      expect((await verifyChain(a().audit, t)).ok).toBe(true);
    });

    it('links to the head that is there after a failover or restore lost the newest records, though an appender had cached a lost one', async (ctx) => {
      const rewind = (pair as AuditPair).rewindAudit;
      if (rewind === undefined) return ctx.skip();
      const t = tenant();
      // a appends 1..3 (and, where a store keeps one, caches head 3); 3 is lost.
      for (let i = 0; i < 3; i++) await a().audit.append(event(t, i));
      await rewind(t, 2);
      // b, with nothing cached, appends the new 3; then a, whose cached head was the lost 3.
      const fromB = await b().audit.append(event(t, 10));
      const fromA = await a().audit.append(event(t, 11));
      expect(fromB.seq).toBe(3);
      expect(fromA.seq).toBe(4);
      expect(fromA.prevHash).toBe(fromB.hash);
      expect(await verifyChain(a().audit, t)).toMatchObject({ ok: true, records: 4, firstSeq: 1, lastSeq: 4, problems: [] });
      // The same for an appendMany and a head of the same seq and another hash, twice over.
      await rewind(t, 3);
      const again = await b().audit.append(event(t, 12));
      // A store behind a proxy (the SQLite worker threads) offers every method name: an empty call
      // tells whether the store behind has appendMany.
      const appendMany = a().audit.appendMany?.bind(a().audit);
      const hasMany = appendMany !== undefined && (await appendMany([]).then(() => true, () => false));
      const many = hasMany && appendMany !== undefined ? await appendMany([{ input: event(t, 13) }, { input: event(t, 14) }]) : [await a().audit.append(event(t, 13)), await a().audit.append(event(t, 14))];
      expect(again.seq).toBe(4);
      expect(many.map((r) => r.seq)).toEqual([5, 6]);
      expect(many[0]?.prevHash).toBe(again.hash);
      expect(await verifyChain(a().audit, t)).toMatchObject({ ok: true, records: 6, lastSeq: 6, problems: [] });
    });

    it('lists newest first or oldest first, with filters on user, type (exact or prefix) and time, through cursors', async () => {
      const t = tenant();
      const types = ['session.created', 'login.failed', 'session.revoked', 'session.limit_evicted', 'anomaly.detected'];
      for (let i = 0; i < 20; i++) {
        await a().audit.append(event(t, i, { type: types[i % 5] as string, userId: i % 2 === 0 ? 'even' : 'odd' }));
      }
      const desc = await all(a(), t, 'desc', 3);
      expect(desc.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => 20 - i));
      const page = await a().audit.list({ tenantId: t, order: 'desc', limit: 20 });
      expect(page.nextCursor).toBeNull();

      const even = await a().audit.list({ tenantId: t, order: 'asc', userId: 'even', limit: 100 });
      expect(even.items.map((r) => r.seq)).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
      const sessions = await a().audit.list({ tenantId: t, order: 'asc', types: ['session.*'], limit: 100 });
      expect(sessions.items.every((r) => r.type.startsWith('session.'))).toBe(true);
      expect(sessions.items).toHaveLength(12);
      const exact = await a().audit.list({ tenantId: t, order: 'asc', types: ['login.failed', 'anomaly.detected'], limit: 100 });
      expect(exact.items.map((r) => r.seq)).toEqual([2, 5, 7, 10, 12, 15, 17, 20]);
      const window = await a().audit.list({ tenantId: t, order: 'asc', from: T0 + 5000, to: T0 + 9000, limit: 100 });
      expect(window.items.map((r) => r.seq)).toEqual([6, 7, 8, 9, 10]);
      const combined = await a().audit.list({ tenantId: t, order: 'desc', userId: 'odd', types: ['session.*'], from: T0 + 3000, limit: 2 });
      expect(combined.items.map((r) => r.seq)).toEqual([18, 16]);
      expect(combined.nextCursor).not.toBeNull();
      const rest = await a().audit.list({ tenantId: t, order: 'desc', userId: 'odd', types: ['session.*'], from: T0 + 3000, limit: 10, cursor: combined.nextCursor });
      expect(rest.items.map((r) => r.seq)).toEqual([14, 8, 6, 4]);
      expect(rest.nextCursor).toBeNull();
    });

    it('lists anomaly findings newest first, by user and reason', async () => {
      const t = tenant();
      const finding = (i: number, userId: string, reason: string) =>
        event(t, i, { type: 'anomaly.detected', userId, details: { reason, evidence: { i }, action: 'record' } });
      await a().audit.append(finding(0, 'u1', 'new_device'));
      await a().audit.append(event(t, 1));
      await a().audit.append(finding(2, 'u2', 'unusual_hour'));
      await b().audit.append(finding(3, 'u1', 'unusual_hour'));
      const everything = await a().audit.listAnomalies({ tenantId: t, limit: 10 });
      expect(everything.items.map((r) => r.seq)).toEqual([4, 3, 1]);
      expect((await a().audit.listAnomalies({ tenantId: t, userId: 'u1', limit: 10 })).items.map((r) => r.seq)).toEqual([4, 1]);
      expect((await a().audit.listAnomalies({ tenantId: t, reason: 'unusual_hour', limit: 10 })).items.map((r) => r.seq)).toEqual([4, 3]);
      const p1 = await a().audit.listAnomalies({ tenantId: t, limit: 2 });
      const p2 = await a().audit.listAnomalies({ tenantId: t, limit: 2, cursor: p1.nextCursor });
      expect([...p1.items, ...p2.items].map((r) => r.seq)).toEqual([4, 3, 1]);
      expect(p2.nextCursor).toBeNull();
    });

    it('refuses a cursor it did not issue and a limit out of range', async () => {
      const t = tenant();
      await expect(a().audit.list({ tenantId: t, order: 'asc', limit: 10, cursor: 'not a cursor' })).rejects.toMatchObject({ code: 'invalid_cursor' });
      await expect(a().audit.list({ tenantId: t, order: 'asc', limit: 0 })).rejects.toBeInstanceOf(TesseraError);
      await expect(a().audit.listAnomalies({ tenantId: t, limit: 5000 })).rejects.toMatchObject({ code: 'invalid_limit' });
    });

    it('moves the active-session gauge with the appended events, never below zero', async () => {
      const t = tenant();
      await a().audit.append(event(t, 0), { activeDelta: { kind: 'app', delta: 1 } });
      await b().audit.append(event(t, 1), { activeDelta: { kind: 'app', delta: 1 } });
      await a().audit.append(event(t, 2), { activeDelta: { kind: 'idp', delta: 1 } });
      await a().audit.append(event(t, 3, { type: 'session.revoked' }), { activeDelta: { kind: 'app', delta: -1 } });
      await a().audit.append(event(t, 4, { type: 'session.expired' }), { activeDelta: { kind: 'idp', delta: -1 } });
      await a().audit.append(event(t, 5, { type: 'session.expired' }), { activeDelta: { kind: 'idp', delta: -1 } });
      const mine = (await b().audit.activeSessions()).filter((c) => c.tenantId === t);
      expect(mine).toEqual([
        { tenantId: t, kind: 'app', count: 1 },
        { tenantId: t, kind: 'idp', count: 0 },
      ]);
    });

    it('appendMany (where the store has it) leaves what one append per record would: chain, head, gauge in order, anomalies', async () => {
      const many = a().audit.appendMany?.bind(a().audit);
      if (many === undefined) return;
      // A store behind a proxy (the SQLite worker threads) offers every method name: an empty
      // call tells whether the store behind has this one.
      const has = await many([]).then(
        () => true,
        () => false,
      );
      if (!has) return;
      const t = tenant();
      const finding = (i: number, userId: string, reason: string) =>
        event(t, i, { type: 'anomaly.detected', userId, details: { reason, evidence: { i }, action: 'record' } });
      await a().audit.append(event(t, 0), { activeDelta: { kind: 'app', delta: 1 } });
      const made = await many([
        { input: event(t, 1) },
        { input: event(t, 2, { type: 'session.revoked' }), opts: { activeDelta: { kind: 'app', delta: -1 } } },
        // Below zero: held at 0, so the +1 after it makes 1 (the order of the gauge's moves counts).
        { input: event(t, 3, { type: 'session.revoked' }), opts: { activeDelta: { kind: 'app', delta: -1 } } },
        { input: finding(4, 'u2', 'new_device') },
        { input: event(t, 5), opts: { activeDelta: { kind: 'app', delta: 1 } } },
        { input: finding(6, 'u1', 'unusual_hour'), opts: { activeDelta: { kind: 'idp', delta: 1 } } },
        { input: event(t, 7) },
      ]);
      expect(made.map((r) => r.seq)).toEqual([2, 3, 4, 5, 6, 7, 8]);
      const last = await b().audit.append(event(t, 8));
      expect(last).toMatchObject({ seq: 9, prevHash: (made[6] as AuditRecord).hash });
      const stored = await all(b(), t);
      expect(stored.slice(1, 8)).toEqual(made);
      expect(await a().audit.chainState(t)).toEqual({ head: { seq: 9, hash: last.hash }, anchor: null });
      expect((await verifyChain(a().audit, t)).ok).toBe(true);
      expect((await b().audit.listAnomalies({ tenantId: t, limit: 10 })).items.map((r) => r.seq)).toEqual([7, 5]);
      expect((await b().audit.activeSessions()).filter((c) => c.tenantId === t)).toEqual([
        { tenantId: t, kind: 'app', count: 1 },
        { tenantId: t, kind: 'idp', count: 1 },
      ]);
    });

    it('prunes the oldest records for retention and the rest still verifies from the anchor', async () => {
      const t = tenant();
      const records: AuditRecord[] = [];
      for (let i = 0; i < 10; i++) records.push(await a().audit.append(event(t, i)));
      expect(await a().audit.prune(T0 + 4500, 1000)).toBeGreaterThanOrEqual(5);
      const left = await all(a(), t);
      expect(left.map((r) => r.seq)).toEqual([6, 7, 8, 9, 10]);
      const state = await a().audit.chainState(t);
      expect(state.anchor).toEqual({ seq: 5, hash: (records[4] as AuditRecord).hash });
      const report = await verifyChain(b().audit, t);
      expect(report).toMatchObject({ ok: true, records: 5, firstSeq: 6, anchor: { seq: 5 } });
      // Appending continues the chain; pruning never takes the head.
      await a().audit.append(event(t, 10));
      await a().audit.prune(T0 + 3_600_000, 1000);
      const after = await all(a(), t);
      expect(after.map((r) => r.seq)).toEqual([11]);
      expect((await verifyChain(a().audit, t)).ok).toBe(true);
    });

    it('prunes by count too: only the newest records stay, whatever their age, and the rest verifies', async () => {
      const t = tenant();
      const records: AuditRecord[] = [];
      for (let i = 0; i < 10; i++) records.push(await a().audit.append(event(t, i)));
      // No record is older than time 0: only the count bound removes anything.
      expect(await a().audit.prune(0, 1000, 4)).toBeGreaterThanOrEqual(6);
      expect((await all(a(), t)).map((r) => r.seq)).toEqual([7, 8, 9, 10]);
      expect((await a().audit.chainState(t)).anchor).toEqual({ seq: 6, hash: (records[5] as AuditRecord).hash });
      expect(await verifyChain(b().audit, t)).toMatchObject({ ok: true, records: 4, firstSeq: 7 });
      // Both bounds: the older-than bound takes more when it reaches further.
      expect(await a().audit.prune(T0 + 7500, 1000, 4)).toBeGreaterThanOrEqual(2);
      expect((await all(a(), t)).map((r) => r.seq)).toEqual([9, 10]);
      // The head always stays.
      await a().audit.prune(0, 1000, 1);
      expect((await all(a(), t)).map((r) => r.seq)).toEqual([10]);
      expect((await verifyChain(a().audit, t)).ok).toBe(true);
    });

    it('learns a user’s logins: hours, devices, locations, the last located one, atomically and bounded', async () => {
      const t = tenant();
      const user = randomUUID();
      expect(await a().audit.userHistory(t, user)).toEqual(emptyHistory());
      const obs = (i: number, over: Partial<LoginObservation> = {}): LoginObservation => ({
        time: T0 + i * 60_000,
        hour: 9,
        deviceKey: 'firefox/linux',
        locationKey: 'DE/Berlin',
        located: { time: T0 + i * 60_000, lat: 52.52, lon: 13.405, city: 'Berlin', country: 'DE' },
        ...over,
      });
      await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a() : b()).audit.recordLogin(t, user, obs(i, { hour: i % 3 === 0 ? 14 : 9 }))));
      await a().audit.recordLogin(t, user, obs(20, { deviceKey: 'safari/ios', locationKey: null, located: null }));
      const h = await b().audit.userHistory(t, user);
      expect(h.logins).toBe(11);
      expect(h.hours[9]).toBe(7);
      expect(h.hours[14]).toBe(4);
      expect(h.devices).toEqual({ 'firefox/linux': T0 + 9 * 60_000, 'safari/ios': T0 + 20 * 60_000 });
      expect(h.locations).toEqual({ 'DE/Berlin': T0 + 9 * 60_000 });
      expect(h.lastLocated).toMatchObject({ city: 'Berlin', lat: 52.52 });

      // At most MAX_KNOWN devices: the least recently seen is forgotten first, as mergeLogin does.
      const u2 = randomUUID();
      let expected = emptyHistory();
      for (let i = 0; i < MAX_KNOWN + 3; i++) {
        const o = obs(i, { deviceKey: `device-${i}`, locationKey: null, located: null });
        await a().audit.recordLogin(t, u2, o);
        expected = mergeLogin(expected, o);
      }
      const h2 = await a().audit.userHistory(t, u2);
      expect(Object.keys(h2.devices)).toHaveLength(MAX_KNOWN);
      expect(h2.devices['device-0']).toBeUndefined();
      expect(h2).toEqual(expected);
    });

    it('delivers appended records to subscribers of both connections, in order', async () => {
      const t = tenant();
      const seenA: AuditRecord[] = [];
      const seenB: AuditRecord[] = [];
      const subA = await a().audit.subscribe((r) => r.tenantId === t && seenA.push(r), () => {});
      const subB = await b().audit.subscribe((r) => r.tenantId === t && seenB.push(r), () => {});
      try {
        const written: AuditRecord[] = [];
        for (let i = 0; i < 5; i++) written.push(await a().audit.append(event(t, i)));
        await expect.poll(() => seenB.length, { timeout: 5000 }).toBe(5);
        await expect.poll(() => seenA.length, { timeout: 5000 }).toBe(5);
        expect(seenA).toEqual(written);
        expect(seenB).toEqual(written);
      } finally {
        await subA.close();
        await subB.close();
      }
    });
  });
}
