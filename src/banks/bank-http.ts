// One HTTP call to a bank: a per-call deadline (connect, TLS, headers and body together), the
// bank's own TLS material (client certificate for mutual TLS, its CA), a bounded body, and the
// outbound policy asked twice — once for the URL before anything is sent, once for the address
// the name resolved to when the socket connects (so a DNS answer cannot move a public name onto
// a private address between registration and call).
//
// Failures are BankCallError values with a short code; their messages may name low-level
// details (for the server log), which callers never put in a response or an audit event.

import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';

export type BankFailure =
  /** No answer within the bank's timeout. */
  | 'timeout'
  /** Connection refused or reset, DNS failure, TLS handshake failure. */
  | 'unreachable'
  /** The outbound policy refused the URL or the resolved address. */
  | 'refused_by_policy'
  /** An HTTP status the call does not accept. */
  | 'bad_status'
  /** A body that is not what the protocol says. */
  | 'malformed';

export class BankCallError extends Error {
  readonly failure: BankFailure;
  /** The HTTP status when `failure` is `bad_status`. */
  readonly status: number | null;
  constructor(failure: BankFailure, message: string, status: number | null = null) {
    super(message);
    this.name = 'BankCallError';
    this.failure = failure;
    this.status = status;
  }
}

/** Where a bank is and how to reach it. */
export interface BankEndpoint {
  baseUrl: string;
  timeoutMs: number;
  tls: { cert?: string; key?: string; ca?: string } | null;
}

/** Which destinations Tessera may call (the outbound-URL rules). */
export interface OutboundPolicy {
  /** Throws (any error) when `url` must not be called. */
  checkUrl(url: URL): void;
  /** Throws when the resolved `address` of `host` must not be connected to. */
  checkAddress(host: string, address: string): void;
}

export interface BankResponse {
  status: number;
  /** Parsed JSON, or null for an empty body. */
  body: unknown;
}

const MAX_BODY_BYTES = 1 << 20;

export async function callBank(
  endpoint: BankEndpoint,
  policy: OutboundPolicy,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<BankResponse> {
  const base = new URL(endpoint.baseUrl);
  const url = new URL(base.pathname.replace(/\/$/, '') + path, base);
  try {
    policy.checkUrl(url);
  } catch (err) {
    throw new BankCallError('refused_by_policy', err instanceof Error ? err.message : String(err));
  }
  const payload = body === undefined ? null : Buffer.from(JSON.stringify(body), 'utf8');
  const lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const list = addresses;
      for (const a of list) {
        try {
          policy.checkAddress(hostname, a.address);
        } catch (e) {
          return callback(Object.assign(new Error(e instanceof Error ? e.message : String(e)), { code: 'EPOLICY' }), '', 0);
        }
      }
      if (options.all) return callback(null, list, 0);
      const first = list[0] as LookupAddress;
      return callback(null, first.address, first.family);
    });
  };
  const tls = endpoint.tls ?? {};
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<BankResponse>((resolve, reject) => {
    let settled = false;
    const fail = (e: BankCallError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(e);
    };
    const req = send(
      url,
      {
        method,
        lookup,
        agent: false,
        headers: {
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
          ...headers,
        },
        ...(url.protocol === 'https:' ? { ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}), ...(tls.ca ? { ca: tls.ca } : {}) } : {}),
      },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) fail(new BankCallError('malformed', `the bank's answer is over ${MAX_BODY_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('error', (e) => fail(new BankCallError('unreachable', e.message)));
        res.on('end', () => {
          if (settled) return;
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = null;
          if (text.trim() !== '') {
            try {
              parsed = JSON.parse(text);
            } catch {
              // A non-JSON error page is still a status the caller judges; a non-JSON success is malformed.
              if ((res.statusCode ?? 0) < 400) return fail(new BankCallError('malformed', 'the bank answered a body that is not JSON'));
            }
          }
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    const timer = setTimeout(() => fail(new BankCallError('timeout', `no answer within ${endpoint.timeoutMs} ms`)), endpoint.timeoutMs);
    req.on('error', (e: Error & { code?: string }) =>
      fail(new BankCallError(e.code === 'EPOLICY' ? 'refused_by_policy' : 'unreachable', `${e.code ?? ''} ${e.message}`.trim())),
    );
    if (payload) req.end(payload);
    else req.end();
  });
}
