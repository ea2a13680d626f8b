// Ed25519 (RFC 8032) signatures for the session tokens: libsodium's (the `sodium-native` addon,
// prebuilt for the usual platforms inside its npm package) where it loads, node:crypto's
// otherwise. Both compute the same function: Ed25519 is deterministic, so a key and a message
// give the same 64 bytes from either — which the grace window's "same pair again" relies on
// (src/sessions/app-sessions.ts), and which `loadLibsodium` checks once before it is used.
// libsodium signs in about half of node:crypto's CPU time (docs/performance.md "Ed25519 by
// libsodium"). The choice is made once per process (TESSERA_ED25519, src/runtime.ts logs it).

import { createRequire } from 'node:module';
import { createPublicKey, generateKeyPairSync, randomBytes, randomInt, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';

export type Ed25519Choice = 'auto' | 'node';

export interface Ed25519 {
  /** `libsodium` or `node:crypto`. */
  readonly name: 'libsodium' | 'node:crypto';
  /** Why libsodium is not used (null when it is, or when node:crypto was asked for). */
  readonly fallbackReason: string | null;
  /**
   * The 64-byte signature of `message` by an Ed25519 private key; `kid`, the key ring's id of
   * that key, lets libsodium keep one secret-key copy per key across ring reloads.
   */
  sign(message: Uint8Array, privateKey: KeyObject, kid?: string): Buffer;
  /** Whether `signature` is a valid signature of `message` by an Ed25519 public key. */
  verify(message: Uint8Array, signature: Uint8Array, publicKey: KeyObject): boolean;
}

/** The part of sodium-native's API used here. */
export interface SodiumSign {
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
  /** A buffer in libsodium's guarded memory (guard pages, locked against swapping where the OS allows). */
  sodium_malloc(size: number): Buffer;
  sodium_memzero(buffer: Uint8Array): void;
}

const SIGNATURE_BYTES = 64;

const nodeEd25519 = (fallbackReason: string | null): Ed25519 => ({
  name: 'node:crypto',
  fallbackReason,
  sign: (message, privateKey) => nodeSign(null, message, privateKey),
  verify: (message, signature, publicKey) => signature.length === SIGNATURE_BYTES && nodeVerify(null, message, publicKey, signature),
});

/** An Ed25519 private key's PKCS#8 DER: these 16 bytes, then the 32-byte seed (RFC 8410 §7). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** An Ed25519 public key's SPKI DER: these 12 bytes, then the 32-byte key. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function requireEd25519(key: KeyObject, type: 'private' | 'public'): void {
  if (key.type !== type || key.asymmetricKeyType !== 'ed25519') throw new TypeError(`an Ed25519 ${type} key is required`);
}

/** The 32 bytes of an Ed25519 key object's public key (of a private key: the one it pairs with). */
function rawPublicKey(key: KeyObject): Buffer {
  const spki = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'der', type: 'spki' });
  if (spki.length !== SPKI_PREFIX.length + 32 || !spki.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX)) {
    throw new TypeError('an Ed25519 key is required');
  }
  return spki.subarray(SPKI_PREFIX.length);
}

/** libsodium's secret key for one signing key: seed then public key, in sodium_malloc memory. */
interface SecretKey {
  readonly publicKey: Buffer;
  readonly sk: Buffer;
  /** False once zeroed (replaced or evicted): a key object that still maps here derives again. */
  live: boolean;
}

/** At most this many secret keys are kept (a ring holds a few keys); the oldest is zeroed first. */
const SECRET_KEYS_MAX = 16;

interface LibsodiumEd25519 extends Ed25519 {
  /** Zeroes and forgets the secret key derived for `privateKey` (the start-up check's throwaway key). */
  discard(privateKey: KeyObject): void;
}

function libsodiumEd25519(sodium: SodiumSign): LibsodiumEd25519 {
  if (typeof sodium.sodium_malloc !== 'function' || typeof sodium.sodium_memzero !== 'function') {
    throw new Error('sodium-native lacks sodium_malloc or sodium_memzero');
  }
  // libsodium's secret key is the 32-byte seed followed by the 32-byte public key. One copy per
  // signing key (by kid, and by the public key when no kid is given), in sodium_malloc memory;
  // a key ring reload makes new key objects for the same keys, which find that copy by kid and
  // public key instead of deriving another. The seed is read from a PKCS#8 DER export (a Buffer,
  // zeroed at once), never from a JWK (a JS string nothing can zero). A copy is zeroed when its
  // kid's key changes or when it is evicted.
  const byName = new Map<string, SecretKey>();
  const byKeyObject = new WeakMap<KeyObject, SecretKey>();
  const publicKeys = new WeakMap<KeyObject, Buffer>();
  const retire = (entry: SecretKey): void => {
    entry.live = false;
    sodium.sodium_memzero(entry.sk);
  };
  const derive = (privateKey: KeyObject, publicKey: Buffer): SecretKey => {
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    try {
      if (der.length !== PKCS8_PREFIX.length + 32 || !der.subarray(0, PKCS8_PREFIX.length).equals(PKCS8_PREFIX)) {
        throw new TypeError('an Ed25519 private key is required');
      }
      const pk = Buffer.alloc(32);
      const sk = sodium.sodium_malloc(64);
      sodium.crypto_sign_seed_keypair(pk, sk, der.subarray(PKCS8_PREFIX.length));
      // The public key libsodium derives from the seed is the key object's own.
      if (!pk.equals(publicKey)) {
        sodium.sodium_memzero(sk);
        throw new Error('libsodium derived another Ed25519 public key');
      }
      return { publicKey, sk, live: true };
    } finally {
      sodium.sodium_memzero(der);
    }
  };
  const secretKeyOf = (privateKey: KeyObject, kid: string | undefined): Buffer => {
    const known = byKeyObject.get(privateKey);
    if (known !== undefined && known.live) return known.sk;
    requireEd25519(privateKey, 'private');
    const publicKey = rawPublicKey(privateKey);
    const name = kid === undefined ? `x:${publicKey.toString('base64url')}` : `kid:${kid}`;
    let entry = byName.get(name);
    if (entry === undefined || !entry.live || !entry.publicKey.equals(publicKey)) {
      const fresh = derive(privateKey, publicKey);
      if (entry !== undefined) {
        retire(entry);
        byName.delete(name);
      }
      while (byName.size >= SECRET_KEYS_MAX) {
        const [oldest, evicted] = byName.entries().next().value as [string, SecretKey];
        retire(evicted);
        byName.delete(oldest);
      }
      byName.set(name, (entry = fresh));
    }
    byKeyObject.set(privateKey, entry);
    return entry.sk;
  };
  const publicKeyOf = (publicKey: KeyObject): Buffer => {
    let pk = publicKeys.get(publicKey);
    if (pk === undefined) {
      requireEd25519(publicKey, 'public');
      pk = rawPublicKey(publicKey);
      publicKeys.set(publicKey, pk);
    }
    return pk;
  };
  return {
    name: 'libsodium',
    fallbackReason: null,
    sign(message, privateKey, kid) {
      const signature = Buffer.allocUnsafe(SIGNATURE_BYTES);
      sodium.crypto_sign_detached(signature, message, secretKeyOf(privateKey, kid));
      return signature;
    },
    verify(message, signature, publicKey) {
      const pk = publicKeyOf(publicKey);
      // Only a boolean true is a yes (a substituted function answering anything else is a no).
      return signature.length === SIGNATURE_BYTES && sodium.crypto_sign_verify_detached(signature, message, pk) === true;
    },
    discard(privateKey) {
      const entry = byKeyObject.get(privateKey);
      if (entry === undefined) return;
      byKeyObject.delete(privateKey);
      for (const [name, e] of byName) if (e === entry) byName.delete(name);
      retire(entry);
    },
  };
}

const requireHere = createRequire(import.meta.url);
const loadSodiumNative = (): SodiumSign => requireHere('sodium-native') as SodiumSign;

/**
 * libsodium's Ed25519, once it has passed a check against node:crypto with a fresh key and a
 * random message: the same signature bytes, each verifies the other's signature, and libsodium
 * refuses that signature with one bit flipped, under another message and under another key's
 * public key (a verify that always said yes would accept forged tokens). node:crypto's when the
 * addon does not load or any check fails (`fallbackReason` says which; it holds no key material).
 */
export function loadLibsodium(load: () => SodiumSign = loadSodiumNative): Ed25519 {
  let candidate: LibsodiumEd25519;
  try {
    candidate = libsodiumEd25519(load());
  } catch (err) {
    return nodeEd25519(`sodium-native did not load: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  try {
    const failure = selfTestFailure(candidate, privateKey, publicKey);
    if (failure !== null) return nodeEd25519(failure);
  } catch (err) {
    return nodeEd25519(`libsodium's Ed25519 failed its check: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    candidate.discard(privateKey);
  }
  return candidate;
}

/** Why `candidate` may not be used (each check its own reason), or null when it passes. */
function selfTestFailure(candidate: Ed25519, privateKey: KeyObject, publicKey: KeyObject): string | null {
  const message = randomBytes(200);
  const theirs = nodeSign(null, message, privateKey);
  const mine = candidate.sign(message, privateKey);
  if (!mine.equals(theirs)) return 'libsodium and node:crypto gave different Ed25519 signatures';
  if (candidate.verify(message, theirs, publicKey) !== true) return "libsodium refused node:crypto's valid Ed25519 signature";
  if (!nodeVerify(null, message, publicKey, mine)) return "node:crypto refused libsodium's Ed25519 signature";
  const flipped = Buffer.from(theirs);
  const bit = randomInt(SIGNATURE_BYTES * 8);
  flipped[bit >> 3] = (flipped[bit >> 3] ?? 0) ^ (1 << (bit & 7));
  if (candidate.verify(message, flipped, publicKey) !== false) return 'libsodium accepted an Ed25519 signature with one bit flipped';
  const otherMessage = Buffer.from(message);
  const at = randomInt(otherMessage.length);
  otherMessage[at] = (otherMessage[at] ?? 0) ^ (1 << randomInt(8));
  if (candidate.verify(otherMessage, theirs, publicKey) !== false) return 'libsodium accepted an Ed25519 signature for another message';
  const otherKey = generateKeyPairSync('ed25519').publicKey;
  if (candidate.verify(message, theirs, otherKey) !== false) return "libsodium accepted an Ed25519 signature under another key's public key";
  return null;
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

/**
 * Sets the process's implementation; returns it (the runtime logs its name). Process-wide: every
 * runtime in the process signs and verifies with the last choice (createRuntime calls this, so
 * with two runtimes in one process, as in tests, the later one's TESSERA_ED25519 wins for both).
 * Either implementation gives the same bytes, so this changes CPU cost, never a result.
 */
export function useEd25519(choice: Ed25519Choice, load?: () => SodiumSign): Ed25519 {
  current = ed25519For(choice, load);
  return current;
}
