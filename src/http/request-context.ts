// Request context from the request headers (docs/api.md §Request headers): validated, generated
// when absent, echoed on every response, and carried into logs and audit events.

import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../domain/errors.ts';
import { HEADER_RULES, TRACE_HEADERS, type RequestIds, type TraceHeader } from '../domain/request-headers.ts';

export interface RequestContext extends RequestIds {
  startedAt: number;
  ip: string;
  userAgent: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    ctx: RequestContext;
  }
}

function single(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  if (Array.isArray(v)) throw new BadRequest('invalid_header', `${name} must appear once`, { header: name });
  return v === undefined || v === '' ? undefined : v;
}

export function readContext(request: FastifyRequest, now: number): RequestContext {
  const sent = new Set<TraceHeader>();
  const values: Partial<Record<TraceHeader, string>> = {};
  for (const name of TRACE_HEADERS) {
    const v = single(request, name);
    if (v === undefined) continue;
    if (!HEADER_RULES[name].test(v)) {
      throw new BadRequest('invalid_header', `${canonical(name)} must be ${HEADER_RULES[name].expected}`, {
        header: canonical(name),
      });
    }
    sent.add(name);
    values[name] = v;
  }
  const ua = request.headers['user-agent'];
  return {
    requestId: values['x-request-id'] ?? randomUUID(),
    correlationId: values['x-correlation-id'] ?? randomUUID(),
    activityId: values['x-activity-id'] ?? null,
    tenantId: values['x-tenant-id'] ?? null,
    sessionId: values['x-session-id'] ?? null,
    sent,
    startedAt: now,
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
  return ua.slice(0, USER_AGENT_MAX).replace(/[^\x20-\x7E]/g, '?');
}

/** `x-tenant-id` → `X-Tenant-ID`, for messages. */
export function canonical(name: string): string {
  return name
    .split('-')
    .map((p) => (p === 'id' ? 'ID' : p.charAt(0).toUpperCase() + p.slice(1)))
    .join('-');
}

export function registerRequestContext(app: FastifyInstance, now: () => number): void {
  app.decorateRequest('ctx', null as unknown as RequestContext);
  app.addHook('onRequest', async (request, reply) => {
    try {
      request.ctx = readContext(request, now());
    } catch (err) {
      // Still give the error response ids to echo.
      request.ctx = {
        requestId: randomUUID(),
        correlationId: randomUUID(),
        activityId: null,
        tenantId: null,
        sessionId: null,
        sent: new Set(),
        startedAt: now(),
        ip: request.ip,
        userAgent: null,
      };
      void reply.header('x-request-id', request.ctx.requestId).header('x-correlation-id', request.ctx.correlationId);
      throw err;
    }
    void reply.header('x-request-id', request.ctx.requestId).header('x-correlation-id', request.ctx.correlationId);
  });
}
