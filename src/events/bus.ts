// The one event bus: every lifecycle change is emitted once, as a typed event, and consumers
// (audit log, metrics, anomaly rules, live stream) subscribe. Any layer may emit; the bus knows
// nothing of its consumers. Events never carry a raw
// secret: only handles, ids and hashes' absence.
//
// Contract for emitters (the active-session gauge and the duration histogram rely on it): every
// session that starts emits `session.created` once, and every session that stops being active
// emits exactly one `session.revoked` (with `details.reason`, e.g. `consumed` for single-use
// sessions) or `session.expired`. Use `sessionEvent` for session events: it fills the kind and
// the session's start. Requests attach where they came from with `emit(deps, event, origin)`:
// the request headers (docs/api.md §Request headers), IP, user agent and location.

import type { Location, Session } from '../domain/session.ts';

export type EventType =
  | 'session.created'
  | 'session.refreshed'
  | 'session.extended'
  | 'session.reauthenticated'
  | 'session.expired'
  | 'session.revoked'
  | 'session.limit_evicted'
  | 'session.served_stale'
  | 'refresh_token.reused'
  | 'login.failed'
  | 'login.throttled'
  | `consent.${string}`
  | `redirect.${string}`
  | `sso.${string}`
  | `bank.${string}`
  | 'anomaly.detected'
  | 'user.updated'
  | 'user.disabled'
  | 'user.enabled'
  | 'user.password_reset'
  | 'user.deleted'
  | 'tenant.deleted'
  /** Written by `tessera import` straight to the tenant's audit chain (src/store/transfer.ts), never emitted. */
  | 'tenant.imported';

export interface EventHeaders {
  requestId?: string | null;
  correlationId?: string | null;
  activityId?: string | null;
  tenantId?: string | null;
  sessionId?: string | null;
}

export interface TesseraEvent {
  type: EventType;
  time: number;
  tenantId: string;
  userId: string | null;
  sessionHandle: string | null;
  kind?: string;
  headers?: EventHeaders;
  ip?: string | null;
  userAgent?: string | null;
  /** Coarse location of the client, when known (trusted proxy headers or a GeoIP database). */
  location?: Location | null;
  /** When the session the event is about was created (for durations). */
  startedAt?: number;
  details: Record<string, unknown>;
}

export type EventListener = (event: TesseraEvent) => void;

export class EventBus {
  private readonly listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: TesseraEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A failing consumer must not break the request that caused the event, nor the others.
      }
    }
  }
}

/** The event for a session, with the fields every session event shares. */
export function sessionEvent(
  type: EventType,
  s: Session,
  time: number,
  details: Record<string, unknown> = {},
): TesseraEvent {
  return { type, time, tenantId: s.tenantId, userId: s.userId, sessionHandle: s.handle, kind: s.kind, startedAt: s.createdAt, details };
}

/** Where an action came from, for its events (docs/monitoring.md §1). */
export interface Origin {
  headers: EventHeaders;
  ip: string | null;
  userAgent: string | null;
  location?: Location | null;
}

/** Emits an event, stamped with where its request came from when there is one. */
export function emit(deps: { bus: EventBus }, event: TesseraEvent, origin?: Origin): void {
  deps.bus.emit(
    origin ? { ...event, headers: origin.headers, ip: origin.ip, userAgent: origin.userAgent, location: origin.location ?? null } : event,
  );
}
