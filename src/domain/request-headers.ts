// The request headers and the rule of which are required when, by the tenant's profile
// (docs/api.md §Request headers, §Tenants and profiles).
// Pure: the HTTP layer reads the raw headers and asks these functions.

import type { Profile } from './tenant.ts';

export interface RequestIds {
  requestId: string;
  correlationId: string;
  activityId: string | null;
  tenantId: string | null;
  sessionId: string | null;
  /** Which of the ids the client sent (the others were generated or are absent). */
  sent: ReadonlySet<TraceHeader>;
}

export const TRACE_HEADERS = ['x-tenant-id', 'x-request-id', 'x-correlation-id', 'x-activity-id', 'x-session-id'] as const;
export type TraceHeader = (typeof TRACE_HEADERS)[number];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const TOKEN = /^[A-Za-z0-9._:-]{1,128}$/;
const TENANT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What each header must look like; a header that is present but malformed is a 400. */
export const HEADER_RULES: Record<TraceHeader, { test: (v: string) => boolean; expected: string }> = {
  'x-tenant-id': { test: (v) => TENANT.test(v), expected: 'a tenant id (letters, digits, . _ -; at most 64)' },
  'x-request-id': { test: (v) => UUID.test(v), expected: 'a UUID' },
  'x-correlation-id': { test: (v) => TOKEN.test(v), expected: 'at most 128 characters of letters, digits and . _ : -' },
  'x-activity-id': { test: (v) => UUID.test(v), expected: 'a UUID' },
  'x-session-id': { test: (v) => TOKEN.test(v), expected: 'a session handle' },
};

export type Requirement = 'login' | 'authenticated';

/**
 * The headers a request must carry, by the tenant's profile. Integration: X-Tenant-ID on login;
 * the rest optional. Production: X-Tenant-ID on login, and all of them on every authenticated
 * API call (the credential itself — bearer or cookie — is checked by authentication).
 */
export function requiredHeaders(profile: Profile, requirement: Requirement): TraceHeader[] {
  if (requirement === 'login') return ['x-tenant-id'];
  if (profile === 'integration') return [];
  return ['x-tenant-id', 'x-request-id', 'x-correlation-id', 'x-activity-id', 'x-session-id'];
}

export function missingHeaders(ids: RequestIds, required: readonly TraceHeader[]): TraceHeader[] {
  return required.filter((h) => !ids.sent.has(h));
}
