// Conformance of the consent port (src/store/consent-port.ts), run on every target of the matrix
// (test/store/targets.ts) next to the session suite. The races of docs/api.md §Consent redirects
// ("Consent rules") are proven here with many concurrent callers: one settlement per consent, and
// at most one valid AIS consent per user and bank however many confirmations race.
//
// Same sharing rules as conformance.ts: fresh tenant and user ids in every test, times anchored
// to the real clock at the start of the run.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newConsent, type Consent, type ConsentType } from '../../src/domain/consent.ts';
import { Conflict } from '../../src/domain/errors.ts';
import type { SettleResult } from '../../src/store/consent-port.ts';
import type { SessionStore } from '../../src/store/port.ts';
import type { OpenedStore } from './conformance.ts';

const MINUTE = 60_000;

export function describeConsentConformance(name: string, open: () => Promise<OpenedStore>, opts?: { skip?: boolean }): void {
  describe.skipIf(opts?.skip === true)(`${name}: consents`, () => {
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

    interface Ids {
      tenantId: string;
      userId: string;
    }
    const fresh = (): Ids => ({ tenantId: `t-${randomUUID()}`, userId: `u-${randomUUID()}` });

    const PAYMENT = { amount: '12.50', currency: 'EUR', creditorIban: 'DE89370400440532013000', creditorName: 'Coffee Roasters GmbH' };

    function consent(ids: Ids, over: { type?: ConsentType; bankId?: string; at?: number; expiresAt?: number } = {}): Consent {
      const type = over.type ?? 'ais';
      const at = over.at ?? T0;
      return newConsent(
        {
          ...ids,
          type,
          bankId: over.bankId ?? 'bank-a',
          expiresAt: over.expiresAt ?? at + 20 * MINUTE,
          redirectHandle: `h-${randomUUID()}`,
          startedBy: `s-${randomUUID()}`,
          payment: type === 'pis' ? PAYMENT : null,
        },
        at,
      );
    }

    async function created(c: Consent): Promise<Consent> {
      return store.consents.createConsent(c);
    }

    function settled(r: SettleResult): Extract<SettleResult, { outcome: 'settled' }> {
      expect(r.outcome).toBe('settled');
      return r as Extract<SettleResult, { outcome: 'settled' }>;
    }

    describe('create, get, list', () => {
      it('stores AIS and PIS consents and reads them back exactly', async () => {
        const ids = fresh();
        const ais = consent(ids);
        const pis = consent(ids, { type: 'pis' });
        expect(await created(ais)).toStrictEqual(ais);
        expect(await created(pis)).toStrictEqual(pis);
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, ais.id)).toStrictEqual(ais);
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, pis.id)).toStrictEqual(pis);
        expect(pis.payment).toStrictEqual(PAYMENT);
      });

      it('refuses a second consent with the same id and keeps the first', async () => {
        const ids = fresh();
        const c = await created(consent(ids));
        const err = await store.consents.createConsent({ ...c, bankId: 'bank-b' }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Conflict);
        expect((err as Conflict).code).toBe('consent_exists');
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, c.id)).toStrictEqual(c);
      });

      it("never shows a consent to another user, and answers null for an unknown id", async () => {
        const a = fresh();
        const c = await created(consent(a));
        expect(await store.consents.getConsent(a.tenantId, `u-${randomUUID()}`, c.id)).toBeNull();
        expect(await store.consents.getConsent(`t-${randomUUID()}`, a.userId, c.id)).toBeNull();
        expect(await store.consents.getConsent(a.tenantId, a.userId, 'AAAAAAAAAAAAAAAAAAAAAA')).toBeNull();
      });

      it('lists newest first in pages that cover every consent once, ties on createdAt included', async () => {
        const ids = fresh();
        const other = fresh();
        await created(consent(other));
        const all: Consent[] = [];
        for (const at of [T0, T0 + 1, T0 + 1, T0 + 1, T0 + 2, T0 + 3, T0 + 3]) all.push(await created(consent(ids, { at })));
        const expected = [...all].sort((x, y) => y.createdAt - x.createdAt || (x.id < y.id ? 1 : x.id > y.id ? -1 : 0));
        const seen: Consent[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page = await store.consents.listConsents({ ...ids, limit: 2, cursor });
          seen.push(...page.items);
          cursor = page.nextCursor;
          pages++;
        } while (cursor !== null && pages < 10);
        expect(seen.map((c) => c.id)).toStrictEqual(expected.map((c) => c.id));
        expect(pages).toBe(4);
        const one = await store.consents.listConsents({ ...ids, limit: 500 });
        expect(one.items).toStrictEqual(expected);
        expect(one.nextCursor).toBeNull();
      });

      it('refuses a cursor it did not issue and a limit out of range', async () => {
        const ids = fresh();
        await expect(store.consents.listConsents({ ...ids, limit: 10, cursor: 'bm9wZQ' })).rejects.toMatchObject({ code: 'invalid_cursor' });
        expect(await store.consents.listConsents({ ...ids, limit: 10, cursor: '' })).toStrictEqual(await store.consents.listConsents({ ...ids, limit: 10 }));
        await expect(store.consents.listConsents({ ...ids, limit: 0 })).rejects.toMatchObject({ code: 'invalid_limit' });
        await expect(store.consents.listConsents({ ...ids, limit: 501 })).rejects.toMatchObject({ code: 'invalid_limit' });
      });

      it('lets several AIS consents for one bank be pending at once', async () => {
        const ids = fresh();
        for (let i = 0; i < 3; i++) await created(consent(ids));
        const { items } = await store.consents.listConsents({ ...ids, limit: 10 });
        expect(items.map((c) => c.status)).toStrictEqual(['pending', 'pending', 'pending']);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toBeNull();
      });
    });

    describe('settleConsent', () => {
      it('confirms a pending AIS consent, which becomes the valid one for its bank', async () => {
        const ids = fresh();
        const c = await created(consent(ids));
        const now = T0 + MINUTE;
        const r = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, c.id, 'confirmed', now));
        expect(r.consent).toStrictEqual({ ...c, status: 'confirmed', confirmedAt: now });
        expect(r.superseded).toStrictEqual([]);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toStrictEqual(r.consent);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-b')).toBeNull();
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, c.id)).toStrictEqual(r.consent);
      });

      it('confirming a second AIS consent for the same bank supersedes the first; another bank is untouched', async () => {
        const ids = fresh();
        const first = await created(consent(ids));
        const second = await created(consent(ids));
        const elsewhere = await created(consent(ids, { bankId: 'bank-b' }));
        settled(await store.consents.settleConsent(ids.tenantId, ids.userId, first.id, 'confirmed', T0 + MINUTE));
        const b = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, elsewhere.id, 'confirmed', T0 + MINUTE));
        const r = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, second.id, 'confirmed', T0 + 2 * MINUTE));
        expect(r.superseded).toStrictEqual([
          { ...first, status: 'superseded', confirmedAt: T0 + MINUTE, endedAt: T0 + 2 * MINUTE, supersededBy: second.id },
        ]);
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, first.id)).toStrictEqual(r.superseded[0]);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toStrictEqual(r.consent);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-b')).toStrictEqual(b.consent);
      });

      it('rejecting leaves the valid consent as it was', async () => {
        const ids = fresh();
        const valid = await created(consent(ids));
        const other = await created(consent(ids));
        const v = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, valid.id, 'confirmed', T0 + MINUTE));
        const r = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, other.id, 'rejected', T0 + 2 * MINUTE));
        expect(r.consent).toStrictEqual({ ...other, status: 'rejected', endedAt: T0 + 2 * MINUTE });
        expect(r.superseded).toStrictEqual([]);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toStrictEqual(v.consent);
      });

      it('PIS consents are individual: confirming one touches no other consent', async () => {
        const ids = fresh();
        const ais = await created(consent(ids));
        const p1 = await created(consent(ids, { type: 'pis' }));
        const p2 = await created(consent(ids, { type: 'pis' }));
        const a = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, ais.id, 'confirmed', T0 + MINUTE));
        const r1 = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, p1.id, 'confirmed', T0 + MINUTE));
        const r2 = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, p2.id, 'confirmed', T0 + MINUTE));
        expect(r1.superseded).toStrictEqual([]);
        expect(r2.superseded).toStrictEqual([]);
        expect((await store.consents.getConsent(ids.tenantId, ids.userId, p1.id))?.status).toBe('confirmed');
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toStrictEqual(a.consent);
      });

      it('answers not_pending for a settled consent, expired past its deadline, missing for an unknown one', async () => {
        const ids = fresh();
        const c = await created(consent(ids));
        const r = settled(await store.consents.settleConsent(ids.tenantId, ids.userId, c.id, 'rejected', T0 + MINUTE));
        expect(await store.consents.settleConsent(ids.tenantId, ids.userId, c.id, 'confirmed', T0 + MINUTE)).toStrictEqual({
          outcome: 'not_pending',
          consent: r.consent,
        });
        const late = await created(consent(ids, { expiresAt: T0 + 5 * MINUTE }));
        expect(await store.consents.settleConsent(ids.tenantId, ids.userId, late.id, 'confirmed', T0 + 5 * MINUTE)).toStrictEqual({
          outcome: 'expired',
          consent: late,
        });
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, late.id)).toStrictEqual(late);
        expect(await store.consents.settleConsent(ids.tenantId, ids.userId, 'AAAAAAAAAAAAAAAAAAAAAA', 'confirmed', T0)).toStrictEqual({
          outcome: 'missing',
        });
        // Another user cannot settle it.
        const stranger = fresh();
        const mine = await created(consent(ids));
        expect(await store.consents.settleConsent(stranger.tenantId, stranger.userId, mine.id, 'confirmed', T0)).toStrictEqual({
          outcome: 'missing',
        });
      });

      it('50 concurrent settlements of one consent: exactly one settles it', async () => {
        const ids = fresh();
        const c = await created(consent(ids));
        const now = T0 + MINUTE;
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            store.consents.settleConsent(ids.tenantId, ids.userId, c.id, i % 2 === 0 ? 'confirmed' : 'rejected', now),
          ),
        );
        const winners = results.filter((r) => r.outcome === 'settled');
        expect(winners).toHaveLength(1);
        expect(results.filter((r) => r.outcome === 'not_pending')).toHaveLength(49);
        const winner = (winners[0] as Extract<SettleResult, { outcome: 'settled' }>).consent;
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, c.id)).toStrictEqual(winner);
      });

      it('20 AIS consents for one bank confirmed at once: exactly one stays valid, the others are superseded', async () => {
        const ids = fresh();
        const previous = await created(consent(ids));
        settled(await store.consents.settleConsent(ids.tenantId, ids.userId, previous.id, 'confirmed', T0));
        const pending = await Promise.all(Array.from({ length: 20 }, () => created(consent(ids))));
        const now = T0 + MINUTE;
        const results = await Promise.all(pending.map((c) => store.consents.settleConsent(ids.tenantId, ids.userId, c.id, 'confirmed', now)));
        expect(results.every((r) => r.outcome === 'settled')).toBe(true);
        // Each confirmation superseded exactly the one valid before it: a chain, nothing lost.
        const supersededIds = results.flatMap((r) => (r as Extract<SettleResult, { outcome: 'settled' }>).superseded.map((c) => c.id));
        expect(supersededIds).toHaveLength(20);
        expect(new Set(supersededIds).size).toBe(20);
        const { items } = await store.consents.listConsents({ ...ids, limit: 100 });
        const confirmed = items.filter((c) => c.status === 'confirmed');
        expect(confirmed).toHaveLength(1);
        expect(items.filter((c) => c.status === 'superseded')).toHaveLength(20);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toStrictEqual(confirmed[0]);
        for (const c of items.filter((x) => x.status === 'superseded')) expect(c.supersededBy).not.toBeNull();
      });
    });

    describe('lifecycle and banks (issue 15)', () => {
      it('keeps the bank ids and validUntil; the bank decides revoked or expired; a pending consent may be expired past its deadline', async () => {
        const ids = fresh();
        const c = await created({ ...consent(ids), bankConsentId: 'bank-consent-1', validUntil: T0 + 90 * 86_400_000 });
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, c.id)).toStrictEqual(c);
        const revoked = await store.consents.settleConsent(ids.tenantId, ids.userId, c.id, 'revoked', T0 + 1);
        expect(revoked).toMatchObject({ outcome: 'settled', consent: { status: 'revoked', endedAt: T0 + 1, bankConsentId: 'bank-consent-1' } });
        const late = await created(consent(ids));
        // Past its deadline only "expired" settles it.
        expect((await store.consents.settleConsent(ids.tenantId, ids.userId, late.id, 'confirmed', T0 + 21 * MINUTE)).outcome).toBe('expired');
        expect(await store.consents.settleConsent(ids.tenantId, ids.userId, late.id, 'expired', T0 + 21 * MINUTE)).toMatchObject({
          outcome: 'settled',
          consent: { status: 'expired', endedAt: T0 + 21 * MINUTE },
        });
      });

      it('endConsent: a confirmed AIS consent ends and is no longer the valid one; of 30 racing ends exactly one wins', async () => {
        const ids = fresh();
        const c = await created(consent(ids));
        settled(await store.consents.settleConsent(ids.tenantId, ids.userId, c.id, 'confirmed', T0));
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => store.consents.endConsent(ids.tenantId, ids.userId, c.id, i % 2 === 0 ? 'revoked' : 'expired', T0 + MINUTE)),
        );
        const winners = results.filter((r) => r.outcome === 'ended');
        expect(winners).toHaveLength(1);
        expect(results.filter((r) => r.outcome === 'not_active')).toHaveLength(29);
        const w = winners[0] as Extract<typeof winners[number], { outcome: 'ended' }>;
        expect(w.before.status).toBe('confirmed');
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, c.id)).toStrictEqual(w.consent);
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toBeNull();
        expect(await store.consents.endConsent(ids.tenantId, ids.userId, 'nope', 'revoked', T0)).toStrictEqual({ outcome: 'missing' });
        // A new confirmation for the bank works after the end.
        const next = await created(consent(ids));
        expect(settled(await store.consents.settleConsent(ids.tenantId, ids.userId, next.id, 'confirmed', T0 + 2 * MINUTE)).superseded).toEqual([]);
        // A pending consent can be withdrawn too.
        const pending = await created(consent(ids));
        expect(await store.consents.endConsent(ids.tenantId, ids.userId, pending.id, 'revoked', T0 + 3 * MINUTE)).toMatchObject({ outcome: 'ended', consent: { status: 'revoked' } });
      });

      it('deleteConsent removes the record and its place in the listing, once', async () => {
        const ids = fresh();
        const a = await created(consent(ids));
        const b = await created(consent(ids, { at: T0 + 1 }));
        settled(await store.consents.settleConsent(ids.tenantId, ids.userId, a.id, 'confirmed', T0 + 2));
        expect(await store.consents.deleteConsent(ids.tenantId, ids.userId, a.id)).toBe(true);
        expect(await store.consents.deleteConsent(ids.tenantId, ids.userId, a.id)).toBe(false);
        expect(await store.consents.getConsent(ids.tenantId, ids.userId, a.id)).toBeNull();
        expect(await store.consents.validAisConsent(ids.tenantId, ids.userId, 'bank-a')).toBeNull();
        expect((await store.consents.listConsents({ ...ids, limit: 10 })).items.map((c) => c.id)).toEqual([b.id]);
      });

      it("banks: per tenant (the same id in two tenants), created once, replaced, listed, deleted", async () => {
        const t1 = `t-${randomUUID()}`;
        const t2 = `t-${randomUUID()}`;
        const bank = (tenantId: string, name: string) => ({
          tenantId,
          bankId: 'acme',
          name,
          protocol: 'berlin-group' as const,
          baseUrl: 'https://xs2a.acme.example/',
          timeoutMs: 5000,
          tls: { clientCertificate: 'CERT', sealedClientKey: 'v1.sealed', caCertificate: null },
          createdAt: T0,
          updatedAt: T0,
        });
        const racing = await Promise.all(Array.from({ length: 10 }, (_, i) => store.banks.putBank(bank(t1, `n${i}`))));
        expect(racing.filter((r) => r.created)).toHaveLength(1);
        expect(await store.banks.putBank(bank(t2, 'other'))).toMatchObject({ created: true });
        expect(await store.banks.putBank(bank(t1, 'renamed'))).toMatchObject({ created: false });
        expect(await store.banks.getBank(t1, 'acme')).toStrictEqual(bank(t1, 'renamed'));
        expect(await store.banks.getBank(t2, 'acme')).toStrictEqual(bank(t2, 'other'));
        await store.banks.putBank({ ...bank(t1, 'b'), bankId: 'beta' });
        expect((await store.banks.listBanks(t1)).map((b) => b.bankId)).toEqual(['acme', 'beta']);
        expect(await store.banks.deleteBank(t1, 'acme')).toBe(true);
        expect(await store.banks.deleteBank(t1, 'acme')).toBe(false);
        expect(await store.banks.getBank(t1, 'acme')).toBeNull();
        expect(await store.banks.getBank(t2, 'acme')).not.toBeNull();
      });

      it('bank work: due items are claimed by exactly one of many workers until the lease ends; rescheduling keeps the attempts', async () => {
        const ids = fresh();
        const base = T0 + 365 * 86_400_000 + Math.floor(Math.random() * 1_000_000); // clear of other tests' items
        const items = Array.from({ length: 12 }, (_, i) => ({ kind: 'check' as const, ...ids, consentId: `c${i}` }));
        for (const w of items) await store.banks.scheduleWork(w, base);
        const mine = (ws: Awaited<ReturnType<typeof store.banks.claimWork>>) => ws.filter((w) => w.tenantId === ids.tenantId);
        expect(mine(await store.banks.claimWork(base - 1, 1000, 60_000))).toHaveLength(0);
        const claims = await Promise.all(Array.from({ length: 8 }, () => store.banks.claimWork(base, 1000, 60_000)));
        const claimed = claims.flatMap(mine);
        expect(claimed).toHaveLength(12);
        expect(new Set(claimed.map((w) => w.consentId)).size).toBe(12);
        expect(claimed.every((w) => w.attempts === 0)).toBe(true);
        expect(mine(await store.banks.claimWork(base + 59_999, 1000, 60_000))).toHaveLength(0);
        const again = mine(await store.banks.claimWork(base + 60_000, 1000, 60_000));
        expect(again).toHaveLength(12);
        expect(again.every((w) => w.attempts === 1)).toBe(true);
        await store.banks.scheduleWork(items[0]!, base + 60_001);
        for (const w of items.slice(1)) await store.banks.finishWork(w);
        const last = mine(await store.banks.claimWork(base + 200_000, 1000, 60_000));
        expect(last.map((w) => [w.consentId, w.attempts])).toEqual([['c0', 2]]);
        await store.banks.finishWork(items[0]!);
        expect(mine(await store.banks.claimWork(base + 10_000_000, 1000, 60_000))).toHaveLength(0);
      });

      it("bank work of a deleted tenant: dropTenantWork removes all of that tenant's items, due or not, claimed or not, and nothing of other tenants", async () => {
        const gone = `t_${randomUUID()}`;
        // Ids that share a beginning with the dropped tenant's, or would match it as a LIKE pattern (`_`).
        const others = [`${gone}x`, gone.replace('_', 'a'), `${gone.slice(0, -1)}`];
        const base = T0 + 730 * 86_400_000 + Math.floor(Math.random() * 1_000_000);
        const of = (tenantId: string) => (['check', 'terminate', 'purge'] as const).map((kind, i) => ({ kind, tenantId, userId: 'u1', consentId: `c${i}` }));
        for (const w of [gone, ...others].flatMap(of)) await store.banks.scheduleWork(w, base);
        await store.banks.scheduleWork({ kind: 'purge', tenantId: gone, userId: 'u2', consentId: 'later' }, base + 90 * 86_400_000);
        // One item is held by a worker (claimed, under lease).
        expect((await store.banks.claimWork(base, 1000, 60_000)).filter((w) => w.tenantId === gone)).toHaveLength(3);
        expect(await store.banks.dropTenantWork(gone)).toBe(4);
        expect(await store.banks.dropTenantWork(gone)).toBe(0);
        const later = await store.banks.claimWork(base + 100 * 86_400_000, 100_000, 60_000);
        expect(later.filter((w) => w.tenantId === gone)).toEqual([]);
        const kept = later.filter((w) => others.includes(w.tenantId));
        expect(kept).toHaveLength(others.length * 3);
        for (const w of kept) await store.banks.finishWork(w);
      });
    });
  });
}
