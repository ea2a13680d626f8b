// Cross-cutting hooks of the monitoring (docs/monitoring.md), registered on the root app so they
// see every route: the client's coarse location on each request (trusted proxy headers or the GeoIP
// database, see src/audit/location.ts), the request latency histogram, and the per-session request
// count of the request_rate rule.

import type { FastifyInstance } from 'fastify';
import type { Location } from '../domain/session.ts';
import { originOf } from './authenticate.ts';
import type { Deps } from './deps.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Where the client is, coarsely, when a trusted source says so; else null. */
    clientLocation: Location | null;
  }
}

export function registerMonitoring(app: FastifyInstance, deps: Deps): void {
  const log = app.log;
  deps.monitor.useLogger({
    info: (obj, msg) => log.info(obj, msg),
    warn: (obj, msg) => log.warn(obj, msg),
    error: (obj, msg) => log.error(obj, msg),
  });
  app.decorateRequest('clientLocation', null);
  app.addHook('onRequest', async (request) => {
    request.clientLocation = deps.monitor.locator.locate({ peer: request.socket.remoteAddress, clientIp: request.ip, headers: request.headers });
  });
  app.addHook('onResponse', async (request, reply) => {
    deps.monitor.observeRequest(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    const auth = request.auth;
    if (auth) deps.monitor.countRequest(auth.session, auth.tenant, deps.clock.now(), originOf(request));
  });
}
