// The public view of a session: handle, never the secret or its hash.

import { Type } from 'typebox';
import { deviceOf } from '../audit/device.ts';
import { PageOf } from './schemas.ts';
import { effectiveStatus, expiresAt, type Session } from '../domain/session.ts';

/**
 * ISO-8601 strings of epoch milliseconds. Formatting dates was a twentieth of the session
 * check's CPU time (five per answer); the same few instants come back on every request of a
 * session, so the last strings are remembered (a small map, cleared when full).
 */
const isoStrings = new Map<number, string>();
function iso(ms: number | null): string | null {
  if (ms === null) return null;
  let s = isoStrings.get(ms);
  if (s === undefined) {
    if (isoStrings.size >= 10_000) isoStrings.clear();
    s = new Date(ms).toISOString();
    isoStrings.set(ms, s);
  }
  return s;
}

export const SessionViewSchema = Type.Object({
  sessionId: Type.String({ description: 'The session handle' }),
  kind: Type.String(),
  status: Type.String(),
  revokeReason: Type.Union([Type.String(), Type.Null()]),
  tenantId: Type.String(),
  customerId: Type.Union([Type.String(), Type.Null()]),
  email: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The user’s email (null when the user is gone)' })),
  parentId: Type.Union([Type.String(), Type.Null()]),
  mode: Type.Union([Type.String(), Type.Null()]),
  authMethod: Type.String(),
  clientId: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  lastSeenAt: Type.String(),
  expiresAt: Type.String(),
  idleExpiresAt: Type.Union([Type.String(), Type.Null()]),
  absoluteExpiresAt: Type.String(),
  endedAt: Type.Union([Type.String(), Type.Null()]),
  device: Type.Object(
    {
      browser: Type.Union([Type.String(), Type.Null()], { description: 'e.g. "Firefox 133"; a non-browser client’s product name' }),
      os: Type.Union([Type.String(), Type.Null()], { description: 'e.g. "macOS", "Android 15"' }),
      type: Type.String({ description: 'desktop, mobile, tablet, tv or bot (desktop where the agent says nothing)' }),
      userAgent: Type.Optional(Type.String()),
      ip: Type.Optional(Type.String()),
      location: Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number()]))),
    },
    { title: 'SessionDevice' },
  ),
  current: Type.Optional(Type.Boolean()),
}, { title: 'Session' });

/** The readable device beside what was recorded (User-Agent, IP, location). */
function deviceJson(s: Session) {
  const parsed = deviceOf(s.device.userAgent);
  return { browser: parsed?.browser ?? null, os: parsed?.os ?? null, type: parsed?.type ?? 'desktop', ...s.device };
}

/** `email`: the user's email when the caller looked it up (admin listings), null when the user is gone. */
export function sessionJson(s: Session, now: number, currentHandle?: string, email?: string | null) {
  return {
    sessionId: s.handle,
    kind: s.kind,
    status: effectiveStatus(s, now),
    revokeReason: s.revokeReason,
    tenantId: s.tenantId,
    customerId: s.userId,
    ...(email !== undefined ? { email } : {}),
    parentId: s.parentHandle,
    mode: typeof s.data.mode === 'string' ? s.data.mode : null,
    authMethod: s.authMethod,
    clientId: s.clientId,
    createdAt: iso(s.createdAt) as string,
    lastSeenAt: iso(s.lastSeenAt) as string,
    expiresAt: iso(expiresAt(s)) as string,
    idleExpiresAt: iso(s.idleExpiresAt),
    absoluteExpiresAt: iso(s.absoluteExpiresAt) as string,
    endedAt: iso(s.endedAt),
    device: deviceJson(s) as ReturnType<typeof deviceJson> & { location?: Record<string, string | number> },
    ...(currentHandle !== undefined ? { current: s.handle === currentHandle } : {}),
  };
}

export const SessionPageSchema = PageOf(SessionViewSchema, 'SessionPage');

/**
 * The answer of GET /api/v1/session as JSON text, remembered per session record. A client asks
 * for its session again and again, and the record it gets back is the same object each time
 * (records are never changed in place: a change replaces the record in the session cache), so
 * the view is built and serialised once — by the route's own response serialiser — and the text
 * is sent from then on. What else goes into the answer is checked on every use: the effective
 * status at `now` (active turns expired) and the XSRF token (cookie mode). Entries go with
 * their records (a WeakMap).
 */
const currentViews = new WeakMap<Session, { status: string; xsrfToken: string | undefined; text: string }>();

export function currentSessionText(s: Session, now: number, xsrfToken: string | undefined, serialize: (view: object) => string): string {
  const status = effectiveStatus(s, now);
  const hit = currentViews.get(s);
  if (hit !== undefined && hit.status === status && hit.xsrfToken === xsrfToken) return hit.text;
  const view = sessionJson(s, now);
  const text = serialize(xsrfToken === undefined ? view : { ...view, xsrfToken });
  currentViews.set(s, { status, xsrfToken, text });
  return text;
}
