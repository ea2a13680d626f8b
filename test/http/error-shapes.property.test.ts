// Every error is a problem document (property-based, fast-check): arbitrary requests — paths with
// percent-encodings (valid, broken, overlong UTF-8) and overlong segments, query strings, headers
// of every size up to and past Node's limit, bodies of several media types — go over a real TCP
// connection (raw bytes, so that nothing on the client side repairs them) to every registered
// route of a Tessera whose OpenID provider is on. No answer is a 5xx; every 4xx is
// `application/problem+json` with `status` (the answer's), `title` and `code` — except where an
// RFC prescribes another shape (docs/api.md): the token API's RFC 6749 error objects
// (/api/v1/auth/revoke, /api/v1/auth/introspect), the OpenID provider's own OAuth errors and HTML
// error page under /oidc/*, and the SSO pages a browser (Accept: text/html) is shown.

import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startListeningTestServer, type TestServer } from '../support/harness.ts';

interface Route {
  method: string;
  url: string;
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One request as raw bytes on a fresh connection (Connection: close); the whole answer. */
function rawRequest(port: number, head: string, body: Buffer | null): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => (chunks.length > 0 ? undefined : reject(err)));
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      if (split < 0) {
        reject(new Error(`no HTTP answer: ${JSON.stringify(all.toString('latin1').slice(0, 200))}`));
        return;
      }
      const [statusLine, ...lines] = all.subarray(0, split).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      let raw = all.subarray(split + 4);
      if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
        const parts: Buffer[] = [];
        for (let at = 0; at < raw.length; ) {
          const eol = raw.indexOf('\r\n', at);
          const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16);
          if (!(size > 0)) break;
          parts.push(raw.subarray(eol + 2, eol + 2 + size));
          at = eol + 2 + size + 2;
        }
        raw = Buffer.concat(parts);
      }
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers, body: raw.toString('utf8') });
    });
    socket.write(head);
    if (body) socket.write(body);
  });
}

const HEADER_LIMIT = 16 * 1024; // Node's default --max-http-header-size

// Path pieces: broken and valid percent-encodings, overlong UTF-8, traversal, overlong segments.
const PIECES = ['%c0%ae', '%ff', '%', '%2', '%zz', '%00', '%2F', '%2e%2e', '..', '.', '%e2%82', '%e2%82%ac', '%ed%a0%80', '%C3%A9', '~', '@', ';', ',', '+', '=', '$', '!', "'", '(', ')', '*', ':'];
const pathPiece = fc.oneof(
  fc.constantFrom(...PIECES),
  fc.string({ unit: fc.constantFrom(...'abcXYZ019-_.'.split('')), maxLength: 24 }),
  fc.integer({ min: 150, max: 600 }).map((n) => 'a'.repeat(n)),
  fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => encodeURIComponent(s)),
);
const segment = fc.array(pathPiece, { minLength: 0, maxLength: 4 }).map((p) => p.join(''));
const queryPart = fc.oneof(fc.constantFrom(...PIECES), fc.string({ unit: fc.constantFrom(...'abc019-_.&=%+[]'.split('')), maxLength: 20 }), fc.integer({ min: 100, max: 3000 }).map((n) => 'q'.repeat(n)));
const query = fc.option(
  fc.array(fc.tuple(queryPart, queryPart), { maxLength: 5 }).map((kv) => kv.map(([k, v]) => `${k}=${v}`).join('&')),
  { nil: undefined },
);
const HEADER_NAMES = ['authorization', 'cookie', 'x-tenant-id', 'x-request-id', 'x-correlation-id', 'x-activity-id', 'x-session-id', 'x-xsrf-token', 'x-auth-mode', 'accept', 'origin', 'sec-fetch-site', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'if-none-match', 'range', 'x-anything'];
const headerValue = fc.oneof(
  fc.string({ unit: fc.constantFrom(...' !#$%&()*+,-./0123456789:;<=>?@ABCXYZ[]^_`abcxyz{|}~'.split('')), maxLength: 60 }),
  fc.constantFrom('Bearer ', 'Bearer a.b.c', 'Basic %%%', 'Basic ' + Buffer.from('x:y').toString('base64'), 'text/html', 'application/json', '__Host-sid=abc; __Host-idp=x.y', 'null', ''),
);
const headers = fc.record({
  list: fc.array(fc.tuple(fc.constantFrom(...HEADER_NAMES), headerValue), { maxLength: 6 }),
  // Up to and past the limit: around it more often.
  padding: fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: HEADER_LIMIT - 600, max: HEADER_LIMIT + 600 }), fc.integer({ min: 0, max: 3 * HEADER_LIMIT })),
});
const body = fc.option(
  fc.record({
    type: fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', null),
    data: fc.oneof(fc.json({ maxDepth: 3 }), fc.string({ maxLength: 200 }), fc.constant('token=a&token=b'), fc.constant('{"email":1}')),
  }),
  { nil: undefined },
);

/** Fills a route's URL template: every `:param` and `*` with arbitrary segments. */
function fill(url: string, values: string[]): string {
  let i = 0;
  const next = () => values[i++ % values.length] ?? '';
  return url
    .split('/')
    .map((seg) => (seg === '*' ? next() + (i % 2 === 0 ? `/${next()}` : '') : seg.startsWith(':') ? next() : seg))
    .join('/');
}

describe('every error is a problem document (fast-check, raw HTTP, every route)', () => {
  let s: TestServer;
  let port: number;
  const routes: Route[] = [];

  beforeAll(async () => {
    const listening = await startListeningTestServer((url) => {
      routes.length = 0; // a start again on another port registers every route again
      return {
        env: { TESSERA_PUBLIC_URL: url, TESSERA_DEV_ALLOW_HTTP_LOOPBACK: '1' },
        onRoute: (r) => {
          for (const method of Array.isArray(r.method) ? r.method : [r.method]) routes.push({ method, url: r.url });
        },
      };
    });
    s = listening;
    port = Number(new URL(listening.url).port);
  });
  afterAll(async () => {
    await s?.close();
  });

  function check(route: Route, sent: { path: string; accept: string }, r: RawResponse): void {
    const where = `${route.method} ${sent.path.slice(0, 200)} → ${r.status} ${r.headers['content-type'] ?? ''} ${r.body.slice(0, 300)}`;
    expect(r.status, where).toBeGreaterThanOrEqual(100);
    expect(r.status, where).toBeLessThan(500);
    if (r.status < 400) return;
    const type = r.headers['content-type'] ?? '';
    const pathOnly = sent.path.split('?')[0] ?? '';
    if (type.startsWith('application/problem+json')) {
      if (route.method === 'HEAD') return;
      const doc = JSON.parse(r.body) as { status: unknown; title: unknown; code: unknown; type: unknown };
      expect(doc.status, where).toBe(r.status);
      expect(typeof doc.title, where).toBe('string');
      expect(typeof doc.code, where).toBe('string');
      expect(doc.type, where).toBe(`https://tessera.dev/problems/${String(doc.code)}`);
      return;
    }
    // The documented exceptions.
    if (route.url === '/api/v1/auth/revoke' || route.url === '/api/v1/auth/introspect' || (pathOnly.startsWith('/oidc/') && route.url === '/oidc/*')) {
      if (type.startsWith('text/html') && route.url === '/oidc/*') {
        expect(r.body, where).toContain('<h1>');
        return;
      }
      expect(type, where).toMatch(/^application\/json/);
      expect(typeof (JSON.parse(r.body) as { error?: unknown }).error, where).toBe('string');
      return;
    }
    if (type.startsWith('text/html') && sent.accept.includes('text/html') && (pathOnly.startsWith('/api/v1/sso/') || pathOnly.startsWith('/login/sso'))) {
      expect(r.body, where).toContain('id="code"');
      return;
    }
    expect.fail(`not a problem document: ${where}`);
  }

  async function send(route: Route, path: string, hdrs: { list: Array<[string, string]>; padding: number }, b: { type: string | null; data: unknown } | undefined) {
    const lines = [`${route.method} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, 'Connection: close'];
    for (const [k, v] of hdrs.list) lines.push(`${k}: ${v}`);
    if (hdrs.padding > 0) lines.push(`x-padding: ${'p'.repeat(hdrs.padding)}`);
    let payload: Buffer | null = null;
    if (b && route.method !== 'GET' && route.method !== 'HEAD') {
      payload = Buffer.from(typeof b.data === 'string' ? b.data : JSON.stringify(b.data));
      if (b.type !== null) lines.push(`Content-Type: ${b.type}`);
      lines.push(`Content-Length: ${payload.length}`);
    }
    const r = await rawRequest(port, `${lines.join('\r\n')}\r\n\r\n`, payload);
    check(route, { path, accept: hdrs.list.filter(([k]) => k === 'accept').map(([, v]) => v).join(',') }, r);
    return r;
  }

  it('finds the routes (the test covers something)', () => {
    const urls = new Set(routes.map((r) => r.url));
    for (const u of ['/api/v1/auth/login', '/api/v1/admin/apps/:clientId', '/oidc/*', '/oidc/interaction/:uid', '/api/v1/auth/introspect']) expect(urls).toContain(u);
    expect(routes.length).toBeGreaterThan(30);
  });

  it('the reported cases: broken percent-encodings, an overlong parameter, headers past the limit, /oidc', async () => {
    const get = (url: string): Route => ({ method: 'GET', url });
    const none = { list: [] as Array<[string, string]>, padding: 0 };
    expect((await send(get('/api/v1/admin/apps/:clientId'), '/api/v1/admin/apps/%c0%ae', none, undefined)).status).toBe(400);
    expect((await send(get('/api/v1/admin/apps/:clientId'), '/api/v1/%ff', none, undefined)).status).toBe(400);
    expect((await send(get('/api/v1/admin/apps/:clientId'), `/api/v1/admin/apps/${'a'.repeat(300)}`, none, undefined)).status).toBe(414);
    expect((await send(get('/api/v1/session'), '/api/v1/session', { list: [], padding: HEADER_LIMIT + 10 }, undefined)).status).toBe(431);
    expect((await send(get('/oidc/*'), '/oidc/%ff', none, undefined)).status).toBe(400);
    expect((await send(get('/oidc/*'), `/oidc/${'%c0%ae'.repeat(10)}`, none, undefined)).status).toBe(400);
  });

  it('no 5xx and every 4xx a problem document, for every registered route', async () => {
    for (const route of routes) {
      await fc.assert(
        fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 3 }), query, headers, body, fc.option(segment, { nil: undefined }), async (values, q, hdrs, b, extra) => {
          const path = fill(route.url, values) + (extra !== undefined ? `/${extra}` : '') + (q !== undefined ? `?${q}` : '');
          await send(route, path.startsWith('/') ? path : `/${path}`, hdrs, b);
        }),
        { numRuns: 20 },
      );
    }
  });

  it('no 5xx and every 4xx a problem document, for any method on any path', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PROPFIND'), fc.array(segment, { maxLength: 5 }), query, headers, body, async (method, segs, q, hdrs, b) => {
        const path = `/${segs.join('/')}${q !== undefined ? `?${q}` : ''}`;
        await send({ method, url: path.startsWith('/oidc/') ? '/oidc/*' : path }, path, hdrs, b);
      }),
      { numRuns: 200 },
    );
  });
});
