// Ed25519 (RFC 8032) signatures for the session tokens: libsodium's (the `sodium-native` addon,
// prebuilt for the usual platforms inside its npm package) where it loads, node:crypto's
// otherwise. Both compute the same function: Ed25519 is deterministic, so a key and a message
// give the same 64 bytes from either — which the grace window's "same pair again" relies on
// (src/sessions/app-sessions.ts), and which `loadLibsodium` checks once before it is used.
// libsodium signs in about half of node:crypto's CPU time (docs/performance.md "Ed25519 by
// libsodium"). The choice is made once per process (TESSERA_ED25519, src/runtime.ts logs it).

import { createRequire } from 'node:module';
import { randomBytes, sign as nodeSign, verify as nodeVerify, generateKeyPairSync, type KeyObject } from 'node:crypto';

export type Ed25519Choice = 'auto' | 'node';

export interface Ed25519 {
  /** `libsodium` or `node:crypto`. */
  readonly name: 'libsodium' | 'node:crypto';
  /** Why libsodium is not used (null when it is, or when node:crypto was asked for). */
  readonly fallbackReason: string | null;
  /** The 64-byte signature of `message` by an Ed25519 private key. */
  sign(message: Uint8Array, privateKey: KeyObject): Buffer;
  /** Whether `signature` is a valid signature of `message` by an Ed25519 public key. */
  verify(message: Uint8Array, signature: Uint8Array, publicKey: KeyObject): boolean;
}

/** The part of sodium-native's API used here. */
export interface SodiumSign {
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
}

const SIGNATURE_BYTES = 64;

const nodeEd25519 = (fallbackReason: string | null): Ed25519 => ({
  name: 'node:crypto',
  fallbackReason,
  sign: (message, privateKey) => nodeSign(null, message, privateKey),
  verify: (message, signature, publicKey) => signature.length === SIGNATURE_BYTES && nodeVerify(null, message, publicKey, signature),
});

function ed25519Jwk(key: KeyObject, type: 'private' | 'public'): { d?: string; x: string } {
  if (key.type !== type || key.asymmetricKeyType !== 'ed25519') throw new TypeError(`an Ed25519 ${type} key is required`);
  return key.export({ format: 'jwk' }) as { d?: string; x: string };
}

function libsodiumEd25519(sodium: SodiumSign): Ed25519 {
  // libsodium's secret key is the 32-byte seed followed by the 32-byte public key, both from
  // the KeyObject's JWK (`d`, `x`); derived once per KeyObject. It lives in ordinary process
  // memory, as the KeyObject's own copy does.
  const secretKeys = new WeakMap<KeyObject, Buffer>();
  const publicKeys = new WeakMap<KeyObject, Buffer>();
  const secretKeyOf = (privateKey: KeyObject): Buffer => {
    let sk = secretKeys.get(privateKey);
    if (sk === undefined) {
      const jwk = ed25519Jwk(privateKey, 'private');
      const seed = Buffer.from(jwk.d ?? '', 'base64url');
      if (seed.length !== 32) throw new TypeError('an Ed25519 private key is required');
      const pk = Buffer.alloc(32);
      sk = Buffer.alloc(64);
      sodium.crypto_sign_seed_keypair(pk, sk, seed);
      seed.fill(0);
      // The public key libsodium derives from the seed is the KeyObject's own.
      if (pk.toString('base64url') !== jwk.x) throw new Error('libsodium derived another Ed25519 public key');
      secretKeys.set(privateKey, sk);
    }
    return sk;
  };
  const publicKeyOf = (publicKey: KeyObject): Buffer => {
    let pk = publicKeys.get(publicKey);
    if (pk === undefined) {
      pk = Buffer.from(ed25519Jwk(publicKey, 'public').x, 'base64url');
      if (pk.length !== 32) throw new TypeError('an Ed25519 public key is required');
      publicKeys.set(publicKey, pk);
    }
    return pk;
  };
  return {
    name: 'libsodium',
    fallbackReason: null,
    sign(message, privateKey) {
      const signature = Buffer.allocUnsafe(SIGNATURE_BYTES);
      sodium.crypto_sign_detached(signature, message, secretKeyOf(privateKey));
      return signature;
    },
    verify(message, signature, publicKey) {
      const pk = publicKeyOf(publicKey);
      return signature.length === SIGNATURE_BYTES && sodium.crypto_sign_verify_detached(signature, message, pk);
    },
  };
}

const requireHere = createRequire(import.meta.url);
const loadSodiumNative = (): SodiumSign => requireHere('sodium-native') as SodiumSign;

/**
 * libsodium's Ed25519, once it has given node:crypto's bytes for a fresh key and message and
 * each has verified the other's signature; node:crypto's when the addon does not load or that
 * check fails (`fallbackReason` says why; it holds no key material).
 */
export function loadLibsodium(load: () => SodiumSign = loadSodiumNative): Ed25519 {
  let candidate: Ed25519;
  try {
    candidate = libsodiumEd25519(load());
  } catch (err) {
    return nodeEd25519(`sodium-native did not load: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  try {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const message = randomBytes(200);
    const theirs = nodeSign(null, message, privateKey);
    const mine = candidate.sign(message, privateKey);
    if (!mine.equals(theirs) || !candidate.verify(message, theirs, publicKey) || !nodeVerify(null, message, publicKey, mine)) {
      return nodeEd25519('libsodium and node:crypto gave different Ed25519 signatures');
    }
  } catch (err) {
    return nodeEd25519(`libsodium's Ed25519 failed its check: ${err instanceof Error ? err.message : String(err)}`);
  }
  return candidate;
}

/** The implementation for a choice: `node` forces node:crypto; `auto` prefers libsodium. */
export function ed25519For(choice: Ed25519Choice, load?: () => SodiumSign): Ed25519 {
  if (choice === 'node') return nodeEd25519(null);
  if (load !== undefined) return loadLibsodium(load);
  return (auto ??= loadLibsodium());
}

/** `auto` with the real addon: loaded and checked once per process. */
let auto: Ed25519 | null = null;
let current: Ed25519 | null = null;

/** The process's implementation (`auto` until `useEd25519` chose). */
export function ed25519(): Ed25519 {
  return (current ??= ed25519For('auto'));
}

/** Sets the process's implementation; returns it (the runtime logs its name). */
export function useEd25519(choice: Ed25519Choice, load?: () => SodiumSign): Ed25519 {
  current = ed25519For(choice, load);
  return current;
}
