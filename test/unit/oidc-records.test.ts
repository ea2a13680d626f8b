// oidc-provider's records at rest (src/flows/oidc/records.ts, docs/security.md "/oidc records at
// rest"): what the store gets holds no id, uid or grant id in clear, and a stored record opens
// only as the record it was written as.

import { describe, expect, it } from 'vitest';
import { openRecord, recordKeys, sealRecord, storedGrantId, storedId, storedUid } from '../../src/flows/oidc/records.ts';

const keys = recordKeys('a-server-secret-of-at-least-32-characters');
const token = 'AccessTokenValue0123456789abcdefghijklmnopq';
// Every clear value long enough that the sealed record, random base64url of ~400 characters,
// cannot hold it by chance: an account id of 'u1' was found in about 6 % of seals (any two
// characters are, at 1 in 4,096 per position), and the test failed then.
const payload = { jti: token, kind: 'AccessToken', grantId: 'grant-1234567890', uid: 'uid-abcdefghij', accountId: 'user-0123456789abcdef', exp: 2_000_000_000 };

describe('oidc-provider records at rest', () => {
  it('stores ids, uids and grant ids as keyed hashes and seals the payload', () => {
    const id = storedId(keys, 'AccessToken', token);
    const stored = sealRecord(keys, 'AccessToken', payload);
    const text = JSON.stringify({ id, stored });
    for (const clear of [token, payload.grantId, payload.uid, payload.accountId]) expect(text).not.toContain(clear);
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(stored.grantId).toBe(storedGrantId(keys, payload.grantId));
    expect(stored.uid).toBe(storedUid(keys, 'AccessToken', payload.uid));
    // Deterministic (a lookup finds it), separated by model and by purpose.
    expect(storedId(keys, 'AccessToken', token)).toBe(id);
    expect(storedId(keys, 'AuthorizationCode', token)).not.toBe(id);
    expect(storedUid(keys, 'AccessToken', token)).not.toBe(id);
    // Another server secret gives other ids.
    expect(storedId(recordKeys('another-server-secret-of-32-characters!!'), 'AccessToken', token)).not.toBe(id);
  });

  it('opens a record as the one it was written as, with the store-side consumed mark', () => {
    const stored = sealRecord(keys, 'AccessToken', payload);
    expect(openRecord(keys, 'AccessToken', stored, { id: token })).toEqual(payload);
    expect(openRecord(keys, 'AccessToken', stored, { uid: payload.uid })).toEqual(payload);
    expect(openRecord(keys, 'AccessToken', { ...stored, consumed: 1_900_000_000 }, { id: token })).toEqual({ ...payload, consumed: 1_900_000_000 });
  });

  it('refuses a record copied to another id or model, sealed under another secret, tampered with, or in the old clear layout', () => {
    const stored = sealRecord(keys, 'AccessToken', payload);
    expect(openRecord(keys, 'AccessToken', stored, { id: 'another-token' })).toBeNull();
    expect(openRecord(keys, 'AccessToken', stored, { uid: 'another-uid' })).toBeNull();
    expect(openRecord(keys, 'AuthorizationCode', stored, { id: token })).toBeNull();
    expect(openRecord(recordKeys('another-server-secret-of-32-characters!!'), 'AccessToken', stored, { id: token })).toBeNull();
    const [v, iv, body, tag] = stored.sealed.split('.') as [string, string, string, string];
    const flipped = `${body.slice(0, 5)}${body[5] === 'A' ? 'B' : 'A'}${body.slice(6)}`;
    expect(openRecord(keys, 'AccessToken', { ...stored, sealed: [v, iv, flipped, tag].join('.') }, { id: token })).toBeNull();
    expect(openRecord(keys, 'AccessToken', payload, { id: token })).toBeNull();
    expect(openRecord(keys, 'AccessToken', null, { id: token })).toBeNull();
  });
});
