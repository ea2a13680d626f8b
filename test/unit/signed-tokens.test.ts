// The tokens a process signed are recognised on their first check there by the SHA-256 of their
// exact text (src/tokens/signed-tokens.ts), not kept as text and claims from the signing on.

import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { SignedTokens } from '../../src/tokens/signed-tokens.ts';
import { signSessionTokenSync, verifiedSessionToken, verifySessionToken, type SessionTokenClaims } from '../../src/tokens/session-token.ts';
import type { KeyRing } from '../../src/tokens/key-ring.ts';

function ringOf(kid = 'k-1'): KeyRing {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { signing: () => ({ kid, key: privateKey }), verification: () => publicKey } as unknown as KeyRing;
}

const claims = (n: number): SessionTokenClaims => ({
  iss: 'https://tessera.test',
  sub: `u-ü-${n}`,
  tid: 'acme',
  sid: `s-${n}`,
  scope: 'session role:admin',
  iat: 1_765_000_000,
  exp: 1_765_000_900,
  jti: `j-${n}`,
});

/** The same text as a new string (a request's header is never the signer's string object). */
const copy = (s: string) => Buffer.from(s, 'latin1').toString('latin1');

describe('SignedTokens', () => {
  it('knows every token added, through the tables growing, and nothing else', () => {
    const set = new SignedTokens(10_000);
    const tokens = Array.from({ length: 5_000 }, (_, i) => `t.${i}.x`);
    for (const t of tokens) set.add(t);
    for (const t of tokens) expect(set.has(copy(t))).toBe(true);
    for (let i = 0; i < 5_000; i++) expect(set.has(`t.${i}.y`)).toBe(false);
    expect(set.has('t.1.x ')).toBe(false);
    expect(set.has('')).toBe(false);
  });

  it('keeps the last generation to two generations added: the older ones go', () => {
    const set = new SignedTokens(100);
    const tokens = Array.from({ length: 350 }, (_, i) => `token-${i}`);
    for (const t of tokens) set.add(t);
    // 350 added in generations of 100: the last 50 in the current table, the 100 before in the previous one.
    for (const t of tokens.slice(200)) expect(set.has(t)).toBe(true);
    for (const t of tokens.slice(0, 200)) expect(set.has(t)).toBe(false);
  });

  it('starts each later generation at the size a full generation grew to, not growing again', () => {
    const set = new SignedTokens(1_000);
    expect(set.tableSlots).toBe(1_024);
    const first = Array.from({ length: 1_000 }, (_, i) => `first-${i}`);
    for (const t of first) set.add(t);
    // Half full at most: 1,000 digests need 2,048 slots.
    expect(set.tableSlots).toBe(2_048);
    const second = Array.from({ length: 1_000 }, (_, i) => `second-${i}`);
    set.add(second[0] as string);
    expect(set.tableSlots).toBe(2_048);
    for (const t of second) set.add(t);
    expect(set.tableSlots).toBe(2_048);
    for (const t of [...first, ...second]) expect(set.has(copy(t))).toBe(true);
    set.add('third-0');
    // The first generation is dropped with the second one's end; the second is kept.
    for (const t of first) expect(set.has(t)).toBe(false);
    for (const t of second) expect(set.has(t)).toBe(true);
    expect(set.has('third-0')).toBe(true);
  });

  it('counts a token added again once', () => {
    const set = new SignedTokens(100);
    for (let i = 0; i < 100; i++) set.add('the same');
    for (let i = 0; i < 99; i++) set.add(`other-${i}`);
    // 100 distinct: still one generation, the first one kept.
    expect(set.has('the same')).toBe(true);
  });
});

describe('a token signed in this process', () => {
  it('is known verified on its first check, without the Ed25519 verification, with its own claims', () => {
    const ring = ringOf();
    for (let n = 0; n < 20; n++) {
      const token = signSessionTokenSync(ring, claims(n));
      // verifiedSessionToken never verifies a signature: it answers only for tokens it knows.
      expect(verifiedSessionToken(ring, copy(token), 'https://tessera.test', 1_765_000_000_000)).toEqual(claims(n));
      expect(verifiedSessionToken(ring, copy(token), 'https://tessera.test', 1_765_000_000_000)).toEqual(claims(n));
    }
  });

  it('is checked for issuer and expiry as any other', () => {
    const ring = ringOf();
    const token = signSessionTokenSync(ring, claims(1));
    expect(verifiedSessionToken(ring, token, 'https://other.test', 1_765_000_000_000)).toBeUndefined();
    expect(() => verifiedSessionToken(ring, token, 'https://tessera.test', 1_765_000_900_000)).toThrow(expect.objectContaining({ code: 'invalid_token' }));
  });

  it('is not known under another ring, and a text differing from it is not known', async () => {
    const ring = ringOf();
    const token = signSessionTokenSync(ring, claims(2));
    expect(verifiedSessionToken(ringOf(), token, 'https://tessera.test', 1_765_000_000_000)).toBeUndefined();
    const [h, p, s] = token.split('.') as [string, string, string];
    // Another payload under the same signature (a forgery), and the same token with a character more or one changed.
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims(2), sid: 's-other' })).toString('base64url')}.${s}`;
    for (const other of [forged, `${token}A`, `${h}.${p}.${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`, ` ${token}`]) {
      expect(verifiedSessionToken(ring, other, 'https://tessera.test', 1_765_000_000_000)).toBeUndefined();
    }
    await expect(verifySessionToken(ring, forged, 'https://tessera.test', 1_765_000_000_000)).rejects.toMatchObject({ code: 'invalid_token' });
  });

  it('hashes only a text under the header of a key this process signed with (a garbage or foreign bearer is not hashed)', () => {
    const ring = ringOf('k-hdr');
    const token = signSessionTokenSync(ring, claims(3));
    const has = vi.spyOn(SignedTokens.prototype, 'has');
    try {
      const foreign = signSessionTokenSync(ringOf('k-other'), claims(4));
      for (const other of ['x'.repeat(4000), 'a.b.c', token.slice(0, token.indexOf('.')), `${token.slice(0, token.indexOf('.'))}X.${token.slice(token.indexOf('.') + 1)}`]) {
        expect(verifiedSessionToken(ring, other, 'https://tessera.test', 1_765_000_000_000)).toBeUndefined();
      }
      expect(has).not.toHaveBeenCalled();
      // A token under another kid's header is hashed in the ring that signed with that kid only
      // if this process signed with it: here it did (ringOf('k-other') above), and the other
      // ring does not know it.
      expect(verifiedSessionToken(ring, foreign, 'https://tessera.test', 1_765_000_000_000)).toBeUndefined();
      expect(has).toHaveBeenCalledTimes(1);
      expect(verifiedSessionToken(ring, copy(token), 'https://tessera.test', 1_765_000_000_000)).toEqual(claims(3));
      expect(has).toHaveBeenCalledTimes(2);
    } finally {
      has.mockRestore();
    }
  });
});
