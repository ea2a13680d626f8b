// JWT signing keys (Ed25519). The ring lives in the store (meta `signing-keys`), private keys
// sealed with a key derived from the server secret, so every Tessera process signs and verifies
// with the same keys. Rotation adds a key and retires the previous one for signing; a retired
// key keeps verifying until every token it signed has expired, so rotation logs nobody out.

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import type { MetaStore } from '../store/meta-port.ts';
import { deriveKey, seal, unseal, WrongServerSecret } from './sealing.ts';

export const KEY_RING_META = 'signing-keys';

export interface StoredKey {
  kid: string;
  alg: 'EdDSA';
  publicJwk: Record<string, unknown>;
  sealedPrivateJwk: string;
  createdAt: number;
  /** When it stopped signing; it still verifies until `retiredAt + keepRetiredMs`. */
  retiredAt: number | null;
}

interface LoadedKey {
  stored: StoredKey;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** Retired keys verify for this long (longer than any token lifetime, 24 h max). */
export const KEEP_RETIRED_MS = 25 * 3600 * 1000;

function newStoredKey(sealKey: KeyObject, now: number): StoredKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const kid = `${new Date(now).toISOString().slice(0, 10)}.${randomBytes(6).toString('base64url')}`;
  return {
    kid,
    alg: 'EdDSA',
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' },
    sealedPrivateJwk: seal(sealKey, JSON.stringify(privateKey.export({ format: 'jwk' }))),
    createdAt: now,
    retiredAt: null,
  };
}

export class KeyRing {
  private readonly store: MetaStore;
  private readonly sealKey: KeyObject;
  private keys: LoadedKey[] = [];
  /** signing()'s answer for the loaded keys (every token signed asks for it). */
  private active: { kid: string; key: KeyObject } | null = null;
  private lastLoad = 0;
  private reloading: Promise<void> | null = null;

  constructor(store: MetaStore, serverSecret: string) {
    this.store = store;
    this.sealKey = deriveKey(serverSecret, 'seal-signing-keys');
  }

  /** Loads the ring, creating the first key when the store has none (race-safe). */
  async load(now: number): Promise<void> {
    let ring = (await this.store.getMeta(KEY_RING_META)) as StoredKey[] | null;
    if (!ring || ring.length === 0) {
      ring = (await this.store.putMetaIfAbsent(KEY_RING_META, [newStoredKey(this.sealKey, now)])) as StoredKey[];
    }
    this.keys = ring.map((stored) => {
      let jwk: Record<string, unknown>;
      try {
        jwk = JSON.parse(unseal(this.sealKey, stored.sealedPrivateJwk)) as Record<string, unknown>;
      } catch {
        throw new WrongServerSecret(
          `signing key ${stored.kid} cannot be unsealed: COOKIE_SECRET_SIGN_KEY differs from the one the keys were created with`,
        );
      }
      return {
        stored,
        privateKey: createPrivateKey({ key: jwk, format: 'jwk' }),
        publicKey: createPublicKey({ key: stored.publicJwk, format: 'jwk' }),
      };
    });
    const newest = [...this.keys].reverse().find((k) => k.stored.retiredAt === null) ?? this.keys[this.keys.length - 1];
    this.active = newest ? { kid: newest.stored.kid, key: newest.privateKey } : null;
    this.lastLoad = now;
  }

  /** Reloads at most once per `minIntervalMs` (an unknown kid may be a key another process added). */
  async maybeReload(now: number, minIntervalMs = 5000): Promise<void> {
    if (now - this.lastLoad < minIntervalMs) return;
    this.reloading ??= this.load(now).finally(() => {
      this.reloading = null;
    });
    await this.reloading;
  }

  /** The newest key not retired (else the newest), as of the last load. */
  signing(): { kid: string; key: KeyObject } {
    if (this.active === null) throw new Error('key ring not loaded');
    return this.active;
  }

  verification(kid: string, now: number): KeyObject | null {
    const k = this.keys.find((x) => x.stored.kid === kid);
    if (!k) return null;
    if (k.stored.retiredAt !== null && now > k.stored.retiredAt + KEEP_RETIRED_MS) return null;
    return k.publicKey;
  }

  /** The public keys that still verify, as a JWKS document. */
  jwks(now: number): { keys: Record<string, unknown>[] } {
    return {
      keys: this.keys
        .filter((k) => k.stored.retiredAt === null || now <= k.stored.retiredAt + KEEP_RETIRED_MS)
        .map((k) => k.stored.publicJwk),
    };
  }

  /**
   * Adds a new signing key, retires the current one, and drops keys retired long enough ago that
   * nothing they signed can still be valid. Returns the new kid.
   */
  static async rotate(store: MetaStore, serverSecret: string, now: number): Promise<{ kid: string; retired: string[] }> {
    const sealKey = deriveKey(serverSecret, 'seal-signing-keys');
    const ring = ((await store.getMeta(KEY_RING_META)) as StoredKey[] | null) ?? [];
    const retired: string[] = [];
    const kept = ring
      .filter((k) => k.retiredAt === null || now <= k.retiredAt + KEEP_RETIRED_MS)
      .map((k) => {
        if (k.retiredAt !== null) return k;
        retired.push(k.kid);
        return { ...k, retiredAt: now };
      });
    const fresh = newStoredKey(sealKey, now);
    await store.putMeta(KEY_RING_META, [...kept, fresh]);
    return { kid: fresh.kid, retired };
  }
}
