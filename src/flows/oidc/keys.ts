// The signing key of Tessera's OpenID provider (ID tokens, back-channel logout tokens): ES256,
// which every OIDC relying party supports (openid-client, and the many that lack EdDSA). Kept in
// the store's meta `oidc-signing-keys` so every process signs with the same key, the private key
// sealed (AES-256-GCM, HKDF purpose `seal-signing-keys`) as in src/tokens/key-ring.ts. Separate
// from the session-token ring: another audience, another algorithm, rotated on its own.

import { createPrivateKey, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { SessionStore } from '../../store/port.ts';
import { deriveKey, seal, unseal } from '../../tokens/sealing.ts';

export const OIDC_KEYS_META = 'oidc-signing-keys';
export const OIDC_SIGNING_ALG = 'ES256';

interface StoredOidcKey {
  kid: string;
  alg: typeof OIDC_SIGNING_ALG;
  publicJwk: JsonWebKey;
  sealedPrivateJwk: string;
  createdAt: number;
}

export interface OidcSigningKey {
  kid: string;
  /** The private JWK with kid/alg/use, for oidc-provider's `jwks`. */
  privateJwk: JsonWebKey & { kid: string; alg: string; use: string };
  privateKey: KeyObject;
}

function newKey(sealKey: KeyObject, now: number): StoredOidcKey {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = `oidc-${new Date(now).toISOString().slice(0, 10)}.${randomBytes(6).toString('base64url')}`;
  return {
    kid,
    alg: OIDC_SIGNING_ALG,
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: OIDC_SIGNING_ALG, use: 'sig' },
    sealedPrivateJwk: seal(sealKey, JSON.stringify(privateKey.export({ format: 'jwk' }))),
    createdAt: now,
  };
}

/** Loads the provider's signing keys, creating the first one when there is none (race-safe). */
export async function loadOidcSigningKeys(store: SessionStore, serverSecret: string, now: number): Promise<OidcSigningKey[]> {
  const sealKey = deriveKey(serverSecret, 'seal-signing-keys');
  let ring = (await store.getMeta(OIDC_KEYS_META)) as StoredOidcKey[] | null;
  if (!ring || ring.length === 0) ring = (await store.putMetaIfAbsent(OIDC_KEYS_META, [newKey(sealKey, now)])) as StoredOidcKey[];
  // Newest first: oidc-provider signs with the first key of `jwks` that fits the algorithm.
  return [...ring].reverse().map((k) => {
    let jwk: JsonWebKey;
    try {
      jwk = JSON.parse(unseal(sealKey, k.sealedPrivateJwk)) as JsonWebKey;
    } catch {
      throw new Error(`OIDC signing key ${k.kid} cannot be unsealed: COOKIE_SECRET_SIGN_KEY differs from the one it was created with`);
    }
    return { kid: k.kid, privateJwk: { ...jwk, kid: k.kid, alg: k.alg, use: 'sig' }, privateKey: createPrivateKey({ key: jwk, format: 'jwk' }) };
  });
}
