// PUT/GET/DELETE /api/v1/admin/banks/{bankId} (issue 15): a tenant's banks. A bank id is unique
// within its tenant; a tenant administrator manages its own tenant's banks, the platform
// administrator names the tenant (`tenantId` in the body of PUT, `?tenantId=` on GET/DELETE).
// The client key is sealed (AES-256-GCM, key `seal-bank-keys`) before it is stored and never
// returned; registration checks the URL against the outbound rules but does not contact the bank.

import { Type } from 'typebox';
import { checkTlsMaterial, DEFAULT_BANK_TIMEOUT_MS, MAX_BANK_TIMEOUT_MS, MIN_BANK_TIMEOUT_MS, type Bank, type BankTls } from '../../domain/bank.ts';
import { BANK_ID_PATTERN } from '../../domain/consent.ts';
import { BadRequest, NotFound } from '../../domain/errors.ts';
import { checkBankUrl } from '../../flows/banks.ts';
import { seal } from '../../tokens/sealing.ts';
import { assertAdminOf, requireAdmin } from '../admin-auth.ts';
import type { App, Deps } from '../deps.ts';
import type { FastifyRequest } from 'fastify';
import { BearerSecurity, problems, TenantId } from '../schemas.ts';

const Pem = Type.String({ minLength: 1, maxLength: 16_384 });

const BankInput = Type.Object(
  {
    tenantId: TenantId,
    name: Type.String({ minLength: 1, maxLength: 100 }),
    protocol: Type.Literal('berlin-group'),
    baseUrl: Type.String({ minLength: 8, maxLength: 2048, description: 'The XS2A root; calls go to {baseUrl}/v1/…' }),
    timeoutMs: Type.Optional(Type.Integer({ minimum: MIN_BANK_TIMEOUT_MS, maximum: MAX_BANK_TIMEOUT_MS, description: `Per call; default ${DEFAULT_BANK_TIMEOUT_MS}` })),
    tls: Type.Optional(
      Type.Object(
        {
          clientCertificate: Type.Optional(Pem),
          clientKey: Type.Optional(Type.String({ minLength: 1, maxLength: 16_384, description: 'PEM, unencrypted; sealed at rest, never returned' })),
          caCertificate: Type.Optional(Pem),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const BankSchema = Type.Object({
  bankId: Type.String(),
  tenantId: Type.String(),
  name: Type.String(),
  protocol: Type.Literal('berlin-group'),
  baseUrl: Type.String(),
  timeoutMs: Type.Integer(),
  tls: Type.Union([
    Type.Object({
      clientCertificate: Type.Union([Type.String(), Type.Null()]),
      hasClientKey: Type.Boolean(),
      caCertificate: Type.Union([Type.String(), Type.Null()]),
    }),
    Type.Null(),
  ]),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

export function bankJson(b: Bank) {
  return {
    bankId: b.bankId,
    tenantId: b.tenantId,
    name: b.name,
    protocol: b.protocol,
    baseUrl: b.baseUrl,
    timeoutMs: b.timeoutMs,
    tls: b.tls && { clientCertificate: b.tls.clientCertificate, hasClientKey: b.tls.sealedClientKey !== null, caCertificate: b.tls.caCertificate },
    createdAt: new Date(b.createdAt).toISOString(),
    updatedAt: new Date(b.updatedAt).toISOString(),
  };
}

const Params = Type.Object({ bankId: Type.String({ pattern: BANK_ID_PATTERN }) });
const TenantQuery = Type.Object({ tenantId: Type.Optional(TenantId) }, { additionalProperties: false });

/** The tenant a GET/DELETE is about: the tenant administrator's own, or the platform's `?tenantId=`. */
function tenantOf(request: FastifyRequest, given: string | undefined): string {
  const scope = request.admin;
  const tenantId = given ?? (scope?.kind === 'tenant' ? scope.tenantId : undefined);
  if (tenantId === undefined) throw new BadRequest('invalid_request', 'Name the tenant with ?tenantId=.', { field: 'tenantId' });
  assertAdminOf(request, tenantId);
  return tenantId;
}

export async function adminBankRoutes(app: App, deps: Deps): Promise<void> {
  const guard = requireAdmin(deps);

  app.put(
    '/api/v1/admin/banks/:bankId',
    {
      preHandler: guard,
      schema: {
        tags: ['admin'],
        summary: "Create or replace one of a tenant's banks (Berlin Group NextGenPSD2)",
        description:
          '201 when created, 200 when replaced. `tls.clientCertificate` and `tls.clientKey` come together (mutual TLS); `tls.caCertificate` may come alone. The key is sealed and never returned. The bank is not contacted.',
        security: BearerSecurity,
        params: Params,
        body: BankInput,
        response: { 200: BankSchema, 201: BankSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { bankId } = request.params;
      const input = request.body;
      assertAdminOf(request, input.tenantId);
      if ((await deps.store.getTenant(input.tenantId)) === null) {
        throw new NotFound('tenant_not_found', `No tenant "${input.tenantId}"; create it first with PUT /api/v1/admin/tenants/${input.tenantId}.`);
      }
      const url = await checkBankUrl(deps, input.baseUrl, 'baseUrl');
      let tls: BankTls | null = null;
      if (input.tls !== undefined) {
        checkTlsMaterial(input.tls);
        tls = {
          clientCertificate: input.tls.clientCertificate ?? null,
          sealedClientKey: input.tls.clientKey === undefined ? null : seal(deps.keys.bankKeys, input.tls.clientKey),
          caCertificate: input.tls.caCertificate ?? null,
        };
        if (tls.clientCertificate === null && tls.caCertificate === null) tls = null;
      }
      const now = deps.clock.now();
      const previous = await deps.store.banks.getBank(input.tenantId, bankId);
      const bank: Bank = {
        tenantId: input.tenantId,
        bankId,
        name: input.name,
        protocol: input.protocol,
        baseUrl: url.toString(),
        timeoutMs: input.timeoutMs ?? DEFAULT_BANK_TIMEOUT_MS,
        tls,
        createdAt: previous?.createdAt ?? now,
        updatedAt: now,
      };
      const r = await deps.store.banks.putBank(bank);
      return reply.code(r.created ? 201 : 200).send(bankJson(r.bank));
    },
  );

  app.get(
    '/api/v1/admin/banks/:bankId',
    {
      preHandler: guard,
      schema: {
        tags: ['admin'],
        summary: "One of a tenant's banks (never its client key)",
        security: BearerSecurity,
        params: Params,
        querystring: TenantQuery,
        response: { 200: BankSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request, request.query.tenantId);
      const bank = await deps.store.banks.getBank(tenantId, request.params.bankId);
      if (bank === null) throw new NotFound('bank_not_found', `No bank "${request.params.bankId}" in tenant "${tenantId}".`);
      return bankJson(bank);
    },
  );

  app.delete(
    '/api/v1/admin/banks/:bankId',
    {
      preHandler: guard,
      schema: {
        tags: ['admin'],
        summary: "Remove one of a tenant's banks",
        description: 'Consents already given at the bank stay as they are; new ones can no longer be started.',
        security: BearerSecurity,
        params: Params,
        querystring: TenantQuery,
        response: { 204: Type.Null(), ...problems(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenantId = tenantOf(request, request.query.tenantId);
      if (!(await deps.store.banks.deleteBank(tenantId, request.params.bankId))) {
        throw new NotFound('bank_not_found', `No bank "${request.params.bankId}" in tenant "${tenantId}".`);
      }
      return reply.code(204).send(null);
    },
  );
}
