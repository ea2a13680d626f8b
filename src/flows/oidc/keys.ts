// The signing keys of Tessera's OpenID provider (ID tokens, back-channel logout tokens): one
// RS256 key (RSA 2048), which OpenID Connect Discovery requires every provider to support and
// which is the default of every relying party, and one ES256 key (P-256). An application picks
// one with `idTokenSignedResponseAlg` at registration (RS256 by default); its back-channel logout
// tokens are signed with the same algorithm, so it verifies both with one setting. Kept in the
// store's meta (`oidc-signing-keys` for ES256, `oidc-signing-keys-rs256` for RS256, each created
// once by whichever process comes first) so every process signs with the same keys, the private
// keys sealed (AES-256-GCM, HKDF purpose `seal-signing-keys`) as in src/tokens/key-ring.ts.
// Separate from the session-token ring: another audience, other algorithms, rotated on their own.

import { createPrivateKey, generateKeyPairSync, randomBytes, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { MetaStore } from '../../store/meta-port.ts';
import { deriveKey, seal, unseal, WrongServerSecret } from '../../tokens/sealing.ts';

export const OIDC_SIGNING_ALGS = ['RS256', 'ES256'] as const;
export type OidcSigningAlg = (typeof OIDC_SIGNING_ALGS)[number];
/** What an application gets when its registration names no algorithm (OpenID Connect Registration 1.0). */
export const DEFAULT_OIDC_SIGNING_ALG: OidcSigningAlg = 'RS256';
const META_KEY: Record<OidcSigningAlg, string> = { ES256: 'oidc-signing-keys', RS256: 'oidc-signing-keys-rs256' };

interface StoredOidcKey {
  kid: string;
  alg: OidcSigningAlg;
  publicJwk: JsonWebKey;
  sealedPrivateJwk: string;
  createdAt: number;
}

export interface OidcSigningKey {
  kid: string;
  alg: OidcSigningAlg;
  /** The private JWK with kid/alg/use, for oidc-provider's `jwks`. */
  privateJwk: JsonWebKey & { kid: string; alg: string; use: string };
  privateKey: KeyObject;
}

function newKey(sealKey: KeyObject, alg: OidcSigningAlg, now: number): StoredOidcKey {
  const { privateKey, publicKey } = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `oidc-${alg === 'ES256' ? '' : 'rs-'}${new Date(now).toISOString().slice(0, 10)}.${randomBytes(6).toString('base64url')}`;
  return {
    kid,
    alg,
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    sealedPrivateJwk: seal(sealKey, JSON.stringify(privateKey.export({ format: 'jwk' }))),
    createdAt: now,
  };
}

/**
 * Loads the provider's signing keys of every algorithm, creating the first key of an algorithm
 * when there is none (race-safe). Newest first within an algorithm: oidc-provider signs with the
 * first key of `jwks` that fits the algorithm.
 */
export async function loadOidcSigningKeys(store: MetaStore, serverSecret: string, now: number): Promise<OidcSigningKey[]> {
  const sealKey = deriveKey(serverSecret, 'seal-signing-keys');
  const out: OidcSigningKey[] = [];
  for (const alg of OIDC_SIGNING_ALGS) {
    let ring = (await store.getMeta(META_KEY[alg])) as StoredOidcKey[] | null;
    if (!ring || ring.length === 0) ring = (await store.putMetaIfAbsent(META_KEY[alg], [newKey(sealKey, alg, now)])) as StoredOidcKey[];
    out.push(...[...ring].reverse().map((k) => unsealKey(sealKey, k)));
  }
  return out;
}

/** The newest key of `alg`. */
export function signingKeyFor(keys: readonly OidcSigningKey[], alg: OidcSigningAlg): OidcSigningKey {
  const key = keys.find((k) => k.alg === alg);
  if (!key) throw new Error(`no OIDC signing key for ${alg}`);
  return key;
}

function unsealKey(sealKey: KeyObject, k: StoredOidcKey): OidcSigningKey {
  let jwk: JsonWebKey;
  try {
    jwk = JSON.parse(unseal(sealKey, k.sealedPrivateJwk)) as JsonWebKey;
  } catch {
    throw new WrongServerSecret(`OIDC signing key ${k.kid} cannot be unsealed: COOKIE_SECRET_SIGN_KEY differs from the one it was created with`);
  }
  return { kid: k.kid, alg: k.alg, privateJwk: { ...jwk, kid: k.kid, alg: k.alg, use: 'sig' }, privateKey: createPrivateKey({ key: jwk, format: 'jwk' }) };
}
