// The audit log for operators (docs/api.md §Audit, metrics and anomalies; docs/monitoring.md): read
// and filter it, check its hash chains, export it as JSON lines, list anomaly findings, and follow
// events live (Server-Sent Events). A tenant administrator sees their own tenant only; the platform
// credential sees every tenant.

import { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { exportRecords, verifyAudit } from '../../audit/verify.ts';
import type { AuditRecord } from '../../domain/audit-chain.ts';
import { BadRequest, Forbidden, TooManyRequests } from '../../domain/errors.ts';
import { reauthMarkOf } from '../../sessions/monitoring.ts';
import { ADMIN_ROLE, adminUserOf, assertAdminOf, requireAdmin, type AdminScope } from '../admin-auth.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, PageOf, problems, TenantId } from '../schemas.ts';

/**
 * Bounds of the live stream (GET /api/v1/admin/events). Mutable for tests only.
 * - keepAliveMs: a `: keep-alive` comment, and a fresh check of the administrator's credential
 *   (a user's session still valid, read from the store; the role still held), on every tick;
 * - maxBufferedBytes: a client whose unsent output passes this is dropped (a slow or stalled
 *   reader must not grow the server's memory);
 * - maxPerAdmin, maxPerProcess: concurrent streams (429 too_many_streams beyond).
 */
export const liveStreamSettings = { keepAliveMs: 15_000, maxBufferedBytes: 1 << 20, maxPerAdmin: 5, maxPerProcess: 100 };

const TypeFilter = Type.String({
  maxLength: 300,
  pattern: '^[a-z_]+(\\.([a-z_]+|\\*))*(,[a-z_]+(\\.([a-z_]+|\\*))*)*$',
  description: 'Comma-separated event types; `session.*` selects a family',
});
const Cursor = Type.String({ maxLength: 64, pattern: '^[0-9-]+$' });
const Instant = Type.String({ format: 'date-time', description: 'RFC 3339 date-time' });

const Headers = Type.Object({
  requestId: Type.Union([Type.String(), Type.Null()]),
  correlationId: Type.Union([Type.String(), Type.Null()]),
  activityId: Type.Union([Type.String(), Type.Null()]),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  sessionId: Type.Union([Type.String(), Type.Null()]),
});

export const AuditRecordSchema = Type.Object({
  id: Type.String(),
  seq: Type.Integer(),
  time: Type.String({ description: 'RFC 3339; the exported record has epoch ms' }),
  type: Type.String(),
  tenantId: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  email: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The user’s email now, in listings (null when there is no user or the user is gone); not part of the hashed record' })),
  sessionId: Type.Union([Type.String(), Type.Null()], { description: 'The session handle' }),
  kind: Type.Union([Type.String(), Type.Null()]),
  headers: Headers,
  ip: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  location: Type.Union([
    Type.Object({ country: Type.Optional(Type.String()), city: Type.Optional(Type.String()), lat: Type.Optional(Type.Number()), lon: Type.Optional(Type.Number()) }),
    Type.Null(),
  ]),
  details: Type.Record(Type.String(), Type.Unknown()),
  prevHash: Type.String(),
  hash: Type.String(),
});

const FindingSchema = Type.Object({
  id: Type.String(),
  time: Type.String(),
  tenantId: Type.String(),
  userId: Type.Union([Type.String(), Type.Null()]),
  email: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The user’s email now (null when the user is gone)' })),
  sessionId: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
  evidence: Type.Record(Type.String(), Type.Unknown()),
  action: Type.String(),
});

const ChainPointSchema = Type.Union([Type.Object({ seq: Type.Integer(), hash: Type.String() }), Type.Null()]);
const VerifySchema = Type.Object({
  ok: Type.Boolean(),
  tenants: Type.Array(
    Type.Object({
      tenantId: Type.String(),
      ok: Type.Boolean(),
      records: Type.Integer(),
      firstSeq: Type.Union([Type.Integer(), Type.Null()]),
      lastSeq: Type.Union([Type.Integer(), Type.Null()]),
      head: ChainPointSchema,
      anchor: ChainPointSchema,
      problems: Type.Array(Type.Object({ seq: Type.Integer(), problem: Type.String(), detail: Type.String() })),
    }),
  ),
});

export function auditRecordJson(r: AuditRecord) {
  return { ...r, time: new Date(r.time).toISOString() };
}

export function findingJson(r: AuditRecord) {
  return {
    id: r.id,
    time: new Date(r.time).toISOString(),
    tenantId: r.tenantId,
    userId: r.userId,
    sessionId: r.sessionId,
    reason: typeof r.details.reason === 'string' ? r.details.reason : 'unknown',
    evidence: (r.details.evidence ?? {}) as Record<string, unknown>,
    action: typeof r.details.action === 'string' ? r.details.action : 'record',
  };
}

/** The users' emails beside their ids: one read per distinct user of the page. */
async function withEmails<T extends { tenantId: string; userId: string | null }>(deps: Deps, items: T[]): Promise<Array<T & { email: string | null }>> {
  const emails = new Map<string, string | null>();
  for (const r of items) {
    if (r.userId === null) continue;
    const key = `${r.tenantId} ${r.userId}`;
    if (!emails.has(key)) emails.set(key, (await deps.store.getUser(r.tenantId, r.userId))?.email ?? null);
  }
  return items.map((r) => ({ ...r, email: r.userId === null ? null : (emails.get(`${r.tenantId} ${r.userId}`) ?? null) }));
}

/** The tenant a query is about: the one asked for (if allowed), or a tenant admin's own. */
function tenantOf(request: FastifyRequest, asked: string | undefined): string {
  const scope = request.admin;
  if (asked !== undefined) {
    assertAdminOf(request, asked);
    return asked;
  }
  if (scope?.kind === 'tenant') return scope.tenantId;
  throw new BadRequest('invalid_request', 'tenantId is required.');
}

const ms = (iso: string | undefined): number | undefined => (iso === undefined ? undefined : Date.parse(iso));
const types = (t: string | undefined): string[] | undefined => (t === undefined ? undefined : t.split(','));

export async function adminAuditRoutes(app: App, deps: Deps): Promise<void> {
  const admin = requireAdmin(deps);

  app.get(
    '/api/v1/admin/audit',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Read the audit log of a tenant, newest first',
        description: 'Filters combine. `from`/`to` bound the event time (inclusive). A page may hold fewer than `limit` records and still have a `nextCursor`.',
        security: BearerSecurity,
        querystring: Type.Object(
          {
            tenantId: Type.Optional(TenantId),
            userId: Type.Optional(Type.String({ maxLength: 64 })),
            type: Type.Optional(TypeFilter),
            from: Type.Optional(Instant),
            to: Type.Optional(Instant),
            cursor: Type.Optional(Cursor),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: PageOf(AuditRecordSchema), ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await deps.store.audit.list({
        tenantId: tenantOf(request, q.tenantId),
        order: 'desc',
        limit: q.limit ?? 100,
        cursor: q.cursor ?? null,
        ...(q.userId !== undefined ? { userId: q.userId } : {}),
        ...(q.type !== undefined ? { types: types(q.type) } : {}),
        ...(q.from !== undefined ? { from: ms(q.from) } : {}),
        ...(q.to !== undefined ? { to: ms(q.to) } : {}),
      });
      return { items: await withEmails(deps, page.items.map(auditRecordJson)), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/api/v1/admin/audit/verify',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Check the hash chain of the audit log (one tenant, or every tenant)',
        description:
          '`ok: false` names the first problems: an edited record (`hash_mismatch`), a deleted one (`missing_records`, `broken_link`), a chain that ends before its head (`missing_records`). Keep the `head` hashes elsewhere to detect a rewrite of a whole chain.',
        security: BearerSecurity,
        querystring: Type.Object({ tenantId: Type.Optional(TenantId) }, { additionalProperties: false }),
        response: { 200: VerifySchema, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const asked = request.query.tenantId;
      const scope = request.admin;
      const tenantId = asked !== undefined || scope?.kind === 'tenant' ? tenantOf(request, asked) : undefined;
      return verifyAudit(deps.store.audit, tenantId);
    },
  );

  app.get(
    '/api/v1/admin/audit/export',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Export the audit log as JSON lines, oldest first',
        description: 'One record per line exactly as stored (time in epoch ms), so that the chain can be checked again offline.',
        security: BearerSecurity,
        querystring: Type.Object(
          {
            tenantId: Type.Optional(TenantId),
            userId: Type.Optional(Type.String({ maxLength: 64 })),
            type: Type.Optional(TypeFilter),
            from: Type.Optional(Instant),
            to: Type.Optional(Instant),
          },
          { additionalProperties: false },
        ),
        produces: ['application/x-ndjson'],
      },
    },
    async (request, reply) => {
      const q = request.query;
      const records = exportRecords(deps.store.audit, {
        tenantId: tenantOf(request, q.tenantId),
        ...(q.userId !== undefined ? { userId: q.userId } : {}),
        ...(q.type !== undefined ? { types: types(q.type) } : {}),
        ...(q.from !== undefined ? { from: ms(q.from) } : {}),
        ...(q.to !== undefined ? { to: ms(q.to) } : {}),
      });
      async function* lines() {
        for await (const r of records) yield JSON.stringify(r) + '\n';
      }
      return reply.type('application/x-ndjson; charset=utf-8').send(Readable.from(lines()));
    },
  );

  app.get(
    '/api/v1/admin/anomalies',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Anomaly findings of a tenant, newest first',
        security: BearerSecurity,
        querystring: Type.Object(
          {
            tenantId: Type.Optional(TenantId),
            userId: Type.Optional(Type.String({ maxLength: 64 })),
            reason: Type.Optional(Type.String({ maxLength: 64, pattern: '^[a-z_]+$' })),
            cursor: Type.Optional(Cursor),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: PageOf(FindingSchema), ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await deps.store.audit.listAnomalies({
        tenantId: tenantOf(request, q.tenantId),
        limit: q.limit ?? 100,
        cursor: q.cursor ?? null,
        ...(q.userId !== undefined ? { userId: q.userId } : {}),
        ...(q.reason !== undefined ? { reason: q.reason } : {}),
      });
      return { items: await withEmails(deps, page.items.map(findingJson)), nextCursor: page.nextCursor };
    },
  );

  // ---- live stream ----------------------------------------------------------------------------

  const streams = new Set<() => void>();
  /** Open streams per administrator (`platform`, or `<tenant> <user>`). */
  const perAdmin = new Map<string, number>();
  app.addHook('preClose', async () => {
    for (const end of streams) end();
  });

  /**
   * Is the administrator who opened a stream still one? The bootstrap credential cannot change
   * while the process runs; a user needs their session still valid (strict: from the store, not
   * the cache), not marked for re-authentication, and the admin role.
   */
  async function stillAdmin(scope: AdminScope, sessionHandle: string | null): Promise<boolean> {
    const who = adminUserOf(scope);
    if (who === null) return true;
    if (sessionHandle === null) return false;
    const session = await deps.sessionCache.getValid(sessionHandle, deps.clock.now(), true);
    if (!session || session.userId !== who.userId || reauthMarkOf(session) !== null) return false;
    const user = await deps.store.getUser(who.tenantId, who.userId);
    return user !== null && user.roles.includes(ADMIN_ROLE) && user.disabled !== true;
  }

  app.get(
    '/api/v1/admin/events',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        summary: 'Live audit events (Server-Sent Events)',
        description:
          'Each appended audit record, from every Tessera process on the store, as `id: <tenant>:<seq>`, `event: <type>`, `data: <record JSON>`. Comments (`: keep-alive`) every 15 s, each after a fresh check of the credential: the stream ends when a tenant administrator loses the role or their session ends. A client more than 1 MiB behind is dropped. At most 5 streams per administrator and 100 per process (429 `too_many_streams`). A tenant administrator gets their own tenant only.',
        security: BearerSecurity,
        querystring: Type.Object({ tenantId: Type.Optional(TenantId), type: Type.Optional(TypeFilter) }, { additionalProperties: false }),
        produces: ['text/event-stream'],
        response: problems(401, 403, 429),
      },
    },
    async (request, reply) => {
      const q = request.query;
      const scope = request.admin;
      let tenantId = q.tenantId;
      if (tenantId !== undefined) assertAdminOf(request, tenantId);
      else if (scope?.kind === 'tenant') tenantId = scope.tenantId;
      if (scope === null) throw new Forbidden('admin_required', 'An admin credential is required.');
      const who = adminUserOf(scope);
      const adminKey = who === null ? 'platform' : `${who.tenantId} ${who.userId}`;
      if ((perAdmin.get(adminKey) ?? 0) >= liveStreamSettings.maxPerAdmin) {
        throw new TooManyRequests(5, 'too_many_streams', `At most ${liveStreamSettings.maxPerAdmin} live streams per administrator; close one first.`);
      }
      if (streams.size >= liveStreamSettings.maxPerProcess) {
        throw new TooManyRequests(5, 'too_many_streams', 'This server has as many live streams as it serves; try again shortly.');
      }
      const sessionHandle = who !== null ? (request.auth?.session.handle ?? null) : null;

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'x-accel-buffering': 'no',
        connection: 'keep-alive',
        'x-request-id': request.ctx.requestId,
        'x-correlation-id': request.ctx.correlationId,
      });
      let ended = false;
      let checking = false;
      /** Writes unless ended; a client too far behind is dropped (its buffered output freed). */
      const send = (chunk: string) => {
        if (ended) return;
        res.write(chunk);
        if (res.writableLength > liveStreamSettings.maxBufferedBytes) {
          request.log.warn({ buffered: res.writableLength }, 'live stream dropped: the client does not keep up');
          end();
          res.destroy();
        }
      };
      const unwatch = deps.monitor.watch(
        { ...(tenantId !== undefined ? { tenantId } : {}), ...(q.type !== undefined ? { types: types(q.type) } : {}) },
        (r) => send(`id: ${r.id}\nevent: ${r.type}\ndata: ${JSON.stringify(auditRecordJson(r))}\n\n`),
      );
      const keepAlive = setInterval(() => {
        if (checking) return;
        checking = true;
        stillAdmin(scope, sessionHandle).then(
          (ok) => {
            checking = false;
            if (ok) send(': keep-alive\n\n');
            else end();
          },
          (err: unknown) => {
            // Cannot tell (the store does not answer): fail closed; the client reconnects and is checked anew.
            checking = false;
            request.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'live stream ended: the credential could not be checked');
            end();
          },
        );
      }, liveStreamSettings.keepAliveMs);
      keepAlive.unref();
      function end() {
        if (ended) return;
        ended = true;
        clearInterval(keepAlive);
        unwatch();
        streams.delete(end);
        const n = (perAdmin.get(adminKey) ?? 1) - 1;
        if (n <= 0) perAdmin.delete(adminKey);
        else perAdmin.set(adminKey, n);
        if (!res.writableEnded) res.end();
      }
      streams.add(end);
      perAdmin.set(adminKey, (perAdmin.get(adminKey) ?? 0) + 1);
      res.write('retry: 2000\n\n');
      // The response's 'close': the client went away (or the stream was ended here).
      res.on('close', end);
      res.on('error', end);
    },
  );
}
