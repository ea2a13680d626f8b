// Banks of a tenant (issue 15): where a consent redirect goes, by which protocol, and with which
// TLS material. Pure data and rules. The client key is held sealed (AES-256-GCM, key
// `seal-bank-keys`); the certificates are public and kept as given (PEM).

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { BadRequest } from './errors.ts';

export const BANK_PROTOCOLS = ['berlin-group'] as const;
export type BankProtocol = (typeof BANK_PROTOCOLS)[number];

/** Per-call timeout when a bank names none, and the bounds an administrator may choose from. */
export const DEFAULT_BANK_TIMEOUT_MS = 10_000;
export const MIN_BANK_TIMEOUT_MS = 100;
export const MAX_BANK_TIMEOUT_MS = 60_000;

export interface BankTls {
  /** PEM; sent to the bank when it asks for a client certificate (mutual TLS). */
  clientCertificate: string | null;
  /** The client certificate's private key, sealed. Never returned by the API. */
  sealedClientKey: string | null;
  /** PEM; trusted to verify the bank's server certificate instead of the system's CAs. */
  caCertificate: string | null;
}

export interface Bank {
  tenantId: string;
  bankId: string;
  name: string;
  protocol: BankProtocol;
  /** The XS2A root, e.g. `https://xs2a.bank.example/` (calls go to `{baseUrl}/v1/...`). */
  baseUrl: string;
  timeoutMs: number;
  tls: BankTls | null;
  createdAt: number;
  updatedAt: number;
}

/** Throws BadRequest('invalid_tls') unless the PEM parses as what it claims to be. */
export function checkTlsMaterial(tls: { clientCertificate?: string; clientKey?: string; caCertificate?: string }): void {
  if ((tls.clientCertificate === undefined) !== (tls.clientKey === undefined)) {
    throw new BadRequest('invalid_tls', 'tls.clientCertificate and tls.clientKey come together.', { field: 'tls' });
  }
  const cert = (pem: string, field: string) => {
    try {
      return new X509Certificate(pem);
    } catch {
      throw new BadRequest('invalid_tls', `${field} is not a PEM certificate.`, { field });
    }
  };
  if (tls.caCertificate !== undefined) cert(tls.caCertificate, 'tls.caCertificate');
  if (tls.clientCertificate !== undefined && tls.clientKey !== undefined) {
    const c = cert(tls.clientCertificate, 'tls.clientCertificate');
    let key;
    try {
      key = createPrivateKey(tls.clientKey);
    } catch {
      throw new BadRequest('invalid_tls', 'tls.clientKey is not a PEM private key (unencrypted).', { field: 'tls.clientKey' });
    }
    if (!c.checkPrivateKey(key)) {
      throw new BadRequest('invalid_tls', 'tls.clientKey is not the private key of tls.clientCertificate.', { field: 'tls.clientKey' });
    }
  }
}
