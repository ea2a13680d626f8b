// src/tokens/ed25519.ts: libsodium's Ed25519 gives node:crypto's bytes (RFC 8032 signatures are
// deterministic), verifies what node:crypto signed and refuses what was changed; node:crypto is
// used when the addon does not load, when its check fails, or when asked for.

import { createPrivateKey, generateKeyPairSync, randomBytes, randomInt, sign, verify, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { ed25519, ed25519For, loadLibsodium, useEd25519, type Ed25519, type SodiumSign } from '../../src/tokens/ed25519.ts';

const keys = (n: number) => Array.from({ length: n }, () => generateKeyPairSync('ed25519'));

/** RFC 8032 §7.1 TEST 3: a known seed, public key, two-byte message and signature. */
const RFC8032 = {
  privateJwk: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from('c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7', 'hex').toString('base64url'), x: Buffer.from('fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'hex').toString('base64url') },
  message: Buffer.from('af82', 'hex'),
  signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
};

describe('Ed25519 implementations', () => {
  afterAll(() => useEd25519('auto'));

  const libsodium = loadLibsodium();
  const forced = ed25519For('node');
  const failedLoad = loadLibsodium(() => {
    throw new Error('No native build was found for platform=test');
  });

  it('loads libsodium here (the addon ships prebuilt for this platform) and is what `auto` gives', () => {
    expect(libsodium.name).toBe('libsodium');
    expect(libsodium.fallbackReason).toBeNull();
    expect(ed25519For('auto').name).toBe('libsodium');
    expect(useEd25519('auto')).toBe(ed25519());
  });

  it('falls back to node:crypto when the addon does not load, saying why', () => {
    expect(failedLoad.name).toBe('node:crypto');
    expect(failedLoad.fallbackReason).toBe('sodium-native did not load: No native build was found for platform=test');
    expect(forced.name).toBe('node:crypto');
    expect(forced.fallbackReason).toBeNull();
    expect(useEd25519('node').name).toBe('node:crypto');
    expect(ed25519().name).toBe('node:crypto');
  });

  it('falls back when the loaded library signs other bytes than node:crypto, or throws', () => {
    const real = createRequire(import.meta.url)('sodium-native') as SodiumSign;
    const wrong: SodiumSign = {
      crypto_sign_seed_keypair: (pk, sk, seed) => real.crypto_sign_seed_keypair(pk, sk, seed),
      crypto_sign_detached: (sig, m, sk) => {
        real.crypto_sign_detached(sig, m, sk);
        sig[0] = (sig[0] ?? 0) ^ 1;
      },
      crypto_sign_verify_detached: (sig, m, pk) => real.crypto_sign_verify_detached(sig, m, pk),
    };
    const a = loadLibsodium(() => wrong);
    expect(a.name).toBe('node:crypto');
    expect(a.fallbackReason).toBe('libsodium and node:crypto gave different Ed25519 signatures');
    const throwing: SodiumSign = { ...wrong, crypto_sign_detached: () => { throw new Error('status: -1'); } };
    const b = loadLibsodium(() => throwing);
    expect(b.name).toBe('node:crypto');
    expect(b.fallbackReason).toBe("libsodium's Ed25519 failed its check: status: -1");
  });

  it('gives RFC 8032’s test vector', () => {
    const key = createPrivateKey({ key: RFC8032.privateJwk, format: 'jwk' });
    for (const impl of [libsodium, forced, failedLoad]) {
      expect(impl.sign(RFC8032.message, key).toString('hex')).toBe(RFC8032.signature);
    }
  });

  it('signs byte for byte as node:crypto does, for many keys and messages of every length up to 2 KB', () => {
    for (const { privateKey, publicKey } of keys(40)) {
      for (let i = 0; i < 25; i++) {
        const message = randomBytes(i === 0 ? 0 : randomInt(1, 2048));
        const theirs = sign(null, message, privateKey);
        for (const impl of [libsodium, forced, failedLoad]) {
          const mine = impl.sign(message, privateKey);
          expect(mine.equals(theirs)).toBe(true);
          expect(impl.verify(message, theirs, publicKey)).toBe(true);
        }
        expect(verify(null, message, publicKey, libsodium.sign(message, privateKey))).toBe(true);
      }
    }
  });

  it('refuses a changed message, a changed signature, another key and a signature of the wrong length', () => {
    const [{ privateKey, publicKey }, other] = keys(2) as [{ privateKey: KeyObject; publicKey: KeyObject }, { publicKey: KeyObject }];
    const message = Buffer.from('eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0');
    const signature = sign(null, message, privateKey);
    const all: Ed25519[] = [libsodium, forced];
    for (const impl of all) {
      expect(impl.verify(message, signature, other.publicKey)).toBe(false);
      expect(impl.verify(message, signature.subarray(0, 63), publicKey)).toBe(false);
      expect(impl.verify(message, Buffer.concat([signature, Buffer.alloc(1)]), publicKey)).toBe(false);
      expect(impl.verify(message, Buffer.alloc(64), publicKey)).toBe(false);
      for (let i = 0; i < message.length; i++) {
        const m = Buffer.from(message);
        m[i] = (m[i] ?? 0) ^ (1 << (i % 8));
        expect(impl.verify(m, signature, publicKey)).toBe(false);
      }
      for (let i = 0; i < 64; i++) {
        const s = Buffer.from(signature);
        s[i] = (s[i] ?? 0) ^ (1 << (i % 8));
        expect(impl.verify(message, s, publicKey)).toBe(false);
      }
    }
  });

  it('refuses keys that are not Ed25519 keys of the right kind', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ed = generateKeyPairSync('ed25519');
    expect(() => libsodium.sign(Buffer.from('x'), privateKey)).toThrow(TypeError);
    expect(() => libsodium.sign(Buffer.from('x'), ed.publicKey)).toThrow(TypeError);
    expect(() => libsodium.verify(Buffer.from('x'), Buffer.alloc(64), publicKey)).toThrow(TypeError);
    expect(() => libsodium.verify(Buffer.from('x'), Buffer.alloc(64), ed.privateKey)).toThrow(TypeError);
  });
});
