// An in-memory stand-in for Tessera's token endpoints, as `fetch`: login, refresh with rotation
// (grace window and reuse detection as docs/api.md describes them), logout, and one protected
// resource `/api/orders` that checks the bearer token against the (fake) clock.

export interface FakeOptions {
  lifetime?: number;
  grace?: number;
  /** Every request fails as if the server were down. */
  down?: boolean;
}

interface Family {
  sessionId: string;
  current: string;
  /** rotated token → when it was rotated, and what its successor was */
  rotated: Map<string, { at: number; successor: string }>;
  ended: boolean;
}

export class FakeTessera {
  lifetime: number;
  grace: number;
  down: boolean;
  readonly calls: { method: string; path: string; headers: Headers; body: string | null; credentials?: RequestCredentials }[] = [];
  readonly families = new Map<string, Family>();
  readonly tokens = new Map<string, { sessionId: string; exp: number }>();
  private n = 0;

  constructor(o: FakeOptions = {}) {
    this.lifetime = o.lifetime ?? 600;
    this.grace = o.grace ?? 0;
    this.down = o.down ?? false;
  }

  count(path: string): number {
    return this.calls.filter((c) => c.path === path).length;
  }

  private pair(f: Family, refreshToken: string) {
    const access = `at-${++this.n}`;
    this.tokens.set(access, { sessionId: f.sessionId, exp: Date.now() + this.lifetime * 1000 });
    return {
      expires_in: this.lifetime,
      token_type: 'Bearer',
      scope: 'user',
      customerId: 'u1',
      tenantId: 'acme',
      userSessionToken: access,
      refreshToken,
      sessionId: f.sessionId,
    };
  }

  private problem(status: number, code: string) {
    return new Response(JSON.stringify({ status, code, title: code }), { status, headers: { 'content-type': 'application/problem+json' } });
  }

  private json(body: unknown, status = 200) {
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input), 'https://auth.test');
    const headers = new Headers(init?.headers);
    const body = typeof init?.body === 'string' ? init.body : null;
    this.calls.push({ method: init?.method ?? 'GET', path: url.pathname, headers, body, ...(init?.credentials ? { credentials: init.credentials } : {}) });
    await Promise.resolve();
    if (this.down) throw new TypeError('fetch failed');
    switch (url.pathname) {
      case '/api/v1/auth/login': {
        if (headers.get('x-auth-mode') === 'cookie') {
          return this.json({ sessionId: 'cookie-s', customerId: 'u1', tenantId: 'acme', xsrfToken: 'xsrf-1', expires_in: 900 });
        }
        const f: Family = { sessionId: `s${++this.n}`, current: `rt-${++this.n}`, rotated: new Map(), ended: false };
        this.families.set(f.sessionId, f);
        return this.json(this.pair(f, f.current));
      }
      case '/api/v1/auth/token/refresh': {
        const { refreshToken } = JSON.parse(body ?? '{}') as { refreshToken: string };
        for (const f of this.families.values()) {
          if (f.current === refreshToken && !f.ended) {
            f.current = `rt-${++this.n}`;
            f.rotated.set(refreshToken, { at: Date.now(), successor: f.current });
            return this.json(this.pair(f, f.current));
          }
          const r = f.rotated.get(refreshToken);
          if (r && !f.ended) {
            if (Date.now() - r.at <= this.grace * 1000) return this.json(this.pair(f, r.successor));
            f.ended = true;
            return this.problem(401, 'refresh_token_reused');
          }
        }
        return this.problem(401, 'invalid_grant');
      }
      case '/api/v1/auth/logout':
        return new Response(null, { status: 204 });
      case '/api/orders': {
        if (init?.credentials === 'include' && headers.get('x-session-id') === 'cookie-s') return this.json({ orders: [] });
        const t = this.tokens.get((headers.get('authorization') ?? '').replace(/^Bearer /, ''));
        if (!t || Date.now() >= t.exp) return this.problem(401, 'invalid_token');
        if (this.families.get(t.sessionId)?.ended) return this.problem(401, 'session_ended');
        return this.json({ orders: [] });
      }
      default:
        return this.problem(404, 'not_found');
    }
  };
}
