// src/tokens/ed25519.ts: libsodium's Ed25519 gives node:crypto's bytes (RFC 8032 signatures are
// deterministic), verifies what node:crypto signed and refuses what was changed; node:crypto is
// used when the addon does not load, when its check fails, or when asked for.

import { createPrivateKey, generateKeyPairSync, randomBytes, randomInt, sign, verify, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { MetaStore } from '../../src/store/meta-port.ts';
import { KeyRing } from '../../src/tokens/key-ring.ts';
import { signSessionTokenSync, verifySessionToken } from '../../src/tokens/session-token.ts';
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
      ...real,
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

  it('falls back when libsodium accepts what it must refuse, each check with its own reason', () => {
    const real = createRequire(import.meta.url)('sodium-native') as SodiumSign;
    // What the check last had signed: a verify that ignores its message or its key uses these.
    let signed: { m: Uint8Array; pk: Uint8Array } = { m: Buffer.alloc(0), pk: Buffer.alloc(32) };
    const recording: SodiumSign = {
      ...real,
      crypto_sign_seed_keypair: (pk, sk, seed) => real.crypto_sign_seed_keypair(pk, sk, seed),
      crypto_sign_detached: (sig, m, sk) => {
        real.crypto_sign_detached(sig, m, sk);
        signed = { m: Buffer.from(m), pk: Buffer.from(sk.subarray(32)) };
      },
    };
    const cases: [string, SodiumSign['crypto_sign_verify_detached'], string][] = [
      ['always yes', () => true, 'libsodium accepted an Ed25519 signature with one bit flipped'],
      ['a truthy non-boolean', () => 1 as unknown as boolean, "libsodium refused node:crypto's valid Ed25519 signature"],
      ['undefined', () => undefined as unknown as boolean, "libsodium refused node:crypto's valid Ed25519 signature"],
      ['always no', () => false, "libsodium refused node:crypto's valid Ed25519 signature"],
      ['ignores the message', (sig, _m, pk) => real.crypto_sign_verify_detached(sig, signed.m, pk), 'libsodium accepted an Ed25519 signature for another message'],
      ['ignores the public key', (sig, m) => real.crypto_sign_verify_detached(sig, m, signed.pk), "libsodium accepted an Ed25519 signature under another key's public key"],
    ];
    for (const [name, verifyFn, reason] of cases) {
      for (let round = 0; round < 5; round++) {
        const impl = loadLibsodium(() => ({ ...recording, crypto_sign_verify_detached: verifyFn }));
        expect({ name, impl: impl.name, reason: impl.fallbackReason }).toEqual({ name, impl: 'node:crypto', reason });
      }
    }
    // The real one passes every check.
    expect(loadLibsodium(() => recording).name).toBe('libsodium');
  });

  it('keeps one secret-key copy per kid in sodium_malloc memory, reused across reloads and zeroed when replaced or evicted', () => {
    const real = createRequire(import.meta.url)('sodium-native') as SodiumSign;
    const copies: Buffer[] = [];
    const zeroed: Uint8Array[] = [];
    const counting: SodiumSign = {
      ...real,
      sodium_malloc: (size) => {
        const b = real.sodium_malloc(size);
        copies.push(b);
        return b;
      },
      sodium_memzero: (b) => {
        zeroed.push(b);
        real.sodium_memzero(b);
      },
    };
    const impl = loadLibsodium(() => counting);
    expect(impl.name).toBe('libsodium');
    // The start-up check's throwaway key: zeroed once the check is done.
    expect(copies).toHaveLength(1);
    expect(copies[0]!.every((b) => b === 0)).toBe(true);
    copies.length = 0;
    const message = Buffer.from('a.b');
    const { privateKey } = generateKeyPairSync('ed25519');
    const jwk = privateKey.export({ format: 'jwk' });
    // A ring reload: a new key object for the same key and kid finds the same copy.
    const reloads = Array.from({ length: 6 }, () => createPrivateKey({ key: jwk, format: 'jwk' }));
    for (const key of reloads) expect(impl.sign(message, key, 'k1').equals(sign(null, message, privateKey))).toBe(true);
    expect(copies).toHaveLength(1);
    const first = copies[0]!;
    expect((first as Buffer & { secure?: boolean }).secure).toBe(true);
    expect(first.some((b) => b !== 0)).toBe(true);
    // The seed comes from a PKCS#8 DER export, zeroed once read; no JWK of the private key.
    const fresh = generateKeyPairSync('ed25519').privateKey;
    const exportSpy = vi.spyOn(Object.getPrototypeOf(fresh) as KeyObject, 'export');
    try {
      impl.sign(message, fresh, 'k2');
      const formats = exportSpy.mock.calls.map(([options]) => (options as { format?: string }).format);
      expect(formats).not.toContain('jwk');
      const der = exportSpy.mock.results.find((_, i) => (exportSpy.mock.calls[i]![0] as { type?: string }).type === 'pkcs8')!.value as Buffer;
      expect(der).toHaveLength(48);
      expect(der.every((b) => b === 0)).toBe(true);
    } finally {
      exportSpy.mockRestore();
    }
    expect(copies).toHaveLength(2);
    // The same kid with another key (a ring rebuilt): the old copy is zeroed.
    const replacement = generateKeyPairSync('ed25519').privateKey;
    expect(impl.sign(message, replacement, 'k1').equals(sign(null, message, replacement))).toBe(true);
    expect(copies).toHaveLength(3);
    expect(first.every((b) => b === 0)).toBe(true);
    // ... and the earlier key objects of k1 still sign correctly (they derive again).
    expect(impl.sign(message, reloads[0]!, 'k1').equals(sign(null, message, privateKey))).toBe(true);
    // Beyond 16 kids the oldest copy is zeroed; its key still signs correctly afterwards.
    const many = Array.from({ length: 20 }, () => generateKeyPairSync('ed25519').privateKey);
    copies.length = 0;
    many.forEach((key, i) => impl.sign(message, key, `m${i}`));
    expect(copies).toHaveLength(20);
    expect(copies.slice(0, 4).every((c) => c.every((b) => b === 0))).toBe(true);
    expect(copies.slice(4).every((c) => c.some((b) => b !== 0))).toBe(true);
    expect(impl.sign(message, many[0]!, 'm0').equals(sign(null, message, many[0]!))).toBe(true);
    expect(zeroed.length).toBeGreaterThan(0);
  });

  it('signs after key ring reloads and a rotation without deriving the secret key again', async () => {
    const real = createRequire(import.meta.url)('sodium-native') as SodiumSign;
    let derivations = 0;
    useEd25519('auto', () => ({
      ...real,
      crypto_sign_seed_keypair: (pk, sk, seed) => {
        derivations++;
        real.crypto_sign_seed_keypair(pk, sk, seed);
      },
    }));
    const meta = new Map<string, unknown>();
    const store = {
      getMeta: async (k: string) => structuredClone(meta.get(k) ?? null),
      putMetaIfAbsent: async (k: string, v: unknown) => {
        if (!meta.has(k)) meta.set(k, structuredClone(v));
        return structuredClone(meta.get(k));
      },
      putMeta: async (k: string, v: unknown) => {
        meta.set(k, structuredClone(v));
      },
    } as unknown as MetaStore;
    const ISS = 'https://t.test';
    let now = 1_765_000_000_000;
    const claims = (i: number) => ({ iss: ISS, sub: 'u', tid: 't', sid: `s${i}`, scope: 'session', iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 900, jti: `j${i}` });
    const signer = new KeyRing(store, 'x'.repeat(64));
    await signer.load(now);
    const verifier = new KeyRing(store, 'x'.repeat(64));
    await verifier.load(now);
    const t1 = signSessionTokenSync(signer, claims(1));
    const afterFirst = derivations;
    for (let i = 0; i < 5; i++) {
      now += 6000;
      await signer.load(now);
      signSessionTokenSync(signer, claims(10 + i));
    }
    expect(derivations).toBe(afterFirst);
    await KeyRing.rotate(store, 'x'.repeat(64), now);
    now += 6000;
    await signer.load(now);
    const t2 = signSessionTokenSync(signer, claims(2));
    expect(derivations).toBe(afterFirst + 1);
    expect((await verifySessionToken(verifier, t2, ISS, now)).sid).toBe('s2');
    expect((await verifySessionToken(verifier, t1, ISS, now)).sid).toBe('s1');
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
