// Keys derived from the server secret (COOKIE_SECRET_SIGN_KEY) by HKDF, one per purpose, and
// AES-256-GCM sealing for the few secrets a store must hold retrievably (JWT signing keys).

import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';

export type KeyPurpose = 'seal-signing-keys' | 'refresh-successor' | 'renew-successor' | 'xsrf' | 'cookie-signing' | 'seal-client-secrets' | 'sso-session' | 'seal-bank-keys' | 'oidc-record-ids' | 'seal-oidc-records' | 'transfer-check';

/**
 * A 256-bit key for one purpose, as a KeyObject: HMAC with a KeyObject is several times faster
 * than with a Buffer (no key import per call), and these run on every request.
 */
export function deriveKey(serverSecret: string, purpose: KeyPurpose): KeyObject {
  return createSecretKey(Buffer.from(hkdfSync('sha256', Buffer.from(serverSecret, 'utf8'), Buffer.from('tessera/v1'), purpose, 32)));
}

/** A keyed one-way function: HMAC-SHA256, base64url. Used to derive deterministic successors. */
export function keyedDigest(key: KeyObject, message: string): string {
  return createHmac('sha256', key).update(message, 'utf8').digest('base64url');
}

/**
 * Data sealed under another server secret: the configured COOKIE_SECRET_SIGN_KEY is not the one
 * the store was set up with (a configuration mistake; the CLI exits 2 naming the variable).
 */
export class WrongServerSecret extends Error {
  readonly variable = 'COOKIE_SECRET_SIGN_KEY';
}

/**
 * AES-256-GCM with a random IV. `aad` (additional authenticated data) binds the sealed value to
 * where it is stored: opened with another `aad`, it fails like a tampered one.
 */
export function seal(key: KeyObject, plaintext: string, aad?: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  if (aad !== undefined) cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), body.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

export function unseal(key: KeyObject, sealed: string, aad?: string): string {
  const [v, iv, body, tag] = sealed.split('.');
  if (v !== 'v1' || !iv || body === undefined || !tag) throw new Error('not a sealed value');
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
  if (aad !== undefined) decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
}
