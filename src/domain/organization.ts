// Organizations and their external identity providers (docs/api.md §Single sign-on), and the
// identities that link an account at such a provider to a Tessera user. Pure: shapes, the mapping
// of a provider's user document to a profile, and the id a federated user gets.

import { createHash } from 'node:crypto';

/** Slugs appear in paths, query strings and store keys: keep them to a small alphabet. */
export const ORG_SLUG_PATTERN = '^[a-z0-9][a-z0-9-]{0,62}$';
/** The `{provider}` path segment of the OAuth 2.0 routes. */
export const PROVIDER_NAME_PATTERN = '^[a-z0-9][a-z0-9-]{0,31}$';

export const FEDERATION_PROTOCOLS = ['oidc', 'oauth'] as const;
export type FederationProtocol = (typeof FEDERATION_PROTOCOLS)[number];

export const TOKEN_ENDPOINT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post'] as const;
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

export interface OidcSettings {
  issuer: string;
  clientId: string;
  /** AES-256-GCM under the `seal-client-secrets` key; null for a public client (PKCE only). */
  sealedClientSecret: string | null;
  scopes: string[];
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
}

/** Where a profile's fields are in a plain OAuth 2.0 provider's user document (dotted paths). */
export interface ClaimMapping {
  subject: string;
  email: string | null;
  /** A boolean field saying the email is verified; null: the provider never says so. */
  emailVerified: string | null;
}

export interface OAuthSettings {
  /** The `{provider}` of /api/v1/sso/oauth/{provider}/…, e.g. `github`. */
  provider: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  userinfoEndpoint: string;
  clientId: string;
  sealedClientSecret: string | null;
  scopes: string[];
  /**
   * The namespace of the provider's subjects: identities are keyed by (issuer, subject). Defaults
   * to the authorization endpoint's origin.
   */
  identityIssuer: string;
  mapping: ClaimMapping;
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  /** Send PKCE (S256). On by default; a few old providers refuse unknown parameters. */
  pkce: boolean;
}

export interface Organization {
  slug: string;
  tenantId: string;
  protocol: FederationProtocol;
  oidc: OidcSettings | null;
  oauth: OAuthSettings | null;
  /**
   * Link a first login to an existing user of the tenant with the same email, when the provider
   * says the email is verified. Off by default: an identity provider that lets anyone claim any
   * address would otherwise hand out other people's accounts.
   */
  linkVerifiedEmail: boolean;
  createdAt: number;
  updatedAt: number;
}

/** An account at an external provider, linked to one Tessera user of a tenant. */
export interface FederatedIdentity {
  tenantId: string;
  issuer: string;
  subject: string;
  userId: string;
  createdAt: number;
}

/** Who the provider says the person is, whatever the protocol. */
export interface ExternalProfile {
  issuer: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  /** The provider's session id (`sid` claim), when its ID token has one: back-channel logout names it. */
  sessionId?: string | null;
}

/** The issuer under which an organization's subjects are unique. */
export function identityIssuerOf(org: Organization): string {
  if (org.oidc) return org.oidc.issuer;
  if (org.oauth) return org.oauth.identityIssuer;
  throw new Error(`organization ${org.slug} has no provider`);
}

/** Reads `a.b.c` from a JSON document; undefined when any step is missing. */
export function readPath(doc: unknown, path: string): unknown {
  let cur: unknown = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export class InvalidProfile extends Error {}

/** A subject may be a string or a number (GitHub's user ids are numbers). */
function subjectOf(value: unknown): string | null {
  if (typeof value === 'string' && value.length > 0 && value.length <= 255) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return null;
}

function emailOf(value: unknown): string | null {
  return typeof value === 'string' && /^[^\s@]{1,64}@[^\s@]{1,189}$/.test(value) ? value.trim().toLowerCase() : null;
}

/** The profile in an OIDC ID token's claims (or its userinfo, which has the same names). */
export function profileFromClaims(issuer: string, claims: Record<string, unknown>): ExternalProfile {
  const subject = subjectOf(claims.sub);
  if (subject === null) throw new InvalidProfile('the provider gave no usable subject (sub)');
  const sid = typeof claims.sid === 'string' && claims.sid.length > 0 && claims.sid.length <= 255 ? claims.sid : null;
  return { issuer, subject, email: emailOf(claims.email), emailVerified: claims.email_verified === true, sessionId: sid };
}

/** The profile in a plain OAuth 2.0 provider's user document, through the organization's mapping. */
export function profileFromUserinfo(issuer: string, mapping: ClaimMapping, doc: unknown): ExternalProfile {
  const subject = subjectOf(readPath(doc, mapping.subject));
  if (subject === null) throw new InvalidProfile(`the provider's user document has no usable "${mapping.subject}"`);
  const email = mapping.email === null ? null : emailOf(readPath(doc, mapping.email));
  const verified = mapping.emailVerified !== null && readPath(doc, mapping.emailVerified) === true;
  return { issuer, subject, email, emailVerified: verified };
}

/**
 * The id of the user that a first login through (issuer, subject) creates. Derived, so that two
 * first logins racing each other agree on one user rather than creating two.
 */
export function federatedUserId(tenantId: string, issuer: string, subject: string): string {
  const digest = createHash('sha256').update(`${tenantId}\u0000${issuer}\u0000${subject}`, 'utf8').digest('base64url');
  return `sso-${digest.slice(0, 32)}`;
}

/**
 * Users need a unique email in their tenant. When the provider gives none, the user gets an
 * address under the reserved `.invalid` top-level domain (RFC 2606) that can receive nothing.
 */
export function placeholderEmail(orgSlug: string, userId: string): string {
  return `${userId}@${orgSlug}.sso.invalid`;
}
