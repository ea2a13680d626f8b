// CookieSigner: signed cookie values verify, tampered ones do not, and the cache of values it
// has verified stays within its bound (makeRoom) however many distinct cookies it sees.

import { createSecretKey, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CookieSigner } from '../../src/tokens/cookies.ts';

describe('CookieSigner', () => {
  it('verifies what it signed, refuses tampered values, and keeps its cache bounded', () => {
    const signer = new CookieSigner(createSecretKey(randomBytes(32)));
    const other = new CookieSigner(createSecretKey(randomBytes(32)));
    const signed = signer.sign('handle.abc');
    expect(signer.unsign(signed)).toEqual({ valid: true, renew: false, value: 'handle.abc' });
    expect(signer.unsign(signed)).toEqual({ valid: true, renew: false, value: 'handle.abc' }); // from the cache
    expect(other.unsign(signed).valid).toBe(false);
    expect(signer.unsign(`${signed.slice(0, -1)}${signed.endsWith('A') ? 'B' : 'A'}`).valid).toBe(false);
    expect(signer.unsign('no-signature').valid).toBe(false);
    expect(signer.unsign('handle.abc.x').valid).toBe(false);
    const cache = (signer as unknown as { verified: Map<string, string> }).verified;
    for (let i = 0; i < 60_000; i++) expect(signer.unsign(signer.sign(`v${i}`)).value).toBe(`v${i}`);
    expect(cache.size).toBeLessThanOrEqual(50_000);
    expect(cache.has(signer.sign('v59999'))).toBe(true);
    expect(cache.has(signed)).toBe(false);
    // An evicted value still verifies (by its HMAC again).
    expect(signer.unsign(signed)).toEqual({ valid: true, renew: false, value: 'handle.abc' });
  });
});
