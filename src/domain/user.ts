// Users (SPEC 10). The password hash is argon2id (computed in src/auth/password.ts); this module
// only holds the shape and the email normalisation that makes (tenant, email) unique.

export interface User {
  id: string;
  tenantId: string;
  /** Normalised: trimmed and lower-cased. */
  email: string;
  /** argon2id PHC string, or null for users who only log in through an identity provider. */
  passwordHash: string | null;
  roles: string[];
  createdAt: number;
  updatedAt: number;
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Public view: never the hash. */
export function publicUser(u: User): Omit<User, 'passwordHash'> {
  const { passwordHash: _omitted, ...rest } = u;
  return rest;
}
