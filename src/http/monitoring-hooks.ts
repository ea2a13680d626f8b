// Cross-cutting steps of the monitoring (docs/monitoring.md), run for every route: the client's
// coarse location on each request (trusted proxy headers or the GeoIP database, see
// src/audit/location.ts), and, once the answer is out, the request latency histogram and the
// per-session request count of the request_rate rule. app.ts runs them inside its single
// onRequest hook and its log controller's step once an answer is out (AfterResponse).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Location } from '../domain/session.ts';
import { originOf } from './authenticate.ts';
import type { Deps } from './deps.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Where the client is, coarsely, when a trusted source says so; else null. */
    clientLocation: Location | null;
  }
}

export interface MonitoringSteps {
  /** On each request, before authentication. */
  onRequest: (request: FastifyRequest) => void;
  /** Once the answer is sent; `route` is the matched route pattern or `unmatched`. */
  onResponse: (request: FastifyRequest, reply: FastifyReply, route: string) => void;
}

export function registerMonitoring(app: FastifyInstance, deps: Deps): MonitoringSteps {
  const log = app.log;
  deps.monitor.useLogger({
    info: (obj, msg) => log.info(obj, msg),
    warn: (obj, msg) => log.warn(obj, msg),
    error: (obj, msg) => log.error(obj, msg),
  });
  app.decorateRequest('clientLocation', null);
  const monitor = deps.monitor;
  return {
    onRequest: (request) => {
      const locator = monitor.locator;
      // Without trusted proxies or a GeoIP database there is nothing to locate by (locate answers
      // null): the input is not even built. `clientLocation` is null by default.
      if (locator.source === 'none') return;
      request.clientLocation = locator.locate({ peer: request.socket.remoteAddress, clientIp: request.ip, headers: request.headers });
    },
    onResponse: (request, reply, route) => {
      monitor.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
      const auth = request.auth;
      // The origin (request ids, address, location) is only built when the count trips the rule.
      if (auth) monitor.countRequest(auth.session, auth.tenant, deps.clock.now(), () => originOf(request));
    },
  };
}
