// Consents and consent redirects (docs/api.md §Consent redirects): the tenant's banks, start an AIS
// consent or a payment (each with its own redirect to the bank and its own `__Secure-rid` cookie),
// read and withdraw consents, the accounts read at the bank, and the return from the bank. (The
// demo pages are a module of their own, src/http/demo, registered in demo mode only.)

import { Type } from 'typebox';
import { BANK_ID_PATTERN, CONSENT_ID_PATTERN, effectiveConsentStatus, type Consent, type ConsentType, type Payment } from '../../domain/consent.ts';
import { Forbidden, NotFound, TooManyRequests } from '../../domain/errors.ts';
import { redirectCookiePath } from '../../domain/redirect.ts';
import { hashSecret, newSecret } from '../../domain/secrets.ts';
import { askBankForStatus, readAccounts, withdrawConsent } from '../../flows/consent-lifecycle.ts';
import { requireReturnTarget, returnFromRedirect, startConsentRedirect } from '../../flows/consent-redirects.ts';
import { authenticate, loadTenant, originOf, type Authenticated } from '../authenticate.ts';
import { clearCookie, readCookie, setCookie } from '../cookies.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, PageOf, problems } from '../schemas.ts';
import type { FastifyReply, FastifyRequest } from 'fastify';

const BankId = Type.String({ pattern: BANK_ID_PATTERN, description: "A bank of the user's tenant (GET /api/v1/banks)" });
const RedirectId = Type.String({ pattern: '^[A-Za-z0-9_-]{12}\\.[A-Za-z0-9_-]{22}$', description: 'The redirect session handle' });
const Cursor = Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_-]*$' });

const PaymentSchema = Type.Object(
  {
    amount: Type.String({ minLength: 1, maxLength: 20, description: 'Decimal, at most two fraction digits: "12.50"' }),
    currency: Type.String({ minLength: 3, maxLength: 3, description: 'ISO 4217' }),
    creditorIban: Type.String({ minLength: 15, maxLength: 42 }),
    creditorName: Type.String({ minLength: 1, maxLength: 70 }),
  },
  { additionalProperties: false },
);

const StartedSchema = Type.Object({
  consentId: Type.String(),
  redirectId: Type.String(),
  location: Type.String({ description: "The bank's consent UI: send the browser there" }),
});

const ConsentViewSchema = Type.Object({
  id: Type.String(),
  type: Type.Union([Type.Literal('ais'), Type.Literal('pis')]),
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('confirmed'),
    Type.Literal('rejected'),
    Type.Literal('superseded'),
    Type.Literal('revoked'),
    Type.Literal('expired'),
  ]),
  bankId: Type.String(),
  createdAt: Type.String(),
  confirmedAt: Type.Union([Type.String(), Type.Null()]),
  endedAt: Type.Union([Type.String(), Type.Null()]),
  validUntil: Type.Union([Type.String(), Type.Null()], { description: 'AIS: until when the bank honours the consent' }),
  payment: Type.Optional(PaymentSchema),
});

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function consentJson(c: Consent, now: number) {
  return {
    id: c.id,
    type: c.type,
    status: effectiveConsentStatus(c, now),
    bankId: c.bankId,
    createdAt: iso(c.createdAt) as string,
    confirmedAt: iso(c.confirmedAt),
    endedAt: iso(c.endedAt),
    validUntil: iso(c.validUntil),
    ...(c.payment ? { payment: c.payment } : {}),
  };
}

/** Consent and payment redirects one user may start per minute. */
export const REDIRECT_STARTS_PER_MINUTE = 30;

export async function consentRoutes(app: App, deps: Deps): Promise<void> {
  const auth = authenticate(deps);

  /** Starts a redirect for the authenticated cookie session; sets its cookie; answers 202. */
  async function start(request: FastifyRequest, reply: FastifyReply, type: ConsentType, bankId: string, payment: Payment | null) {
    const { session, tenant, mode } = request.auth as Authenticated;
    if (mode !== 'cookie') {
      // The return identifies the browser by a cookie and may leave it with a new session cookie:
      // neither means anything to a token-mode client.
      throw new Forbidden('cookie_session_required', 'Consent redirects run in a browser: log in with X-Auth-Mode: cookie.');
    }
    const now = deps.clock.now();
    // Every start writes a consent and a session: bounded per user, shared by all processes.
    const starts = await deps.store.hitCounter(`redirect-starts:${session.tenantId}:${session.userId as string}`, 60_000, now);
    if (starts.count > REDIRECT_STARTS_PER_MINUTE) {
      throw new TooManyRequests(Math.max(1, Math.ceil((starts.resetAt - now) / 1000)), 'too_many_redirects', 'Too many consent redirects started; try again in a minute.');
    }
    // One binding per browser, kept a day; every redirect it starts is bound to it. Set only once
    // the start has succeeded: a failed start leaves no cookie behind.
    const knownBinding = readCookie(request, deps.config, 'rb');
    const binding = knownBinding ?? newSecret();
    const started = await startConsentRedirect(
      deps,
      {
        tenant,
        session,
        type,
        bankId,
        payment,
        browserBinding: hashSecret(binding),
        device: { ip: request.ip, ...(request.ctx.userAgent ? { userAgent: request.ctx.userAgent } : {}) },
      },
      now,
      originOf(request),
    );
    if (knownBinding === null) setCookie(reply, deps.config, { name: 'rb', value: binding, maxAgeSeconds: 86_400, sameSite: 'lax' });
    setCookie(reply, deps.config, {
      name: 'rid',
      value: started.secret,
      path: redirectCookiePath(started.redirect.handle),
      sameSite: 'lax',
      maxAgeSeconds: (started.redirect.absoluteExpiresAt - now) / 1000,
    });
    return reply.code(202).send({ consentId: started.consent.id, redirectId: started.redirect.handle, location: started.location });
  }

  app.post(
    '/api/v1/consents',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: 'Start a consent (AIS, or PIS with a payment) and its redirect to the bank',
        description:
          'Cookie mode only (X-XSRF-TOKEN). Refused with 409 `consent_return_url_unset` when the tenant names no `consentReturnUrl` (outside demo mode). Creates a pending consent and a `redirect` session, sets `__Secure-rid` for that redirect\'s return path (SameSite=Lax) and leaves the session cookie alone. Send the browser to `location`.',
        body: Type.Object(
          { type: Type.Union([Type.Literal('ais'), Type.Literal('pis')]), bankId: BankId, payment: Type.Optional(PaymentSchema) },
          { additionalProperties: false },
        ),
        response: { 202: StartedSchema, ...problems(400, 401, 403, 409, 429, 502, 504) },
      },
    },
    async (request, reply) => start(request, reply, request.body.type, request.body.bankId, request.body.payment ?? null),
  );

  app.post(
    '/api/v1/payments',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: 'Start a payment: its own PIS consent and redirect',
        description: 'The same as POST /api/v1/consents with type "pis": every payment gets its own consent.',
        body: Type.Object(
          {
            bankId: BankId,
            amount: PaymentSchema.properties.amount,
            currency: PaymentSchema.properties.currency,
            creditorIban: PaymentSchema.properties.creditorIban,
            creditorName: PaymentSchema.properties.creditorName,
          },
          { additionalProperties: false },
        ),
        response: { 202: StartedSchema, ...problems(400, 401, 403, 409, 429, 502, 504) },
      },
    },
    async (request, reply) => {
      const { bankId, ...payment } = request.body;
      return start(request, reply, 'pis', bankId, payment);
    },
  );

  app.get(
    '/api/v1/consents',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: "The user's consents, newest first",
        security: BearerSecurity,
        querystring: Type.Object(
          { cursor: Type.Optional(Cursor), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) },
          { additionalProperties: false },
        ),
        response: { 200: PageOf(ConsentViewSchema), ...problems(400, 401) },
      },
    },
    async (request) => {
      const { session } = request.auth as Authenticated;
      const now = deps.clock.now();
      const page = await deps.store.consents.listConsents({
        tenantId: session.tenantId,
        userId: session.userId as string,
        cursor: request.query.cursor ?? null,
        limit: request.query.limit ?? 50,
      });
      return { items: page.items.map((c) => consentJson(c, now)), nextCursor: page.nextCursor };
    },
  );

  app.get(
    '/api/v1/consents/:id',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: 'One of your consents',
        description: 'A pending consent is asked of the bank once before it is shown.',
        security: BearerSecurity,
        params: Type.Object({ id: Type.String({ pattern: CONSENT_ID_PATTERN }) }),
        response: { 200: ConsentViewSchema, ...problems(400, 401, 404) },
      },
    },
    async (request) => {
      const { session } = request.auth as Authenticated;
      let c = await deps.store.consents.getConsent(session.tenantId, session.userId as string, request.params.id);
      if (c === null) throw new NotFound('consent_not_found', 'No such consent.');
      if (effectiveConsentStatus(c, deps.clock.now()) === 'pending') {
        c = (await askBankForStatus(deps, c, { reasks: 0, sessionHandle: session.handle, operation: 'read' }, originOf(request))).consent;
      }
      return consentJson(c, deps.clock.now());
    },
  );

  app.delete(
    '/api/v1/consents/:id',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: 'Withdraw one of your consents',
        description:
          'A pending or confirmed consent becomes `revoked` and is terminated at the bank (AIS: DELETE of the consent; PIS: cancellation of the payment). When the bank cannot be reached the termination is retried later (audit `consent.termination_deferred`).',
        security: BearerSecurity,
        params: Type.Object({ id: Type.String({ pattern: CONSENT_ID_PATTERN }) }),
        response: { 200: ConsentViewSchema, ...problems(400, 401, 404, 409) },
      },
    },
    async (request) => {
      const { session } = request.auth as Authenticated;
      const c = await withdrawConsent(deps, session.tenantId, session.userId as string, request.params.id, session.handle, originOf(request));
      return consentJson(c, deps.clock.now());
    },
  );

  app.get(
    '/api/v1/banks',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: "The banks of your tenant (the bankId of a consent or payment)",
        security: BearerSecurity,
        response: { 200: Type.Array(Type.Object({ bankId: Type.String(), name: Type.String() })), ...problems(401) },
      },
    },
    async (request) => {
      const { session } = request.auth as Authenticated;
      return (await deps.store.banks.listBanks(session.tenantId)).map((b) => ({ bankId: b.bankId, name: b.name }));
    },
  );

  app.get(
    '/api/v1/accounts',
    {
      preHandler: auth,
      schema: {
        tags: ['consents'],
        summary: 'Your accounts at a bank, read at the bank (GET /v1/accounts) with your valid AIS consent',
        security: BearerSecurity,
        querystring: Type.Object({ bankId: BankId }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            bankId: Type.String(),
            consentId: Type.String(),
            accounts: Type.Array(Type.Object({ iban: Type.String(), name: Type.String(), currency: Type.String(), balance: Type.String() })),
          }),
          ...problems(400, 401, 403, 502, 504),
        },
      },
    },
    async (request) => {
      const { session } = request.auth as Authenticated;
      const { bankId } = request.query;
      const r = await readAccounts(deps, session.tenantId, session.userId as string, bankId, session.handle, originOf(request));
      return { bankId, consentId: r.consent.id, accounts: r.accounts };
    },
  );

  app.get(
    '/api/v1/redirects/:redirectId/return',
    {
      // The return consumes its redirect: no automatic HEAD twin that would do the same unseen.
      exposeHeadRoute: false,
      schema: {
        tags: ['consents'],
        summary: 'Return from the bank (top-level navigation): settle the consent, keep or renew the session, 303 to the app',
        description:
          'Needs this redirect\'s `__Secure-rid` cookie (single use). Asks the bank for the consent\'s status (never believes `result`), settles the consent and clears the cookie. If the session that started the redirect has expired meanwhile, sets a new `__Host-sid` — the same one for every return from that session. Answers 303 to the tenant\'s `consentReturnUrl` (unset: the demo page in demo mode, else 409 `consent_return_url_unset` carrying `consentId` and `consentStatus`) with `consentId` and `status` (`pending` when the bank is not final yet).',
        params: Type.Object({ redirectId: RedirectId }),
        querystring: Type.Object({ result: Type.Optional(Type.Union([Type.Literal('ok'), Type.Literal('nok')])) }),
        response: problems(400, 403, 409),
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      const { redirectId } = request.params;
      const secret = readCookie(request, deps.config, 'rid');
      // Whatever happens next, this redirect's cookie has served its purpose.
      clearCookie(reply, deps.config, 'rid', 'lax', redirectCookiePath(redirectId));
      const r = await returnFromRedirect(
        deps,
        {
          redirectId,
          secret,
          binding: readCookie(request, deps.config, 'rb'),
          result: request.query.result ?? null,
          device: { ip: request.ip, ...(request.ctx.userAgent ? { userAgent: request.ctx.userAgent } : {}) },
        },
        (id) => loadTenant(deps, id, now),
        now,
        originOf(request),
      );
      if (r.session.outcome === 'renewed') {
        const s = r.session.session;
        setCookie(reply, deps.config, {
          name: 'sid',
          value: r.session.secret,
          maxAgeSeconds: ((s.idleExpiresAt ?? s.absoluteExpiresAt) - now) / 1000,
          sameSite: 'strict',
        });
      }
      const status = effectiveConsentStatus(r.consent, deps.clock.now());
      // Unset only when an administrator cleared it after this redirect started (a start is
      // refused without it): the consent is settled all the same, and the problem says how.
      const target = new URL(requireReturnTarget(deps, r.tenant, { consentId: r.consent.id, consentStatus: status }), deps.config.publicUrl);
      target.searchParams.set('consentId', r.consent.id);
      target.searchParams.set('status', status);
      return reply.redirect(target.toString(), 303);
    },
  );
}
