// signSessionToken writes the compact JWS itself (node:crypto, synchronous): the bytes must be
// exactly those jose's CompactSign produces for the same header and claims, and verify.

import { generateKeyPairSync } from 'node:crypto';
import { CompactSign, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { signSessionToken, verifySessionToken, type SessionTokenClaims } from '../../src/tokens/session-token.ts';
import type { KeyRing } from '../../src/tokens/key-ring.ts';

describe('session token signing', () => {
  it('gives jose’s bytes, verifies with jose, and is known verified in this process at once', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const ring = { signing: () => ({ kid: 'k-2026-1', key: privateKey }), verification: () => publicKey } as unknown as KeyRing;
    for (const claims of [
      { iss: 'https://tessera.test', sub: 'u-1', tid: 'acme', sid: 's-1', scope: 'session', iat: 1_765_000_000, exp: 1_765_000_900, jti: 'j-1' },
      { iss: 'http://127.0.0.1:8080', sub: 'ü\u2028"x"', tid: 't', sid: 'h'.repeat(40), scope: 'session role:admin', iat: 1, exp: 4_000_000_000, jti: 'j' },
    ] satisfies SessionTokenClaims[]) {
      const mine = await signSessionToken(ring, claims);
      const payload = JSON.stringify({ iss: claims.iss, sub: claims.sub, tid: claims.tid, sid: claims.sid, scope: claims.scope, iat: claims.iat, exp: claims.exp, jti: claims.jti });
      const theirs = await new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'k-2026-1' }).sign(privateKey);
      expect(mine).toBe(theirs);
      const { payload: verified } = await jwtVerify(mine, publicKey, { algorithms: ['EdDSA'], currentDate: new Date(claims.iat * 1000) });
      expect(verified).toEqual(claims);
      // Known good in the signing process: checked for issuer and expiry only.
      expect(await verifySessionToken(ring, mine, claims.iss, claims.iat * 1000)).toEqual(claims);
      await expect(verifySessionToken(ring, mine, claims.iss, claims.exp * 1000)).rejects.toMatchObject({ code: 'invalid_token' });
    }
  });
});
