// The `tessera` command as an operator meets it: configuration errors, the embedded first start
// (generated secrets in 0600 files, never in a log line), one JSON log line per request without
// secrets, the user and tenant commands, and graceful shutdown.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, startTessera, type TesseraProcess } from '../support/tessera-process.ts';

function runCli(args: string[], env: Record<string, string>, cwd: string, input?: string) {
  return spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
    input,
    timeout: 30_000,
  });
}

describe('configuration errors', () => {
  it.each([
    [{ TESSERA_PORT: 'abc' }, 'TESSERA_PORT'],
    [{ TESSERA_STORE: 'mongodb://x' }, 'TESSERA_STORE'],
    [{ TESSERA_STORE: 'redis://127.0.0.1:6379' }, 'COOKIE_SECRET_SIGN_KEY'],
    [{ TESSERA_ADMIN_TOKEN: 'short' }, 'TESSERA_ADMIN_TOKEN'],
  ])('%o: one line naming %s, exit code 2, no stack trace', (env, variable) => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
    const r = runCli(['start'], env, dir);
    rmSync(dir, { recursive: true, force: true });
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(variable);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('an unknown command is a usage error (exit 2)', () => {
    const r = runCli(['frobnicate'], {}, tmpdir());
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown command');
  });
});

describe('embedded first start', () => {
  let dir: string;
  let server: TesseraProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tessera-embedded-'));
    server = await startTessera({}, dir);
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores a bootstrap admin credential and a cookie key as 0600 files and logs where, never what', async () => {
    const tokenPath = join(dir, 'data', 'admin-token');
    const keyPath = join(dir, 'data', 'cookie-secret');
    expect(statSync(tokenPath).mode & 0o777).toBe(0o600);
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenPath, 'utf8').trim();
    const key = readFileSync(keyPath, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(43);
    expect(server.output()).toContain(tokenPath);
    expect(server.output()).not.toContain(token);
    expect(server.output()).not.toContain(key);
    const r = await fetch(`${server.url}/api/v1/admin/tenants/acme`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"profile":"integration"}',
    });
    expect(r.status).toBe(200);
  });

  it('writes one JSON line per request with the request ids and no secret', async () => {
    const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
    await fetch(`${server.url}/api/v1/admin/users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenantId: 'acme', email: 'log@example.com', password: 'secret password 42' }),
    });
    const login = await fetch(`${server.url}/api/v1/auth/login?probe=1`, {
      method: 'POST',
      headers: {
        'x-tenant-id': 'acme',
        'x-request-id': '3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b',
        'x-correlation-id': 'corr-log-test',
        'content-type': 'application/json',
      },
      body: JSON.stringify({ email: 'log@example.com', password: 'secret password 42' }),
    });
    const pair = (await login.json()) as { userSessionToken: string; refreshToken: string };
    await fetch(`${server.url}/api/v1/session`, { headers: { authorization: `Bearer ${pair.userSessionToken}` } });
    // Log lines are written in batches (at most 100 ms late): wait until the session check's is out.
    const readLines = () =>
      server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    let lines = readLines();
    for (let i = 0; i < 100 && !lines.some((l) => l.msg === 'request' && l.route === '/api/v1/session'); i++) {
      await new Promise((r) => setTimeout(r, 50));
      lines = readLines();
    }
    const loginLine = lines.find((l) => l.msg === 'request' && l.requestId === '3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b');
    expect(loginLine).toMatchObject({ method: 'POST', route: '/api/v1/auth/login', status: 200, correlationId: 'corr-log-test', tenantId: 'acme' });
    expect(loginLine?.path).toBe('/api/v1/auth/login');
    const all = server.output();
    for (const secret of [token, pair.userSessionToken, pair.refreshToken, 'secret password 42']) {
      expect(all).not.toContain(secret);
    }
  });

  it('creates tenants and users from the command line against the same store', () => {
    const env = { TESSERA_STORE: `sqlite:${join(dir, 'data', 'tessera.db')}` };
    const t = runCli(['tenants', 'put', 'cli-tenant', '--profile', 'integration'], env, dir);
    expect(t.status, t.stderr).toBe(0);
    const u = runCli(['users', 'add', '--tenant', 'cli-tenant', '--email', 'cli@example.com', '--password-stdin'], env, dir, 'a long password\n');
    expect(u.status, u.stderr).toBe(0);
    expect(JSON.parse(u.stdout)).toMatchObject({ tenantId: 'cli-tenant', email: 'cli@example.com' });
    const dup = runCli(['users', 'add', '--tenant', 'cli-tenant', '--email', 'cli@example.com', '--password-stdin'], env, dir, 'a long password\n');
    expect(dup.status).toBe(1);
    expect(dup.stderr).toContain('user_exists');
    const noTenant = runCli(['users', 'add', '--tenant', 'nope', '--email', 'x@example.com', '--password-stdin'], env, dir, 'a long password\n');
    expect(noTenant.status).toBe(2);
    // The first platform administrator, from the command line.
    const root = runCli(['users', 'add', '--tenant', 'platform', '--admin', '--email', 'root@example.com', '--password-stdin'], env, dir, 'a long password\n');
    expect(root.status, root.stderr).toBe(0);
    expect(JSON.parse(root.stdout)).toMatchObject({ tenantId: 'platform', email: 'root@example.com', roles: ['admin'] });
  });

  it('the platform administrator added on the command line acts on other tenants', async () => {
    const login = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': 'platform', 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'root@example.com', password: 'a long password' }),
    });
    expect(login.status).toBe(200);
    const { userSessionToken, sessionId } = (await login.json()) as { userSessionToken: string; sessionId: string };
    const r = await fetch(`${server.url}/api/v1/admin/users?tenantId=cli-tenant`, {
      headers: {
        authorization: `Bearer ${userSessionToken}`,
        'x-tenant-id': 'platform',
        'x-request-id': crypto.randomUUID(),
        'x-correlation-id': 'cli-test',
        'x-activity-id': crypto.randomUUID(),
        'x-session-id': sessionId,
      },
    });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { items: Array<{ email: string }> }).items.map((u) => u.email)).toEqual(['cli@example.com']);
  });

  it('the user added on the command line can log in over HTTP', async () => {
    const r = await fetch(`${server.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': 'cli-tenant', 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'cli@example.com', password: 'a long password' }),
    });
    expect(r.status).toBe(200);
  });
});

describe('graceful shutdown', () => {
  it('finishes an in-flight request, then exits 0 on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-stop-'));
    const server = await startTessera({ TESSERA_ADMIN_TOKEN: 'a'.repeat(40) }, dir);
    const headers = { authorization: `Bearer ${'a'.repeat(40)}`, 'content-type': 'application/json' };
    await fetch(`${server.url}/api/v1/admin/tenants/t1`, { method: 'PUT', headers, body: '{}' });
    // argon2id hashing keeps this request in flight while the signal arrives.
    const inflight = fetch(`${server.url}/api/v1/admin/users`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ tenantId: 't1', email: 'x@example.com', password: 'long password' }),
    });
    await new Promise((r) => setTimeout(r, 5));
    const code = server.stop('SIGTERM');
    const res = await inflight;
    expect(res.status).toBe(201);
    expect(await code).toBe(0);
    expect(server.output()).toContain('tessera stopped');
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);
});
