// `tessera login` on its own: the local listener, the exchange, the 0600 file, and every way it
// can fail. A stub stands in for Tessera's POST /api/v1/sso/token; the whole flow with a real
// provider and Chromium is in test/e2e/sso-browser.test.ts.

import { createHash } from 'node:crypto';
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
/** The bodies POSTed to the stub's /api/v1/sso/token. */
const exchanged: { token?: string; codeVerifier?: string }[] = [];

beforeAll(async () => {
  stub = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const body = JSON.parse(raw || '{}') as { token?: string; codeVerifier?: string };
      exchanged.push(body);
      const { token } = body;
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

/**
 * Runs cliLogin and, once its listener is up, calls `browse` with the listener's callback URL and
 * the listener state that the login URL carried (Tessera appends it to the callback).
 */
async function run(opts: CliLoginOptions, browse: (callback: string, state: string) => Promise<Response | void>) {
  let loginAt: URL | null = null;
  const done = cliLogin({ ...opts, onUrl: (u) => (loginAt = new URL(u)) }).then(
    (c) => ({ ok: true as const, c }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  await new Promise((r) => setTimeout(r, 20));
  const at = loginAt as unknown as URL;
  const answer = await browse(`http://127.0.0.1:${at.searchParams.get('callbackPort')}/callback`, at.searchParams.get('cliState') ?? '');
  return { done, answer, loginAt: at };
}

describe('tessera login', () => {
  it('builds the login URL for OIDC and OAuth 2.0, with the admin flag', () => {
    const cli = { codeChallenge: 'c'.repeat(43), cliState: 's'.repeat(43) };
    expect(loginUrl({ server: 'https://auth.example.com', org: 'acme', protocol: 'oidc', provider: null, isAdminLogin: false }, 4711, cli)).toBe(
      `https://auth.example.com/api/v1/sso/oidc/login?orgSlug=acme&callbackPort=4711&codeChallenge=${'c'.repeat(43)}&cliState=${'s'.repeat(43)}`,
    );
    expect(loginUrl({ server: 'https://auth.example.com', org: 'acme', protocol: 'oauth', provider: 'github', isAdminLogin: true }, 4711, cli)).toBe(
      `https://auth.example.com/api/v1/sso/oauth/github/login?orgSlug=acme&callbackPort=4711&codeChallenge=${'c'.repeat(43)}&cliState=${'s'.repeat(43)}&isAdminLogin=true`,
    );
  });

  it('stores the pair in a 0600 file in a 0700 folder, and says where', async () => {
    const opts = options();
    const { done, answer, loginAt } = await run(opts, (cb, state) => fetch(`${cb}?token=good&state=${state}`));
    expect((answer as Response).status).toBe(200);
    const r = await done;
    expect(r.ok).toBe(true);
    // The exchange presented the verifier of the challenge that the login started with.
    const sent = exchanged.at(-1);
    expect(sent?.token).toBe('good');
    expect(sent?.codeVerifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(createHash('sha256').update(sent?.codeVerifier ?? '').digest('base64url')).toBe(loginAt.searchParams.get('codeChallenge'));
    expect(loginAt.searchParams.get('cliState')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(opts.credentialsPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(opts.credentialsPath, '..')).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(opts.credentialsPath, 'utf8'))).toMatchObject({ userSessionToken: 'jwt', refreshToken: 'refresh-token-secret-value', tenantId: 't-1', server: stubUrl });
    expect(opts.lines.join('\n')).toContain('callbackPort=');
    expect(opts.lines.join('\n')).not.toContain('refresh-token-secret-value');
  });

  it('reports an error sent back by Tessera, a refused token, and a timeout', async () => {
    const failed = await run(options(), (cb, state) => fetch(`${cb}?error=sso_access_denied&error_description=${encodeURIComponent('refused at the provider')}&state=${state}`));
    expect((failed.answer as Response).status).toBe(400);
    const f = await failed.done;
    expect(!f.ok && f.e instanceof CliLoginError && f.e.message).toContain('sso_access_denied: refused at the provider');

    const refused = await run(options(), (cb, state) => fetch(`${cb}?token=used-already&state=${state}`));
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
    const { done } = await run(opts, async (cb, state) => {
      other = (await fetch(cb.replace('/callback', '/favicon.ico'))).status;
      await fetch(`${cb}?token=good&state=${state}`);
    });
    expect(other).toBe(404);
    expect((await done).ok).toBe(true);
  });

  it("takes only the callback carrying its own state: a web page's request with someone else's token or error is ignored", async () => {
    const opts = options();
    const before = exchanged.length;
    const statuses: number[] = [];
    const { done } = await run(opts, async (cb, state) => {
      // Any page the person visits can make the browser request http://127.0.0.1:<port>/callback.
      statuses.push((await fetch(`${cb}?token=good`)).status);
      statuses.push((await fetch(`${cb}?token=good&state=${'x'.repeat(43)}`)).status);
      statuses.push((await fetch(`${cb}?error=sso_access_denied&state=wrong`)).status);
      expect(exchanged.length).toBe(before);
      // The real callback still finishes the login.
      statuses.push((await fetch(`${cb}?token=good&state=${state}`)).status);
    });
    expect(statuses).toEqual([400, 400, 400, 200]);
    const r = await done;
    expect(r.ok, String(!r.ok && r.e)).toBe(true);
    expect(exchanged.length).toBe(before + 1);
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
