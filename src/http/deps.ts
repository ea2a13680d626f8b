// What route plugins are given. Routes take their collaborators from here, never from globals.

import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { EventBus } from '../audit/events.ts';
import type { ThrottlePolicy } from '../auth/throttle.ts';
import type { Config } from '../config/config.ts';
import type { Clock } from '../domain/clock.ts';
import type { SessionCache } from '../sessions/session-cache.ts';
import type { Coordination } from '../store/coordination.ts';
import type { SessionStore } from '../store/port.ts';
import type { KeyRing } from '../tokens/key-ring.ts';

export interface DerivedKeys {
  /** Derives a refresh token's successor from it (same successor for every racing caller). */
  refresh: Buffer;
  /** Derives the session that renews an expired one after a consent redirect. */
  renew: Buffer;
  /** Derives a cookie session's XSRF token from its handle. */
  xsrf: Buffer;
}

export interface Deps {
  config: Config & { cookieSecret: string };
  store: SessionStore & Coordination;
  clock: Clock;
  /** SHA-256 of the bootstrap admin credential, or null when it is off. */
  adminTokenHash: string | null;
  bus: EventBus;
  keyRing: KeyRing;
  keys: DerivedKeys;
  sessionCache: SessionCache;
  throttle: ThrottlePolicy;
}

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;
