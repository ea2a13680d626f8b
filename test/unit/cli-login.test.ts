// `tessera login` on its own: the local listener, the exchange, the 0600 file, and every way it
// can fail. A stub stands in for Tessera's POST /api/v1/sso/token; the whole flow with a real
// provider and Chromium is in test/e2e/sso-browser.test.ts.

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliLogin, CliLoginError, loginCommand, loginUrl, type CliLoginOptions } from '../../src/client/cli-login.ts';

let stub: Server;
let stubUrl: string;
const dirs: string[] = [];

beforeAll(async () => {
  stub = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const { token } = JSON.parse(raw || '{}') as { token?: string };
      res.setHeader('content-type', 'application/json');
      if (token === 'good') {
        res.end(JSON.stringify({ expires_in: 3600, token_type: 'Bearer', scope: 'session', customerId: 'u-1', tenantId: 't-1', userSessionToken: 'jwt', refreshToken: 'refresh-token-secret-value', sessionId: 'h-1' }));
      } else {
        res.statusCode = 401;
        res.end(JSON.stringify({ code: 'invalid_sso_token', detail: 'used' }));
      }
    });
  });
  await new Promise<void>((r) => stub.listen(0, '127.0.0.1', r));
  stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((r) => stub.close(() => r()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function options(over: Partial<CliLoginOptions> = {}): CliLoginOptions & { lines: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-login-'));
  dirs.push(dir);
  const lines: string[] = [];
  return {
    server: stubUrl,
    org: 'acme',
    protocol: 'oidc',
    provider: null,
    isAdminLogin: false,
    credentialsPath: join(dir, 'tessera', 'credentials.json'),
    port: 0,
    timeoutMs: 10_000,
    say: (l) => lines.push(l),
    lines,
    ...over,
  };
}

/** Runs cliLogin and, once its listener is up, calls `browse` with the login URL. */
async function run(opts: CliLoginOptions, browse: (callback: string) => Promise<Response | void>) {
  let port = 0;
  const done = cliLogin({ ...opts, onUrl: (u) => (port = Number(new URL(u).searchParams.get('callbackPort'))) }).then(
    (c) => ({ ok: true as const, c }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  await new Promise((r) => setTimeout(r, 20));
  const answer = await browse(`http://127.0.0.1:${port}/callback`);
  return { done, answer };
}

describe('tessera login', () => {
  it('builds the login URL for OIDC and OAuth 2.0, with the admin flag', () => {
    expect(loginUrl({ server: 'https://auth.example.com', org: 'acme', protocol: 'oidc', provider: null, isAdminLogin: false }, 4711)).toBe(
      'https://auth.example.com/api/v1/sso/oidc/login?orgSlug=acme&callbackPort=4711',
    );
    expect(loginUrl({ server: 'https://auth.example.com', org: 'acme', protocol: 'oauth', provider: 'github', isAdminLogin: true }, 4711)).toBe(
      'https://auth.example.com/api/v1/sso/oauth/github/login?orgSlug=acme&callbackPort=4711&isAdminLogin=true',
    );
  });

  it('stores the pair in a 0600 file in a 0700 folder, and says where', async () => {
    const opts = options();
    const { done, answer } = await run(opts, (cb) => fetch(`${cb}?token=good`));
    expect((answer as Response).status).toBe(200);
    const r = await done;
    expect(r.ok).toBe(true);
    expect(statSync(opts.credentialsPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(opts.credentialsPath, '..')).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(opts.credentialsPath, 'utf8'))).toMatchObject({ userSessionToken: 'jwt', refreshToken: 'refresh-token-secret-value', tenantId: 't-1', server: stubUrl });
    expect(opts.lines.join('\n')).toContain('callbackPort=');
    expect(opts.lines.join('\n')).not.toContain('refresh-token-secret-value');
  });

  it('reports an error sent back by Tessera, a refused token, and a timeout', async () => {
    const failed = await run(options(), (cb) => fetch(`${cb}?error=sso_access_denied&error_description=${encodeURIComponent('refused at the provider')}`));
    expect((failed.answer as Response).status).toBe(400);
    const f = await failed.done;
    expect(!f.ok && f.e instanceof CliLoginError && f.e.message).toContain('sso_access_denied: refused at the provider');

    const refused = await run(options(), (cb) => fetch(`${cb}?token=used-already`));
    expect((refused.answer as Response).status).toBe(502);
    const g = await refused.done;
    expect(!g.ok && (g.e as Error).message).toContain('invalid_sso_token');

    const slow = await run(options({ timeoutMs: 50 }), async () => undefined);
    const s = await slow.done;
    expect(!s.ok && (s.e as Error).message).toMatch(/No sign-in came back/);
  });

  it('answers 404 elsewhere and takes only the first callback', async () => {
    const opts = options();
    let other = 0;
    const { done } = await run(opts, async (cb) => {
      other = (await fetch(cb.replace('/callback', '/favicon.ico'))).status;
      await fetch(`${cb}?token=good`);
    });
    expect(other).toBe(404);
    expect((await done).ok).toBe(true);
  });

  it('refuses bad usage with exit code 2', async () => {
    const err: string[] = [];
    const io = { out: () => undefined, err: (l: string) => err.push(l) };
    expect(await loginCommand([], {}, io)).toBe(2);
    expect(await loginCommand(['--org', 'Not A Slug'], {}, io)).toBe(2);
    expect(await loginCommand(['--org', 'acme', '--port', '80'], {}, io)).toBe(2);
    expect(await loginCommand(['--org', 'acme', '--server', 'ftp://x'], {}, io)).toBe(2);
    expect(await loginCommand(['--org', 'acme', '--timeout', '0'], {}, io)).toBe(2);
    expect(err.join('\n')).toContain('--org');
  });
});
