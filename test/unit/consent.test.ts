// The pure consent and redirect rules (src/domain/consent.ts, src/domain/redirect.ts).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { effectiveConsentStatus, isValidIban, newConsent, normalisePayment, settleConsent, validAisConsent, type Consent } from '../../src/domain/consent.ts';
import { BadRequest } from '../../src/domain/errors.ts';
import { buildSuccessorSession, issueRedirectSession, redirectCookiePath } from '../../src/domain/redirect.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import { issueSession } from '../../src/domain/session.ts';

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
const PAYMENT = { amount: '12.50', currency: 'EUR', creditorIban: 'DE89 3704 0044 0532 0130 00', creditorName: ' Coffee Roasters ' };

function ais(over: Partial<Consent> = {}): Consent {
  return { ...newConsent({ tenantId: 't', userId: 'u', type: 'ais', bankId: 'b', expiresAt: T0 + 1200_000 }, T0), ...over };
}

describe('consent rules', () => {
  it('confirming an AIS consent supersedes only the confirmed AIS consent of the same bank', () => {
    const old = ais({ status: 'confirmed', confirmedAt: T0 });
    const otherBank = ais({ bankId: 'c', status: 'confirmed', confirmedAt: T0 });
    const pendingSibling = ais();
    const target = ais();
    const r = settleConsent(target, 'confirmed', [old, otherBank, pendingSibling, target], T0 + 5);
    expect(r).toStrictEqual({
      outcome: 'settled',
      consent: { ...target, status: 'confirmed', confirmedAt: T0 + 5 },
      superseded: [{ ...old, status: 'superseded', endedAt: T0 + 5, supersededBy: target.id }],
    });
    expect(validAisConsent([old, otherBank], 'b')).toBe(old);
  });

  it('rejects without superseding; settles only pending consents before their deadline', () => {
    const old = ais({ status: 'confirmed', confirmedAt: T0 });
    const target = ais();
    expect(settleConsent(target, 'rejected', [old], T0 + 1)).toStrictEqual({
      outcome: 'settled',
      consent: { ...target, status: 'rejected', endedAt: T0 + 1 },
      superseded: [],
    });
    expect(settleConsent(old, 'confirmed', [], T0 + 1)).toStrictEqual({ outcome: 'not_pending', consent: old });
    expect(settleConsent(target, 'confirmed', [], T0 + 1200_000)).toStrictEqual({ outcome: 'expired', consent: target });
    expect(effectiveConsentStatus(target, T0 + 1199_999)).toBe('pending');
    expect(effectiveConsentStatus(target, T0 + 1200_000)).toBe('expired');
    expect(effectiveConsentStatus(old, T0 + 9e9)).toBe('confirmed');
  });

  it('a PIS consent supersedes nothing and normalises its payment', () => {
    const p = newConsent({ tenantId: 't', userId: 'u', type: 'pis', bankId: 'b', expiresAt: T0 + 1, payment: PAYMENT }, T0);
    expect(p.payment).toStrictEqual({ amount: '12.50', currency: 'EUR', creditorIban: 'DE89370400440532013000', creditorName: 'Coffee Roasters' });
    const confirmedAis = ais({ status: 'confirmed' });
    expect(settleConsent(p, 'confirmed', [confirmedAis], T0)).toMatchObject({ outcome: 'settled', superseded: [] });
    expect(() => newConsent({ tenantId: 't', userId: 'u', type: 'pis', bankId: 'b', expiresAt: T0 }, T0)).toThrow(BadRequest);
    expect(() => newConsent({ tenantId: 't', userId: 'u', type: 'ais', bankId: 'b', expiresAt: T0, payment: PAYMENT }, T0)).toThrow(BadRequest);
  });

  it('checks IBANs by their mod-97 check digits', () => {
    expect(isValidIban('DE89370400440532013000')).toBe(true);
    expect(isValidIban('GB82WEST12345698765432')).toBe(true);
    expect(isValidIban('DE89370400440532013001')).toBe(false);
    expect(isValidIban('DE8937040044')).toBe(false);
    expect(isValidIban('de89370400440532013000')).toBe(false);
    // Changing any one digit of a valid IBAN breaks it (mod 97 catches every single-digit error).
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 21 }), fc.integer({ min: 1, max: 9 }), (pos, delta) => {
        const iban = 'DE89370400440532013000';
        const d = (Number(iban[pos]) + delta) % 10;
        return !isValidIban(iban.slice(0, pos) + String(d) + iban.slice(pos + 1));
      }),
    );
  });

  it('refuses amounts that are zero, negative, too precise or not numbers, and bad currencies', () => {
    for (const amount of ['0', '0.00', '-1', '1.234', 'abc', '1e3', '01']) {
      expect(() => normalisePayment({ ...PAYMENT, amount }), amount).toThrow(BadRequest);
    }
    expect(() => normalisePayment({ ...PAYMENT, currency: 'EURO' })).toThrow(BadRequest);
    expect(() => normalisePayment({ ...PAYMENT, creditorName: '  ' })).toThrow(BadRequest);
    expect(normalisePayment({ ...PAYMENT, amount: '0.01' }).amount).toBe('0.01');
  });
});

describe('redirect sessions and successors', () => {
  const parent = issueSession(
    { tenantId: 't', userId: 'u', kind: 'app', lifetime: { idle: 2, absolute: 3600 }, authMethod: 'password', data: { mode: 'cookie', xsrfHash: 'x' } },
    T0,
  ).session;

  it('a redirect lives its own 20 minutes, not capped by the short parent', () => {
    const r = issueRedirectSession({ parent, lifetime: { idle: null, absolute: 1200 }, consentId: 'c', device: {}, browserBinding: 'b' }, T0).session;
    expect(r).toMatchObject({ kind: 'redirect', parentHandle: parent.handle, idleExpiresAt: null, absoluteExpiresAt: T0 + 1200_000, data: { consentId: 'c' } });
    expect(redirectCookiePath(r.handle)).toBe(`/api/v1/redirects/${r.handle}`);
  });

  it('the successor carries the given secret, a fresh idle window, and never outlives the login', () => {
    const now = T0 + 10_000;
    const s = buildSuccessorSession({ predecessor: parent, secret: 'S'.repeat(43), idleSeconds: 2, device: {}, data: (h) => ({ xsrfHash: `for ${h}` }) }, now)!;
    expect(s.secretHash).toBe(hashSecret('S'.repeat(43)));
    expect(s).toMatchObject({ kind: 'app', userId: 'u', authMethod: 'renewed', idleExpiresAt: now + 2000, absoluteExpiresAt: parent.absoluteExpiresAt });
    expect(s.data).toStrictEqual({ mode: 'cookie', renewedFrom: parent.handle, xsrfHash: `for ${s.handle}` });
    expect(buildSuccessorSession({ predecessor: parent, secret: 'x', idleSeconds: 2, device: {} }, parent.absoluteExpiresAt)).toBeNull();
    expect(buildSuccessorSession({ predecessor: { ...parent, status: 'revoked' }, secret: 'x', idleSeconds: 2, device: {} }, now)).toBeNull();
  });

  it('a renewal keeps a pending re-authentication: an expired marked session does not come back unmarked', () => {
    const marked = { ...parent, data: { ...parent.data, reauth: { since: T0, reasons: ['request_rate'] } } };
    const s = buildSuccessorSession({ predecessor: marked, secret: 'S'.repeat(43), idleSeconds: 2, device: {} }, T0 + 10_000)!;
    expect(s.data.reauth).toStrictEqual({ since: T0, reasons: ['request_rate'] });
  });
});
