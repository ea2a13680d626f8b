// A bank for tests and the demo (issue 15): the ASPSP side of the Berlin Group NextGenPSD2 v1.3
// subset Tessera uses, redirect approach — AIS consents, SEPA credit transfers, their status, an
// SCA page with Approve / Deny, accounts for a valid consent, termination and cancellation.
// Runs on its own (`npx tessera bank-simulator --port …`), in memory; over TLS with a
// client-certificate check on the XS2A API when started with a client CA (the SCA page, visited
// by the user's browser, needs no client certificate).
//
// With `testControl`, two extra endpoints let a test shape its behaviour and see what it got:
//   POST /__sim/behaviour  { "delayMs"?, "pendingReads"?, "failStatus"?, "omitScaRedirect"? }
//   GET  /__sim/requests   every XS2A request received: method, path, the headers that matter
// Never expose a simulator with test control to anyone.

import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface SimulatorOptions {
  port: number;
  host?: string;
  /** TLS: the server's certificate and key (PEM). Without them the simulator speaks plain HTTP. */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Enables /__sim/behaviour and /__sim/requests. */
  testControl?: boolean;
  /** The origin the SCA links use; default: how the simulator is reached (scheme://host:port). */
  publicUrl?: string;
}

export interface RunningSimulator {
  url: string;
  close(): Promise<void>;
}

interface Behaviour {
  /** Every XS2A answer waits this long (a slow bank). */
  delayMs: number;
  /** After approval or denial, this many status reads still answer the not-final status. */
  pendingReads: number;
  /** Every XS2A call answers this status (a failing bank); 0: off. */
  failStatus: number;
  /** Starts answer 201 without `_links.scaRedirect` (a broken bank). */
  omitScaRedirect: boolean;
}

interface Resource {
  kind: 'consents' | 'payments';
  id: string;
  /** consentStatus (AIS) or transactionStatus (PIS). */
  status: string;
  /** The final status an approval or denial sets, shown after `pendingReads` more reads. */
  decided: string | null;
  pendingReadsLeft: number;
  okUri: string;
  nokUri: string;
  validUntil: string | null;
  payment: { amount: string; currency: string; creditorIban: string; creditorName: string } | null;
}

const ACCOUNTS = [
  { resourceId: 'acc-everyday', iban: 'DE75512108001245126199', currency: 'EUR', name: 'Everyday account', product: 'Girokonto', cashAccountType: 'CACC', balance: '1523.45' },
  { resourceId: 'acc-savings', iban: 'DE02100100109307118603', currency: 'EUR', name: 'Savings', product: 'Tagesgeld', cashAccountType: 'SVGS', balance: '10250.00' },
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function startBankSimulator(opts: SimulatorOptions): Promise<RunningSimulator> {
  const resources = new Map<string, Resource>();
  const behaviour: Behaviour = { delayMs: 0, pendingReads: 0, failStatus: 0, omitScaRedirect: false };
  const requests: Array<{ method: string; path: string; headers: Record<string, string>; clientCertificate: boolean }> = [];
  let origin = '';

  const key = (kind: Resource['kind'], id: string) => `${kind}/${id}`;

  function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers });
    res.end(text);
  }
  const tppError = (res: ServerResponse, status: number, code: string, text: string, requestId?: string) =>
    send(res, status, { tppMessages: [{ category: 'ERROR', code, text }] }, requestId ? { 'x-request-id': requestId } : {});

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 65_536) return null;
      chunks.push(c as Buffer);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    } catch {
      return null;
    }
  }

  async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  }

  function links(r: Resource) {
    const base = r.kind === 'consents' ? `/v1/consents/${r.id}` : `/v1/payments/sepa-credit-transfers/${r.id}`;
    return {
      ...(behaviour.omitScaRedirect ? {} : { scaRedirect: { href: `${origin}/sca/${r.kind}/${r.id}` } }),
      self: { href: base },
      status: { href: `${base}/status` },
    };
  }

  /** A status read: after a decision, `pendingReads` reads still see the not-final status. */
  function readStatus(r: Resource): string {
    if (r.decided !== null) {
      if (r.pendingReadsLeft > 0) {
        r.pendingReadsLeft -= 1;
        return r.status;
      }
      r.status = r.decided;
      r.decided = null;
    }
    return r.status;
  }

  async function xs2a(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const h = (name: string) => (typeof req.headers[name] === 'string' ? (req.headers[name]) : '');
    const socket = req.socket as TLSSocket;
    const clientCertificate = opts.tls?.clientCa !== undefined && socket.authorized === true;
    requests.push({
      method: req.method ?? '',
      path: url.pathname + url.search,
      headers: Object.fromEntries(
        ['x-request-id', 'psu-ip-address', 'tpp-redirect-uri', 'tpp-nok-redirect-uri', 'consent-id'].filter((n) => h(n) !== '').map((n) => [n, h(n)]),
      ),
      clientCertificate,
    });
    if (behaviour.delayMs > 0) await new Promise((r) => setTimeout(r, behaviour.delayMs));
    const requestId = h('x-request-id');
    if (opts.tls?.clientCa !== undefined && !clientCertificate) {
      return tppError(res, 401, 'CERTIFICATE_INVALID', 'A TPP client certificate issued by a trusted CA is required.', requestId);
    }
    if (!UUID.test(requestId)) return tppError(res, 400, 'FORMAT_ERROR', 'X-Request-ID must be a UUID.');
    if (behaviour.failStatus > 0) return tppError(res, behaviour.failStatus, 'INTERNAL_SERVER_ERROR', 'Simulated failure.', requestId);
    const ridHeader = { 'x-request-id': requestId };
    const parts = url.pathname.split('/').filter((p) => p !== '');
    const method = req.method;

    // POST /v1/consents, POST /v1/payments/sepa-credit-transfers
    const isConsentCreate = method === 'POST' && parts.length === 2 && parts[1] === 'consents';
    const isPaymentCreate = method === 'POST' && parts.length === 3 && parts[1] === 'payments' && parts[2] === 'sepa-credit-transfers';
    if (isConsentCreate || isPaymentCreate) {
      const okUri = h('tpp-redirect-uri');
      if (h('psu-ip-address') === '') return tppError(res, 400, 'FORMAT_ERROR', 'PSU-IP-Address is missing.', requestId);
      if (!/^https?:\/\//.test(okUri)) return tppError(res, 400, 'FORMAT_ERROR', 'TPP-Redirect-URI is missing (redirect approach).', requestId);
      const body = (await readJson(req)) as Record<string, unknown> | null;
      if (body === null || typeof body !== 'object') return tppError(res, 400, 'FORMAT_ERROR', 'The body is not JSON.', requestId);
      const id = randomUUID().replace(/-/g, '');
      if (isConsentCreate) {
        const access = body.access as Record<string, unknown> | undefined;
        if (typeof body.validUntil !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(body.validUntil) || typeof access !== 'object' || typeof body.recurringIndicator !== 'boolean') {
          return tppError(res, 400, 'FORMAT_ERROR', 'access, recurringIndicator and validUntil (YYYY-MM-DD) are required.', requestId);
        }
        const r: Resource = { kind: 'consents', id, status: 'received', decided: null, pendingReadsLeft: 0, okUri, nokUri: h('tpp-nok-redirect-uri') || okUri, validUntil: body.validUntil, payment: null };
        resources.set(key('consents', id), r);
        return send(res, 201, { consentStatus: 'received', consentId: id, _links: links(r) }, { ...ridHeader, location: `${origin}/v1/consents/${id}`, 'aspsp-sca-approach': 'REDIRECT' });
      }
      const amount = body.instructedAmount as Record<string, unknown> | undefined;
      const creditor = body.creditorAccount as Record<string, unknown> | undefined;
      if (typeof amount?.amount !== 'string' || typeof amount.currency !== 'string' || typeof creditor?.iban !== 'string' || typeof body.creditorName !== 'string') {
        return tppError(res, 400, 'FORMAT_ERROR', 'instructedAmount, creditorAccount.iban and creditorName are required.', requestId);
      }
      const r: Resource = {
        kind: 'payments',
        id,
        status: 'RCVD',
        decided: null,
        pendingReadsLeft: 0,
        okUri,
        nokUri: h('tpp-nok-redirect-uri') || okUri,
        validUntil: null,
        payment: { amount: amount.amount, currency: amount.currency, creditorIban: creditor.iban, creditorName: body.creditorName },
      };
      resources.set(key('payments', id), r);
      return send(res, 201, { transactionStatus: 'RCVD', paymentId: id, _links: links(r) }, { ...ridHeader, location: `${origin}/v1/payments/sepa-credit-transfers/${id}`, 'aspsp-sca-approach': 'REDIRECT' });
    }

    // GET …/{id}/status, DELETE …/{id}
    const kind = parts[1] === 'consents' ? 'consents' : parts[1] === 'payments' && parts[2] === 'sepa-credit-transfers' ? 'payments' : null;
    const idAt = kind === 'consents' ? 2 : 3;
    if (kind !== null && parts.length >= idAt + 1) {
      const r = resources.get(key(kind, parts[idAt] as string));
      if (r === undefined) return tppError(res, 403, 'RESOURCE_UNKNOWN', 'No such resource.', requestId);
      if (method === 'GET' && parts.length === idAt + 2 && parts[idAt + 1] === 'status') {
        const status = readStatus(r);
        return send(res, 200, kind === 'consents' ? { consentStatus: status } : { transactionStatus: status }, ridHeader);
      }
      if (method === 'DELETE' && parts.length === idAt + 1) {
        readStatus(r);
        if (kind === 'consents') {
          r.status = 'terminatedByTpp';
          r.decided = null;
          return send(res, 204, undefined, ridHeader);
        }
        if (r.status === 'RCVD' || r.status === 'PDNG' || r.status === 'PATC') {
          r.status = 'CANC';
          r.decided = null;
          return send(res, 204, undefined, ridHeader);
        }
        return tppError(res, 405, 'CANCELLATION_INVALID', 'The payment can no longer be cancelled.', requestId);
      }
    }

    // GET /v1/accounts
    if (method === 'GET' && parts.length === 2 && parts[1] === 'accounts') {
      const r = resources.get(key('consents', h('consent-id')));
      if (r === undefined) return tppError(res, 403, 'CONSENT_UNKNOWN', 'The Consent-ID is unknown.', requestId);
      const status = readStatus(r);
      if (status === 'expired' || (r.validUntil !== null && new Date(`${r.validUntil}T23:59:59Z`).getTime() < Date.now())) {
        return tppError(res, 401, 'CONSENT_EXPIRED', 'The consent has expired.', requestId);
      }
      if (status !== 'valid') return tppError(res, 401, 'CONSENT_INVALID', `The consent is ${status}.`, requestId);
      const withBalance = url.searchParams.get('withBalance') === 'true';
      return send(
        res,
        200,
        {
          accounts: ACCOUNTS.map(({ balance, ...a }) => ({
            ...a,
            ...(withBalance ? { balances: [{ balanceAmount: { currency: a.currency, amount: balance }, balanceType: 'closingBooked' }] } : {}),
            _links: { balances: { href: `/v1/accounts/${a.resourceId}/balances` } },
          })),
        },
        ridHeader,
      );
    }
    return tppError(res, 404, 'SERVICE_INVALID', 'This simulator does not offer that.', requestId);
  }

  function scaPage(res: ServerResponse, r: Resource) {
    const what =
      r.kind === 'consents'
        ? `<section id="ais"><p>An app asks to read your accounts until <b>${escapeHtml(r.validUntil ?? '')}</b>.</p></section>`
        : `<section id="pis"><p>Pay <b id="amount">${escapeHtml(r.payment?.amount ?? '')} ${escapeHtml(r.payment?.currency ?? '')}</b> to <b>${escapeHtml(r.payment?.creditorName ?? '')}</b> (${escapeHtml(r.payment?.creditorIban ?? '')}).</p></section>`;
    const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Simulated bank: approve</title></head>
<body><h1>Simulated bank</h1>${what}
<form method="post" action="/sca/${r.kind}/${r.id}/approve"><button id="approve" type="submit">Approve</button></form>
<form method="post" action="/sca/${r.kind}/${r.id}/deny"><button id="deny" type="submit">Deny</button></form>
</body></html>`;
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': "default-src 'none'; form-action 'self' http: https:; base-uri 'none'; frame-ancestors 'none'",
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    });
    res.end(html);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://simulator.invalid');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    if (parts[0] === 'v1') return xs2a(req, res, url);
    if (parts[0] === 'sca' && parts.length >= 3 && (parts[1] === 'consents' || parts[1] === 'payments')) {
      const r = resources.get(key(parts[1], parts[2] as string));
      if (r === undefined) return send(res, 404, { error: 'unknown' });
      if (req.method === 'GET' && parts.length === 3) return scaPage(res, r);
      if (req.method === 'POST' && parts.length === 4 && (parts[3] === 'approve' || parts[3] === 'deny')) {
        await readForm(req);
        const notFinal = r.kind === 'consents' ? r.status === 'received' : r.status === 'RCVD';
        if (!notFinal) return send(res, 409, { error: 'already decided' });
        const approve = parts[3] === 'approve';
        r.decided = r.kind === 'consents' ? (approve ? 'valid' : 'rejected') : approve ? 'ACSC' : 'RJCT';
        r.pendingReadsLeft = behaviour.pendingReads;
        if (r.pendingReadsLeft === 0) readStatus(r);
        res.writeHead(303, { location: approve ? r.okUri : r.nokUri });
        return void res.end();
      }
    }
    if (opts.testControl && parts[0] === '__sim') {
      if (req.method === 'POST' && parts[1] === 'behaviour') {
        const b = ((await readJson(req)) ?? {}) as Partial<Behaviour>;
        if (typeof b.delayMs === 'number') behaviour.delayMs = b.delayMs;
        if (typeof b.pendingReads === 'number') behaviour.pendingReads = b.pendingReads;
        if (typeof b.failStatus === 'number') behaviour.failStatus = b.failStatus;
        if (typeof b.omitScaRedirect === 'boolean') behaviour.omitScaRedirect = b.omitScaRedirect;
        return send(res, 200, behaviour);
      }
      if (req.method === 'GET' && parts[1] === 'requests') return send(res, 200, requests);
      if (req.method === 'GET' && parts[1] === 'resources') return send(res, 200, [...resources.values()]);
    }
    return send(res, 404, { error: 'not found' });
  }

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { error: 'simulator failure' });
      else res.destroy();
    });
  };
  const server: Server = opts.tls
    ? createHttpsServer(
        { cert: opts.tls.cert, key: opts.tls.key, ...(opts.tls.clientCa ? { ca: opts.tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}) },
        listener,
      )
    : createHttpServer(listener);
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  origin = (opts.publicUrl ?? `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(/\/$/, '');
  return {
    url: origin,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
