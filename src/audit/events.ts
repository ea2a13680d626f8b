// The one event pipeline: every lifecycle change is emitted once, as a typed event, and
// consumers (audit log, metrics, anomaly rules, live stream) subscribe. Events never carry a raw
// secret: only handles, ids and hashes' absence.

import type { Session } from '../domain/session.ts';

export type EventType =
  | 'session.created'
  | 'session.refreshed'
  | 'session.extended'
  | 'session.expired'
  | 'session.revoked'
  | 'session.limit_evicted'
  | 'refresh_token.reused'
  | 'login.failed'
  | 'login.throttled'
  | `consent.${string}`
  | `redirect.${string}`
  | `sso.${string}`
  | 'anomaly.detected';

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
  return { type, time, tenantId: s.tenantId, userId: s.userId, sessionHandle: s.handle, kind: s.kind, details };
}
