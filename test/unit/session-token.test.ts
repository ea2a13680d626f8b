// signSessionToken writes the compact JWS itself (node:crypto, synchronous): the bytes must be
// exactly those jose's CompactSign produces for the same header and claims, and verify.

import { generateKeyPairSync, randomBytes, randomInt } from 'node:crypto';
import { CompactSign, jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { signSessionToken, verifySessionToken, type SessionTokenClaims } from '../../src/tokens/session-token.ts';
import { useEd25519 } from '../../src/tokens/ed25519.ts';
import type { KeyRing } from '../../src/tokens/key-ring.ts';

/** A random string of up to `max` characters, some of them outside ASCII (and JSON escapes). */
function text(max: number): string {
  const pool = ['a', 'Z', '0', '-', '.', ':', '"', '\\', '/', ' ', 'ü', '\u2028', '\u0000', '€', '😀', '\n'];
  return Array.from({ length: randomInt(1, max + 1) }, () => pool[randomInt(pool.length)]).join('');
}

function randomClaims(): SessionTokenClaims {
  const iat = randomInt(1, 2_000_000_000);
  return {
    iss: randomInt(2) === 0 ? 'https://tessera.test' : `http://127.0.0.1:${randomInt(1, 65536)}`,
    sub: text(40),
    tid: text(20),
    sid: randomBytes(randomInt(1, 40)).toString('base64url'),
    scope: randomInt(2) === 0 ? 'session' : `session ${text(30)}`,
    iat,
    exp: iat + randomInt(1, 86_400),
    jti: randomBytes(16).toString('base64url').slice(0, 22),
  };
}

describe('session token signing', () => {
  afterAll(() => useEd25519('auto'));

  for (const choice of ['auto', 'node'] as const) {
    it(`gives jose’s bytes for many random keys and claims (TESSERA_ED25519=${choice}), each verifying with jose`, async () => {
      const used = useEd25519(choice);
      expect(used.name).toBe(choice === 'auto' ? 'libsodium' : 'node:crypto');
      for (let k = 0; k < 12; k++) {
        const { privateKey, publicKey } = generateKeyPairSync('ed25519');
        const kid = `${k}.${randomBytes(6).toString('base64url')}`;
        const ring = { signing: () => ({ kid, key: privateKey }), verification: () => publicKey } as unknown as KeyRing;
        for (let i = 0; i < 12; i++) {
          const claims = randomClaims();
          const mine = await signSessionToken(ring, claims);
          const payload = JSON.stringify({ iss: claims.iss, sub: claims.sub, tid: claims.tid, sid: claims.sid, scope: claims.scope, iat: claims.iat, exp: claims.exp, jti: claims.jti });
          const theirs = await new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid }).sign(privateKey);
          expect(mine).toBe(theirs);
          // Signing the same claims again gives the same token (the grace window's same pair).
          expect(await signSessionToken(ring, { ...claims })).toBe(mine);
          const { payload: verified } = await jwtVerify(mine, publicKey, { algorithms: ['EdDSA'], issuer: claims.iss, currentDate: new Date(claims.iat * 1000) });
          expect(verified).toEqual(claims);
        }
      }
    });
  }

  it('gives jose’s bytes, verifies with jose, and is known verified in this process at once', async () => {
    useEd25519('auto');
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
