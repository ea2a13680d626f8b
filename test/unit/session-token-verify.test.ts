// A token's first check in a process (src/tokens/session-token.ts `verifySessionToken` on a ring
// that has not verified it) checks the Ed25519 signature itself (libsodium where it loads, else
// node:crypto) and the claims as jose's `jwtVerify` did with the options the module gave it. Every
// case here is decided by that jwtVerify too, and the answers must agree — with the refusals
// documented as stricter than jose (a `crit` header, base64url our signer never writes).

import { createPublicKey, generateKeyPairSync, randomBytes, randomInt, sign, type KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { Unauthorized } from '../../src/domain/errors.ts';
import { useEd25519 } from '../../src/tokens/ed25519.ts';
import { signSessionTokenSync, stillVerified, verifiedSessionToken, verifySessionToken, type SessionTokenClaims } from '../../src/tokens/session-token.ts';
import type { KeyRing } from '../../src/tokens/key-ring.ts';

const ISS = 'https://tessera.test';
const KID = 'k-2026-12-07';
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const NOW = 1_765_000_100_000;
const base = { iss: ISS, sub: 'u-1', tid: 'acme', sid: 's-1', scope: 'session', iat: 1_765_000_000, exp: 1_765_000_900, jti: 'j-1' };

/** A ring that has verified nothing: every check of it is a first check. */
const freshRing = (key: KeyObject = publicKey) =>
  ({ verification: (kid: string) => (kid === KID ? key : null), maybeReload: async () => undefined }) as unknown as KeyRing;

const b64 = (x: string | Buffer) => Buffer.from(x).toString('base64url');

/** A compact JWS from raw parts: the header and payload as text (or already encoded), signed over what is written. */
function jws(opts: { header?: object | string; payload?: object | string; encodedHeader?: string; encodedPayload?: string; key?: KeyObject }): string {
  const h = opts.encodedHeader ?? b64(typeof opts.header === 'string' ? opts.header : JSON.stringify(opts.header ?? { alg: 'EdDSA', typ: 'JWT', kid: KID }));
  const p = opts.encodedPayload ?? b64(typeof opts.payload === 'string' ? opts.payload : JSON.stringify(opts.payload ?? base));
  return `${h}.${p}.${sign(null, Buffer.from(`${h}.${p}`), opts.key ?? privateKey).toString('base64url')}`;
}

/** JSON text with trailing white space until its base64url has a length of 4k (no partial group). */
function padTo4(text: string): string {
  while (b64(text).length % 4 !== 0) text += ' ';
  return text;
}

type Answer = { ok: true; claims: unknown } | { ok: false; message: string };

/** What the module answered before it checked signatures itself: jose's jwtVerify, then the session claims. */
async function before(token: string, now = NOW, issuer = ISS, key: KeyObject = publicKey): Promise<Answer> {
  try {
    const { payload } = await jwtVerify(token, key, { algorithms: ['EdDSA'], issuer, currentDate: new Date(now), clockTolerance: 0, requiredClaims: ['sub', 'sid', 'tid', 'exp', 'iat', 'jti'] });
    if (typeof payload.sid !== 'string' || typeof payload.tid !== 'string' || typeof payload.sub !== 'string') return { ok: false, message: 'The token lacks session claims.' };
    return { ok: true, claims: payload };
  } catch {
    return { ok: false, message: 'The token is invalid or has expired.' };
  }
}

async function after(token: string, now = NOW, issuer = ISS, key: KeyObject = publicKey): Promise<Answer> {
  try {
    return { ok: true, claims: await verifySessionToken(freshRing(key), token, issuer, now) };
  } catch (err) {
    if (!(err instanceof Unauthorized) || err.code !== 'invalid_token') throw err;
    return { ok: false, message: err.message };
  }
}

const agreeing: [string, string, number?][] = [
  ['a token of our signer', jws({})],
  ['extra claims', jws({ payload: { ...base, aud: 'x', foo: [1, { a: 2 }] } })],
  ['alg none', jws({ header: { alg: 'none', kid: KID } })],
  ['alg ES256', jws({ header: { alg: 'ES256', kid: KID } })],
  ['alg Ed25519', jws({ header: { alg: 'Ed25519', kid: KID } })],
  ['alg eddsa', jws({ header: { alg: 'eddsa', kid: KID } })],
  ['no alg', jws({ header: { kid: KID } })],
  ['alg a number', jws({ header: { alg: 1, kid: KID } })],
  ['crit b64 false', jws({ header: { alg: 'EdDSA', kid: KID, crit: ['b64'], b64: false } })],
  ['crit of an unknown parameter', jws({ header: { alg: 'EdDSA', kid: KID, crit: ['exp'], exp: 1 } })],
  ['crit empty', jws({ header: { alg: 'EdDSA', kid: KID, crit: [] } })],
  ['b64 false without crit (ignored by jose)', jws({ header: { alg: 'EdDSA', kid: KID, b64: false } })],
  ['signed by another key', jws({ key: other.privateKey })],
  ['a signature cut short', jws({}).slice(0, -2)],
  ['a signature one byte longer', `${jws({})}AA`],
  ['an empty signature', jws({}).replace(/[^.]*$/, '')],
  ['an empty payload', jws({ encodedPayload: '' })],
  ['a payload that is not JSON', jws({ payload: '{"iss":' })],
  ['a payload that is an array', jws({ payload: '[1,2]' })],
  ['a payload that is null', jws({ payload: 'null' })],
  ['a payload that is a string', jws({ payload: '"x"' })],
  ['a payload of invalid UTF-8', jws({ encodedPayload: Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url') })],
  ['a payload with a BOM', jws({ payload: `\ufeff${JSON.stringify(base)}` })],
  ['a payload with white space around', jws({ payload: ` ${JSON.stringify(base)}\n` })],
  ['non-ASCII in the payload part', (() => { const [h, , s] = jws({}).split('.'); return `${h}.é${b64(JSON.stringify(base))}.${s}`; })()],
  ['a payload part of length 4k+1 (a stray last character)', jws({ encodedPayload: `${b64(padTo4(JSON.stringify(base)))}A` })],
  ['a payload part with five stray characters', jws({ encodedPayload: `${b64(padTo4(JSON.stringify(base)))}AAAAA` })],
  ['a payload part of length 4k+1 ending in a stray "_"', jws({ encodedPayload: `${b64(padTo4(JSON.stringify(base)))}_` })],
  ['another issuer', jws({ payload: { ...base, iss: 'https://evil.test' } })],
  ['the issuer with a trailing slash', jws({ payload: { ...base, iss: `${ISS}/` } })],
  ['an issuer array', jws({ payload: { ...base, iss: [ISS] } })],
  ['expired: exp one second ago', jws({ payload: { ...base, exp: NOW / 1000 - 1 } })],
  ['expired: exp now', jws({ payload: { ...base, exp: NOW / 1000 } })],
  ['exp in the current second plus 0.5', jws({ payload: { ...base, exp: NOW / 1000 + 0.5 } })],
  ['exp in the current second minus 0.5', jws({ payload: { ...base, exp: NOW / 1000 - 0.5 } })],
  ['exp the next second', jws({ payload: { ...base, exp: NOW / 1000 + 1 } })],
  ['exp as a string', jws({ payload: { ...base, exp: String(base.exp) } })],
  ['exp null', jws({ payload: { ...base, exp: null } })],
  ['exp huge', jws({ payload: { ...base, exp: 1e300 } })],
  ['iat as a string', jws({ payload: { ...base, iat: '1765000000' } })],
  ['iat in the future (not checked)', jws({ payload: { ...base, iat: NOW / 1000 + 3600 } })],
  ['nbf in the future', jws({ payload: { ...base, nbf: NOW / 1000 + 1 } })],
  ['nbf now', jws({ payload: { ...base, nbf: NOW / 1000 } })],
  ['nbf past', jws({ payload: { ...base, nbf: 1 } })],
  ['nbf as a string', jws({ payload: { ...base, nbf: '1' } })],
  ['nbf null', jws({ payload: { ...base, nbf: null } })],
  ['sid a number', jws({ payload: { ...base, sid: 5 } })],
  ['tid null', jws({ payload: { ...base, tid: null } })],
  ['sub an object', jws({ payload: { ...base, sub: { id: 1 } } })],
  ['jti a number (not checked for type)', jws({ payload: { ...base, jti: 7 } })],
  ['scope missing (not required)', jws({ payload: { iss: ISS, sub: 'u', tid: 't', sid: 's', iat: 1, exp: base.exp, jti: 'j' } })],
  ['a __proto__ claim', jws({ payload: `{"__proto__":{"x":1},${JSON.stringify(base).slice(1)}` })],
  ['a duplicated exp (the last wins)', jws({ payload: `{${JSON.stringify(base).slice(1, -1)},"exp":1}` })],
  ...(['iss', 'sub', 'sid', 'tid', 'exp', 'iat', 'jti'] as const).map((name): [string, string] => {
    const claims: Record<string, unknown> = { ...base };
    delete claims[name];
    return [`no ${name}`, jws({ payload: claims })];
  }),
];

describe('a session token’s first check', () => {
  afterAll(() => useEd25519('auto'));

  for (const choice of ['auto', 'node'] as const) {
    it(`answers as jose's jwtVerify did, case by case (TESSERA_ED25519=${choice})`, async () => {
      expect(useEd25519(choice).name).toBe(choice === 'auto' ? 'libsodium' : 'node:crypto');
      for (const [name, token] of agreeing) {
        const [b, a] = [await before(token), await after(token)];
        expect({ name, ...a }).toEqual({ name, ...b });
      }
      // At the expiry boundary, millisecond by millisecond.
      const t = jws({});
      for (const now of [base.exp * 1000 - 1001, base.exp * 1000 - 1, base.exp * 1000, base.exp * 1000 + 1, base.exp * 1000 + 999]) {
        expect({ now, ...(await after(t, now)) }).toEqual({ now, ...(await before(t, now)) });
      }
      // A `now` that is not a finite number: every expiry comparison with it is false, and jose
      // refused; so must the first check (it is not a time at which anything is valid).
      const expired = jws({ payload: { ...base, exp: 1 } });
      for (const now of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        for (const token of [t, expired]) {
          expect({ now, ...(await after(token, now)) }).toEqual({ now, ...(await before(token, now)) });
          expect({ now, ...(await after(token, now)) }).toEqual({ now, ok: false, message: 'The token is invalid or has expired.' });
        }
      }
      // Another issuer expected than the token's.
      expect(await after(t, NOW, 'https://other.test')).toEqual(await before(t, NOW, 'https://other.test'));
    });

    it(`accepts every token our signer writes and refuses every changed one (TESSERA_ED25519=${choice})`, async () => {
      useEd25519(choice);
      const signingRing = { signing: () => ({ kid: KID, key: privateKey }) } as unknown as KeyRing;
      for (let i = 0; i < 60; i++) {
        const claims: SessionTokenClaims = { ...base, sub: randomBytes(randomInt(1, 30)).toString('hex'), sid: `s-${i}`, jti: randomBytes(16).toString('base64url'), scope: i % 2 ? 'session' : 'session role:admin ü€' };
        const token = signSessionTokenSync(signingRing, claims);
        const a = await after(token);
        expect(a).toEqual({ ok: true, claims });
        expect(a).toEqual(await before(token));
        // Each character changed to another of the alphabet: refused, by both.
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
        for (let k = 0; k < 12; k++) {
          const at = randomInt(token.length);
          if (token[at] === '.') continue;
          const changed = token.slice(0, at) + alphabet[(alphabet.indexOf(token[at]!) + randomInt(1, 64)) % 64] + token.slice(at + 1);
          const sameBytes = at === token.length - 1 && Buffer.from(changed.slice(changed.lastIndexOf('.') + 1), 'base64url').equals(Buffer.from(token.slice(token.lastIndexOf('.') + 1), 'base64url'));
          const mine = await after(changed);
          expect({ changed, ok: mine.ok }).toEqual({ changed, ok: false });
          if (!sameBytes) expect({ changed, ok: (await before(changed)).ok }).toEqual({ changed, ok: false });
        }
      }
    });

    it(`refuses what jose accepted but our signer never writes (TESSERA_ED25519=${choice})`, async () => {
      useEd25519(choice);
      const good = jws({});
      const [h, p, s] = good.split('.') as [string, string, string];
      // The signature's last character with bits set that encode nothing (86 characters carry
      // 516 bits for 512): the same 64 bytes.
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const loose = `${h}.${p}.${s.slice(0, -1)}${alphabet[alphabet.indexOf(s.at(-1)!) + 1]}`;
      expect(Buffer.from(loose.split('.')[2]!, 'base64url').equals(Buffer.from(s, 'base64url'))).toBe(true);
      // A payload part whose length leaves room for padding (trailing spaces are JSON white space).
      let text = JSON.stringify(base);
      while (b64(text).length % 4 === 0) text += ' ';
      const padded = b64(text) + '='.repeat(4 - (b64(text).length % 4));
      const cases = [
        ['crit b64 true', jws({ header: { alg: 'EdDSA', kid: KID, crit: ['b64'], b64: true } })],
        ['padding in the payload part', jws({ encodedPayload: padded })],
        ['a non-canonical last signature character', loose],
      ] as const;
      for (const [name, token] of cases) {
        expect({ name, ...(await before(token)) }).toMatchObject({ name, ok: true });
        expect({ name, ...(await after(token)) }).toEqual({ name, ok: false, message: 'The token is invalid or has expired.' });
      }
    });

    it(`refuses a non-canonical S and a small-order key's universal signature (TESSERA_ED25519=${choice})`, async () => {
      useEd25519(choice);
      const token = jws({});
      const [h, p, s] = token.split('.') as [string, string, string];
      const sig = Buffer.from(s, 'base64url');
      // S + L, the group order: the same point arithmetic, an encoding RFC 8032 refuses.
      const L = 2n ** 252n + 27742317777372353535851937790883648493n;
      const S = BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString('hex')}`) + L;
      const sPlusL = Buffer.from(S.toString(16).padStart(64, '0'), 'hex').reverse();
      const nonCanonical = `${h}.${p}.${Buffer.concat([sig.subarray(0, 32), sPlusL]).toString('base64url')}`;
      expect(await after(nonCanonical)).toEqual({ ok: false, message: 'The token is invalid or has expired.' });
      expect((await before(nonCanonical)).ok).toBe(false);
      // The identity point as public key, R the identity and S = 0: "valid" for any message
      // under the bare equation; refused.
      const identity = Buffer.alloc(32);
      identity[0] = 1;
      const weak = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: identity.toString('base64url') }, format: 'jwk' });
      const universal = `${h}.${p}.${Buffer.concat([identity, Buffer.alloc(32)]).toString('base64url')}`;
      expect(await after(universal, NOW, ISS, weak)).toEqual({ ok: false, message: 'The token is invalid or has expired.' });
      expect((await before(universal, NOW, ISS, weak)).ok).toBe(false);
    });
  }

  it('refuses a non-finite now also for a token this process signed or verified before', async () => {
    const signingRing = { signing: () => ({ kid: KID, key: privateKey }) } as unknown as KeyRing;
    const expiredClaims: SessionTokenClaims = { ...base, sid: 's-expired', exp: 1 };
    const token = signSessionTokenSync(signingRing, expiredClaims);
    // Remembered as verified: at a real time it is refused as expired, at NaN it must be too.
    await expect(verifySessionToken(signingRing, token, ISS, NOW)).rejects.toThrow('The token is invalid or has expired.');
    for (const now of [Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => verifiedSessionToken(signingRing, token, ISS, now)).toThrow('The token is invalid or has expired.');
      await expect(verifySessionToken(signingRing, token, ISS, now)).rejects.toThrow('The token is invalid or has expired.');
      expect(() => stillVerified(expiredClaims, ISS, now)).toThrow('The token is invalid or has expired.');
    }
  });

  it('refuses a header part of length 4k+1, as jose did', async () => {
    const h = b64(padTo4(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: KID })));
    for (const stray of ['A', 'Q', '_']) {
      const token = jws({ encodedHeader: `${h}${stray}` });
      expect((await before(token)).ok).toBe(false);
      expect((await after(token)).ok).toBe(false);
    }
  });

  it('keeps the earlier refusals: malformed, no key id, unknown key', async () => {
    const t = jws({});
    const cases: [string, string][] = [
      ['x'.repeat(4097), 'The token is malformed.'],
      ['a.b', 'The token is malformed.'],
      [`${t}.x`, 'The token is malformed.'],
      [`!!!.${t.split('.')[1]}.${t.split('.')[2]}`, 'The token is malformed.'],
      [jws({ header: '[1]' }), 'The token is malformed.'],
      [jws({ header: { alg: 'EdDSA' } }), 'The token has no key id.'],
      [jws({ header: { alg: 'EdDSA', kid: 5 } }), 'The token has no key id.'],
      [jws({ header: { alg: 'EdDSA', kid: 'other' } }), 'The token was signed by an unknown key.'],
    ];
    for (const [token, message] of cases) expect(await after(token)).toEqual({ ok: false, message });
  });
});
