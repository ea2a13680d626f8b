// `tessera login --org acme`: single sign-on from a terminal (docs/api.md §Single sign-on, the
// command-line case).
//
// 1. Opens a listener on 127.0.0.1 (a free port unless --port says otherwise), and makes a
//    verifier and a listener state (256 bits each).
// 2. Prints the URL to open: Tessera's SSO login with orgSlug, callbackPort=<that port>,
//    codeChallenge=<base64url SHA-256 of the verifier> and cliState=<the state>.
// 3. The browser signs in at the organization's identity provider; Tessera sends it to
//    http://127.0.0.1:<port>/callback?token=<one-time token>&state=<the state> (or ?error=…).
//    Any web page can make the browser request that URL, so a callback without this login's
//    state is answered 400 and otherwise ignored (never exchanged, never stored).
// 4. Exchanges the token with the verifier (POST /api/v1/sso/token, token mode: Tessera refuses
//    a command-line login's token without it) and stores the token pair in a file only the user
//    can read (0600, in a 0700 folder), written atomically.
//
// A client: it talks to Tessera over HTTP only and imports nothing of the server.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface CliLoginOptions {
  /** Tessera's base URL, e.g. https://auth.example.com */
  server: string;
  org: string;
  protocol: 'oidc' | 'oauth';
  /** The `{provider}` of an OAuth 2.0 organization. */
  provider: string | null;
  isAdminLogin: boolean;
  /** Where the token pair is stored. */
  credentialsPath: string;
  /** Listener port; 0 picks a free one (must then be within 1024–65535, as the OS gives). */
  port: number;
  timeoutMs: number;
  /** Where messages for the person go (the URL to open, the outcome). */
  say: (line: string) => void;
  /** Called with the URL once the listener is up (tests open it in a browser). */
  onUrl?: (url: string) => void;
}

export interface StoredCredentials {
  server: string;
  org: string;
  tenantId: string;
  customerId: string;
  sessionId: string;
  token_type: string;
  userSessionToken: string;
  refreshToken: string;
  expires_in: number;
  obtainedAt: string;
}

export class CliLoginError extends Error {}

export function defaultCredentialsPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(homedir(), '.config');
  return join(base, 'tessera', 'credentials.json');
}

/** Writes the file with mode 0600 (via a temp file and rename, so it is never half-written or wider). */
export function writePrivateFile(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

function page(res: ServerResponse, status: number, title: string, text: string): void {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'",
    // One request per connection: the listener can close as soon as the answer is out.
    connection: 'close',
  });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1><p id="status">${esc(text)}</p></body></html>`);
}

async function exchange(server: string, token: string, codeVerifier: string): Promise<Record<string, unknown>> {
  const r = await fetch(new URL('/api/v1/sso/token', server), {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ token, codeVerifier }),
  });
  const body = (await r.json().catch(() => ({}))) as Record<string, unknown>;
  if (!r.ok) {
    const code = typeof body.code === 'string' ? body.code : String(r.status);
    const detail = typeof body.detail === 'string' ? body.detail : '';
    throw new CliLoginError(`Tessera refused the sign-in token: ${code}: ${detail}`);
  }
  return body;
}

export function loginUrl(
  opts: Pick<CliLoginOptions, 'server' | 'org' | 'protocol' | 'provider' | 'isAdminLogin'>,
  port: number,
  cli: { codeChallenge: string; cliState: string },
): string {
  const path = opts.protocol === 'oidc' ? '/api/v1/sso/oidc/login' : `/api/v1/sso/oauth/${encodeURIComponent(opts.provider ?? '')}/login`;
  const url = new URL(path, opts.server);
  url.searchParams.set('orgSlug', opts.org);
  url.searchParams.set('callbackPort', String(port));
  url.searchParams.set('codeChallenge', cli.codeChallenge);
  url.searchParams.set('cliState', cli.cliState);
  if (opts.isAdminLogin) url.searchParams.set('isAdminLogin', 'true');
  return url.href;
}

function sameSecret(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** Runs the whole login; resolves with what was stored, rejects with CliLoginError. */
export async function cliLogin(opts: CliLoginOptions): Promise<StoredCredentials> {
  let settle!: { resolve: (c: StoredCredentials) => void; reject: (e: Error) => void };
  const done = new Promise<StoredCredentials>((resolve, reject) => (settle = { resolve, reject }));
  let handled = false;
  // Only this process knows the verifier; the challenge and the state travel in URLs.
  const codeVerifier = randomBytes(32).toString('base64url');
  const codeChallenge = createHash('sha256').update(codeVerifier).digest('base64url');
  const cliState = randomBytes(32).toString('base64url');

  const listener = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== '/callback') {
      page(res, 404, 'Not found', 'This listener only waits for the sign-in to come back.');
      return;
    }
    if (!sameSecret(url.searchParams.get('state') ?? '', cliState)) {
      // Not the redirect Tessera made for this login: a page that requested this URL itself (with
      // someone else's token, or a made-up error), or another login's link. Ignored.
      page(res, 400, 'Not this sign-in', 'This request does not belong to the sign-in that is waiting here; it was ignored.');
      return;
    }
    if (handled) {
      page(res, 409, 'Already done', 'This sign-in has already come back; you can close this tab.');
      return;
    }
    handled = true;
    const error = url.searchParams.get('error');
    const token = url.searchParams.get('token');
    if (error !== null || token === null) {
      const why = error === null ? 'no token came back' : `${error}: ${url.searchParams.get('error_description') ?? ''}`;
      page(res, 400, 'Sign-in failed', `${why}. Return to your terminal.`);
      settle.reject(new CliLoginError(`The sign-in failed: ${why}`));
      return;
    }
    exchange(opts.server, token, codeVerifier).then(
      (pair) => {
        const creds: StoredCredentials = {
          server: opts.server,
          org: opts.org,
          tenantId: String(pair.tenantId),
          customerId: String(pair.customerId),
          sessionId: String(pair.sessionId),
          token_type: String(pair.token_type),
          userSessionToken: String(pair.userSessionToken),
          refreshToken: String(pair.refreshToken),
          expires_in: Number(pair.expires_in),
          obtainedAt: new Date().toISOString(),
        };
        writePrivateFile(opts.credentialsPath, JSON.stringify(creds, null, 2) + '\n');
        page(res, 200, 'Signed in', 'You are signed in to Tessera. You can close this tab and return to your terminal.');
        settle.resolve(creds);
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        page(res, 502, 'Sign-in failed', `${e.message}. Return to your terminal.`);
        settle.reject(e instanceof CliLoginError ? e : new CliLoginError(`Could not reach Tessera to finish the sign-in: ${e.message}`));
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    listener.once('error', (err: NodeJS.ErrnoException) =>
      reject(new CliLoginError(`Cannot listen on 127.0.0.1:${opts.port}: ${err.code ?? err.message}`)),
    );
    listener.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const port = (listener.address() as AddressInfo).port;
  const url = loginUrl(opts, port, { codeChallenge, cliState });
  opts.say('Open this URL in your browser to sign in:');
  opts.say(`  ${url}`);
  opts.say(`Waiting for the sign-in on http://127.0.0.1:${port}/callback …`);
  opts.onUrl?.(url);

  const timer = setTimeout(() => settle.reject(new CliLoginError(`No sign-in came back within ${Math.round(opts.timeoutMs / 1000)} s.`)), opts.timeoutMs);
  try {
    const creds = await done;
    opts.say(`Signed in as ${creds.customerId} (tenant ${creds.tenantId}); the token pair is in ${opts.credentialsPath} (mode 0600).`);
    return creds;
  } finally {
    clearTimeout(timer);
    const closed = new Promise<void>((resolve) => listener.close(() => resolve()));
    listener.closeIdleConnections();
    const force = setTimeout(() => listener.closeAllConnections(), 1000);
    await closed;
    clearTimeout(force);
  }
}

export const LOGIN_USAGE = `  login --org <slug> [--server <url>] [--credentials <file>] [--oauth <provider>] [--admin]
        [--port <n>] [--timeout <seconds>]
                                 Sign in through the organization's identity provider (SSO):
                                 prints a URL to open, waits on 127.0.0.1 for the browser to
                                 come back, stores the token pair in a 0600 file
                                 (default ~/.config/tessera/credentials.json)`;

/**
 * The `tessera login` command: parses its arguments and runs the login. Returns the exit code:
 * 0 signed in, 1 the sign-in failed, 2 bad usage.
 */
export async function loginCommand(
  args: string[],
  env: NodeJS.ProcessEnv,
  io: { out: (line: string) => void; err: (line: string) => void },
): Promise<number> {
  const { parseArgs } = await import('node:util');
  const { values } = parseArgs({
    args,
    options: {
      org: { type: 'string' },
      server: { type: 'string' },
      credentials: { type: 'string' },
      oauth: { type: 'string' },
      admin: { type: 'boolean', default: false },
      port: { type: 'string' },
      timeout: { type: 'string' },
    },
  });
  const usage = (msg: string) => {
    io.err(`tessera: ${msg}`);
    io.err(`Usage: tessera${LOGIN_USAGE.slice(1)}`);
    return 2;
  };
  if (!values.org || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(values.org)) return usage('--org <slug> is required (lower-case letters, digits, -)');
  if (values.oauth !== undefined && !/^[a-z0-9][a-z0-9-]{0,31}$/.test(values.oauth)) return usage('--oauth needs a provider name');
  const server = values.server ?? env.TESSERA_URL ?? `http://127.0.0.1:${env.TESSERA_PORT ?? '8080'}`;
  let serverUrl: URL;
  try {
    serverUrl = new URL(server);
    if (serverUrl.protocol !== 'https:' && serverUrl.protocol !== 'http:') throw new Error('scheme');
  } catch {
    return usage(`--server must be an http(s) URL (got "${server}")`);
  }
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || (port !== 0 && (port < 1024 || port > 65535))) return usage('--port must be an integer from 1024 to 65535');
  const timeoutS = values.timeout === undefined ? 600 : Number(values.timeout);
  if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > 3600) return usage('--timeout must be a number of seconds from 1 to 3600');
  try {
    await cliLogin({
      server: serverUrl.origin,
      org: values.org,
      protocol: values.oauth === undefined ? 'oidc' : 'oauth',
      provider: values.oauth ?? null,
      isAdminLogin: values.admin === true,
      credentialsPath: values.credentials ?? defaultCredentialsPath(env),
      port,
      timeoutMs: timeoutS * 1000,
      say: io.out,
    });
    return 0;
  } catch (err) {
    if (err instanceof CliLoginError) {
      io.err(`tessera: ${err.message}`);
      return 1;
    }
    throw err;
  }
}
