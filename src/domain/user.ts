// Users (docs/api.md §Administration). The password hash is argon2id (computed in
// src/auth/password.ts); this module only holds the shape and the email normalisation that makes
// (tenant, email) unique.

export interface User {
  id: string;
  tenantId: string;
  /** Normalised: trimmed and lower-cased. */
  email: string;
  /** argon2id PHC string, or null for users who only log in through an identity provider. */
  passwordHash: string | null;
  roles: string[];
  /**
   * Whether the email came from a verified source: set by an administrator (admin API, command
   * line, demo), or given by an identity provider that said it is verified. False for an SSO
   * account whose address is a placeholder. Absent on records written before it existed; see
   * emailFromVerifiedSource.
   */
  emailVerified?: boolean;
  /** Set by an administrator: the user cannot log in (403 user_disabled). Absent means enabled. */
  disabled?: boolean;
  createdAt: number;
  updatedAt: number;
}

/** The prefix of the ids of accounts that a first SSO login created (domain/organization.ts). */
const SSO_CREATED_PREFIX = 'sso-';

/**
 * May another identity be linked to this user because its verified email equals the user's?
 * Only when the user's email itself came from a verified source. A record without the flag was
 * written before it existed: an SSO-created one may hold an address the provider never verified
 * (a pre-hijack plant), so it counts as unverified; every other way of making a user is an
 * administrator's.
 */
export function emailFromVerifiedSource(u: User): boolean {
  if (u.emailVerified !== undefined) return u.emailVerified;
  return !u.id.startsWith(SSO_CREATED_PREFIX);
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Public view: never the hash. */
export function publicUser(u: User): Omit<User, 'passwordHash'> {
  const { passwordHash: _omitted, ...rest } = u;
  return rest;
}
