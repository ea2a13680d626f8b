// Request context from the request headers (docs/api.md §Request headers): validated, generated
// when absent, echoed on every response, and carried into logs and audit events.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../domain/errors.ts';
import { HEADER_RULES, TRACE_HEADERS, type RequestIds, type TraceHeader } from '../domain/request-headers.ts';
import { randomRequestId } from './request-id.ts';

export interface RequestContext extends RequestIds {
  ip: string;
  userAgent: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
}

/** What most requests send: none of the ids (shared; a ReadonlySet is never added to). */
const NONE_SENT: ReadonlySet<TraceHeader> = new Set();

/**
 * Whether the names below are exactly TRACE_HEADERS (checked once): the common request sends
 * none of them, which five loads by fixed names tell faster than the general loop's keyed loads.
 */
const NAMES_CHECKED = TRACE_HEADERS.join() === 'x-tenant-id,x-request-id,x-correlation-id,x-activity-id,x-session-id';

export function readContext(request: FastifyRequest): RequestContext {
  const headers = request.headers;
  if (
    NAMES_CHECKED &&
    headers['x-tenant-id'] === undefined &&
    headers['x-request-id'] === undefined &&
    headers['x-correlation-id'] === undefined &&
    headers['x-activity-id'] === undefined &&
    headers['x-session-id'] === undefined
  ) {
    const ua = headers['user-agent'];
    return {
      requestId: randomRequestId(),
      correlationId: randomRequestId(),
      activityId: null,
      tenantId: null,
      sessionId: null,
      sent: NONE_SENT,
      ip: request.ip,
      userAgent: typeof ua === 'string' ? cleanUserAgent(ua) : null,
    };
  }
  let sent: Set<TraceHeader> | null = null;
  const values: Partial<Record<TraceHeader, string>> = {};
  for (const name of TRACE_HEADERS) {
    const v = headers[name];
    if (v === undefined || v === '') continue;
    if (Array.isArray(v)) throw new BadRequest('invalid_header', `${name} must appear once`, { header: name });
    if (!HEADER_RULES[name].test(v)) {
      throw new BadRequest('invalid_header', `${canonical(name)} must be ${HEADER_RULES[name].expected}`, {
        header: canonical(name),
      });
    }
    (sent ??= new Set()).add(name);
    values[name] = v;
  }
  const ua = headers['user-agent'];
  return {
    requestId: values['x-request-id'] ?? randomRequestId(),
    correlationId: values['x-correlation-id'] ?? randomRequestId(),
    activityId: values['x-activity-id'] ?? null,
    tenantId: values['x-tenant-id'] ?? null,
    sessionId: values['x-session-id'] ?? null,
    sent: sent ?? NONE_SENT,
    ip: request.ip,
    userAgent: typeof ua === 'string' ? cleanUserAgent(ua) : null,
  };
}

/** Longest user agent kept (logs, audit records, session devices). */
export const USER_AGENT_MAX = 256;

/**
 * A client-chosen header that lands in tenants' audit records: printable ASCII only (anything
 * else becomes `?`), at most USER_AGENT_MAX characters.
 */
export function cleanUserAgent(ua: string): string {
  // A client sends the same agent on every request: the last one's cleaned form is kept.
  if (ua === lastAgent) return lastCleaned;
  const cleaned = ua.slice(0, USER_AGENT_MAX).replace(/[^\x20-\x7E]/g, '?');
  lastAgent = ua;
  lastCleaned = cleaned;
  return cleaned;
}
let lastAgent = '';
let lastCleaned = '';

/** `x-tenant-id` → `X-Tenant-ID`, for messages. */
export function canonical(name: string): string {
  return name
    .split('-')
    .map((p) => (p === 'id' ? 'ID' : p.charAt(0).toUpperCase() + p.slice(1)))
    .join('-');
}

/**
 * The first hook of every request (one synchronous hook, not several async ones: each hook and
 * each promise is a measurable share of the session check). It sets the headers every answer
 * carries — `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`, which a route may
 * replace (e.g. a cacheable asset) — reads the context, echoes its ids, and runs `then` (the
 * monitoring's per-request step). A malformed id header is a 400 that still carries ids.
 */
export function registerRequestContext(app: FastifyInstance, then?: (request: FastifyRequest) => void): void {
  app.decorateRequest('ctx', null as unknown as RequestContext);
  app.addHook('onRequest', function requestContext(request, reply, done) {
    void reply.header('x-content-type-options', 'nosniff').header('cache-control', 'no-store');
    try {
      request.ctx = readContext(request);
    } catch (err) {
      // Still give the error response ids to echo.
      request.ctx = {
        requestId: randomRequestId(),
        correlationId: randomRequestId(),
        activityId: null,
        tenantId: null,
        sessionId: null,
        sent: new Set(),
        ip: request.ip,
        userAgent: null,
      };
      void reply.header('x-request-id', request.ctx.requestId).header('x-correlation-id', request.ctx.correlationId);
      done(err as Error);
      return;
    }
    void reply.header('x-request-id', request.ctx.requestId).header('x-correlation-id', request.ctx.correlationId);
    if (then !== undefined) then(request);
    done();
  });
}
