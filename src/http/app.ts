// The Fastify application: plugins for the cross-cutting concerns (request context, validation,
// problem+json, logging, OpenAPI), then one plugin per route group.

import fastifyCookie from '@fastify/cookie';
import fastifyCors from '@fastify/cors';
import fastifySwagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify';
import { pino } from 'pino';
import { BlockList, isIP, type Socket } from 'node:net';
import type { App, Deps } from './deps.ts';
import { deriveKey } from '../tokens/sealing.ts';
import { CookieSigner } from './cookies.ts';
import { clientErrorHandler, frameworkErrorHandler, registerProblemHandlers } from './problem.ts';
import { registerMonitoring } from './monitoring-hooks.ts';
import { registerRequestContext } from './request-context.ts';
import { requestLineWriter } from './request-log.ts';
import { adminAuditRoutes } from './routes/admin-audit.ts';
import { adminConsoleRoutes } from './routes/admin-console.ts';
import { authReauthRoutes } from './routes/auth-reauth.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { adminOrgRoutes } from './routes/admin-orgs.ts';
import { adminSessionRoutes } from './routes/admin-sessions.ts';
import { adminTenantRoutes } from './routes/admin-tenants.ts';
import { authLoginRoutes } from './routes/auth-login.ts';
import { authTokenRoutes } from './routes/auth-tokens.ts';
import { selfServiceRoutes } from './routes/self-service.ts';
import { adminUserRoutes } from './routes/admin-users.ts';
import { consentRoutes } from './routes/consents.ts';
import { docsRoutes } from './routes/docs.ts';
import { healthRoutes } from './routes/health.ts';
import { ssoRoutes } from './routes/sso.ts';
import { adminAppRoutes } from './routes/admin-apps.ts';
import { adminBankRoutes } from './routes/admin-banks.ts';
import { oidcRoutes } from './routes/oidc.ts';
import { demoRoutes } from './demo/routes.ts';
import { nameComponentSchemas, operationIdOf } from './openapi.ts';
import { ProblemSchema } from './schemas.ts';
import { registerValidation } from './validation.ts';
import { settleListenerArraySite } from './listener-site.ts';
import { addressKey } from '../domain/client-address.ts';

const QUIET_LEVELS = new Set(['warn', 'error', 'fatal', 'silent']);

/** The URL without its query string (which may hold a secret, so never logged). */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * Fastify's log controller with its own per-request lines off (they would carry the URL with its
 * query; ours do not) and its `requestCompleted` — which Fastify calls once an answer is out
 * (the response's `finish`, or its `error`), after any onResponse hooks — running `step`: the
 * monitoring and the request line. One call where an onResponse hook took Fastify's hook runner
 * (three closures per request) and its iterator on every answer.
 */
class AfterResponse extends LogController {
  step: (request: FastifyRequest, reply: FastifyReply) => void = () => {};
  constructor() {
    super({ disableRequestLogging: true });
  }
  override requestCompleted(_error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    // Called from the response's `finish` listener, where Fastify's hook runner no longer catches
    // what the step throws: an error here would be uncaught and end the process. The answer is
    // out by now; the step's failure is logged and the server goes on.
    try {
      this.step(request, reply);
    } catch (err) {
      try {
        request.log.error({ err }, 'the after-response step (metrics, request line) failed');
      } catch {
        // The log destination itself is what fails: nothing left to tell, and nothing to end
        // the process for.
      }
    }
  }
}

export interface BuildOptions {
  /** A pino logger; none (silent) in tests by default. */
  logger?: FastifyBaseLogger;
  /** Told of every route as it is registered (method(s) and URL), e.g. for a test that covers them all. */
  onRoute?: (route: { method: string | string[]; url: string }) => void;
}

/**
 * At most `maxConnectionsPerIp` open connections per client address (the socket's peer, an IPv6
 * one by its /64; trusted proxies, which carry many clients, are exempt): one address cannot take
 * every socket.
 */
function limitConnectionsPerIp(app: App, deps: Deps): void {
  const max = deps.config.maxConnectionsPerIp;
  const proxies = new BlockList();
  for (const p of deps.config.trustedProxies) {
    const [addr = '', bits] = p.split('/');
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) proxies.addAddress(addr, family);
    else proxies.addSubnet(addr, Number(bits), family);
  }
  const open = new Map<string, number>();
  app.server.on('connection', (socket: Socket) => {
    const peer = socket.remoteAddress;
    if (peer === undefined) return;
    if (proxies.check(peer, isIP(peer) === 6 ? 'ipv6' : 'ipv4')) return;
    // An IPv6 peer counts by its /64 (domain/client-address.ts).
    const ip = addressKey(peer);
    const n = (open.get(ip) ?? 0) + 1;
    if (n > max) {
      socket.destroy();
      return;
    }
    open.set(ip, n);
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1;
      if (left <= 0) open.delete(ip);
      else open.set(ip, left);
    });
  });
}

export async function buildApp(deps: Deps, opts: BuildOptions = {}): Promise<App> {
  // Before the first app serves, if its server did not already (listener-site.ts).
  settleListenerArraySite();
  const afterResponse = new AfterResponse();
  const app = Fastify({
    // Without a logger of its own (tests), a silent one: Fastify then still calls the log
    // controller once each answer is out, which runs the monitoring's step (AfterResponse).
    loggerInstance: opts.logger ?? pino({ level: 'silent' }),
    logController: afterResponse,
    bodyLimit: deps.config.bodyLimit,
    // Slow clients (one byte a minute) must not hold connections: the whole request within
    // requestTimeoutMs (408, checked every second), headers within 10 s of it, no traffic
    // for idleTimeoutMs closes the socket, and an idle keep-alive connection goes after 5 s.
    requestTimeout: deps.config.requestTimeoutMs,
    connectionTimeout: deps.config.idleTimeoutMs,
    keepAliveTimeout: Math.min(5000, deps.config.idleTimeoutMs - 1),
    http: {
      headersTimeout: Math.min(10_000, deps.config.requestTimeoutMs),
      connectionsCheckingInterval: Math.min(1000, deps.config.requestTimeoutMs),
    },
    trustProxy: deps.config.trustedProxies.length > 0 ? deps.config.trustedProxies : false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { maxParamLength: 200 },
    // Errors before routing, and Node's HTTP parser's: problem documents too (problem.ts).
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler,
    genReqId: () => '-',
    // Fastify makes a child logger per request to bind its request id; ours is always '-' (the
    // request context carries the real ids into every line that needs them), and building that
    // child was a measurable share of the session check, so requests log through the app's own.
    childLoggerFactory: (logger) => logger,
    // No automatic HEAD twins: several GET routes consume single-use state (redirect returns,
    // SSO callbacks), and a HEAD must never do that unseen.
    exposeHeadRoutes: false,
  }).withTypeProvider<TypeBoxTypeProvider>();

  if (opts.onRoute) {
    const tell = opts.onRoute;
    app.addHook('onRoute', (r) => tell({ method: r.method, url: r.url }));
  }
  limitConnectionsPerIp(app, deps);
  registerValidation(app);
  registerProblemHandlers(app);
  const monitoring = registerMonitoring(app, deps);
  registerRequestContext(app, monitoring.onRequest);
  app.addSchema(ProblemSchema);
  app.decorateRequest('auth', null);
  app.decorateRequest('admin', null);
  // Without the plugin's parsing hook: a request's cookies are parsed when first read
  // (requestCookies, cookies.ts), which most requests never do.
  await app.register(fastifyCookie, { secret: new CookieSigner(deriveKey(deps.config.cookieSecret, 'cookie-signing')), hook: false });
  // Credentialed CORS for exactly the origins in TESSERA_ALLOWED_ORIGINS (docs/api.md §Cookie
  // mode); none otherwise.
  if (deps.config.allowedOrigins.length > 0) {
    await app.register(fastifyCors, {
      origin: deps.config.allowedOrigins,
      credentials: true,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
      allowedHeaders: [
        'authorization',
        'content-type',
        'x-auth-mode',
        'x-xsrf-token',
        'x-tenant-id',
        'x-request-id',
        'x-correlation-id',
        'x-activity-id',
        'x-session-id',
      ],
      exposedHeaders: ['x-request-id', 'x-correlation-id', 'retry-after'],
      maxAge: 600,
    });
  }
  // JSON (and forms, below) only: a text body is refused with 415 rather than half-understood.
  app.removeContentTypeParser('text/plain');
  // RFC 7009 / 7662 clients send forms. Parsed by hand: a duplicated field is refused, not merged.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    const out: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(body as string)) {
      if (k in out) {
        done(Object.assign(new Error(`the form field "${k}" appears twice`), { statusCode: 400 }), undefined);
        return;
      }
      out[k] = v;
    }
    done(null, out);
  });

  // Every answer's `nosniff` and `no-store` headers are set by the request-context hook.

  // Once the answer is out: the monitoring's latency histogram and request count, then one JSON
  // line per request (request-log.ts: the request ids of docs/api.md §Request headers, never a
  // query string, header value or body that could hold a secret; built from those fields only, so
  // it skips the root logger's redaction pass, which every other log line keeps).
  const requestLog = app.log.child({}, { redact: { paths: [], censor: '' } });
  const writeRequestLine = requestLineWriter(requestLog);
  afterResponse.step = (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    monitoring.onResponse(request, reply, route);
    // Build the line only when it will be written (the object costs on the hot path).
    if (!QUIET_LEVELS.has(requestLog.level)) {
      const ctx = request.ctx;
      writeRequestLine({
        method: request.method,
        route,
        path: pathOf(request.url),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        requestId: ctx?.requestId,
        correlationId: ctx?.correlationId,
        activityId: ctx?.activityId ?? undefined,
        tenantId: ctx?.tenantId ?? undefined,
        sessionId: ctx?.sessionId ?? undefined,
        // The context's copy (request.ip is a getter chain, and with trusted proxies a parse of
        // X-Forwarded-For each time); a request refused before the context has none.
        ip: ctx ? ctx.ip : request.ip,
        userAgent: ctx?.userAgent ?? undefined,
      });
    }
  };

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tessera',
        version: '0.1.0',
        description: 'Session server: cookies, rotating refresh tokens, SSO, limits, audit, revocation.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, basic: { type: 'http', scheme: 'basic' } },
      },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    // Every operation has an id for code generators: its own, or one made from method and path.
    transform: ({ schema, url, route }) => {
      if (!schema || schema.hide) return { schema, url };
      const method = Array.isArray(route.method) ? String(route.method[0]) : String(route.method);
      return { schema: { ...schema, operationId: schema.operationId ?? operationIdOf(method, url) }, url };
    },
    transformObject: (documentObject) => nameComponentSchemas((documentObject as { openapiObject: Record<string, unknown> }).openapiObject),
  });

  await app.register(async (scope) => healthRoutes(scope as App, deps));
  await app.register(async (scope) => adminTenantRoutes(scope as App, deps));
  await app.register(async (scope) => adminUserRoutes(scope as App, deps));
  await app.register(async (scope) => adminBankRoutes(scope as App, deps));
  await app.register(async (scope) => adminSessionRoutes(scope as App, deps));
  await app.register(async (scope) => authLoginRoutes(scope as App, deps));
  await app.register(async (scope) => authTokenRoutes(scope as App, deps));
  await app.register(async (scope) => selfServiceRoutes(scope as App, deps));
  await app.register(async (scope) => adminOrgRoutes(scope as App, deps));
  await app.register(async (scope) => ssoRoutes(scope as App, deps));
  await app.register(async (scope) => adminAppRoutes(scope as App, deps));
  await app.register(async (scope) => oidcRoutes(scope as App, deps));
  await app.register(async (scope) => consentRoutes(scope as App, deps));
  // Demo mode only (TESSERA_DEMO=1): the demo account, bank and pages.
  if (deps.config.demo) await app.register(async (scope) => demoRoutes(scope as App, deps));
  await app.register(async (scope) => adminAuditRoutes(scope as App, deps));
  await app.register(async (scope) => authReauthRoutes(scope as App, deps));
  await app.register(async (scope) => metricsRoutes(scope as App, deps));
  await app.register(async (scope) => docsRoutes(scope as App));
  await app.register(async (scope) => adminConsoleRoutes(scope as App));
  await app.ready();
  return app;
}
