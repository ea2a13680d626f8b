// Backups of the SQLite store: `tessera backup` copies the live file while a server keeps writing
// (SQLite's online backup API), `tessera restore` puts it in place of another store; a server on
// the restored file accepts the sessions that were valid at the backup, refuses the ones ended
// before it, and the audit chain verifies.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, PROJECT_ROOT, startTessera } from '../support/tessera-process.ts';

const ADMIN = 'chaos-admin-' + 'a'.repeat(32);
const PASSWORD = 'correct horse battery';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tessera-backup-'));
  dirs.push(d);
  return d;
}

function cli(env: Record<string, string>, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** As cli(), without blocking the event loop (so the test's own writer keeps writing). */
function cliAsync(env: Record<string, string>, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: PROJECT_ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('backup and restore of the SQLite store', () => {
  it('backs up while serving; the restored store keeps valid sessions valid, ended ones ended, and its audit chain verifies', async () => {
    const a = tempDir();
    const envA = {
      TESSERA_STORE: `sqlite:${join(a, 'tessera.db')}`,
      COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
      TESSERA_ADMIN_TOKEN: ADMIN,
      TESSERA_LOG_LEVEL: 'warn',
      // The tokens' issuer; the default would follow the port, which differs after the restore.
      TESSERA_PUBLIC_URL: 'https://auth.tessera.test',
    };
    const server = await startTessera(envA);
    const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    expect((await fetch(`${server.url}/api/v1/admin/tenants/t-backup`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' })).status).toBe(200);
    expect(
      (await fetch(`${server.url}/api/v1/admin/users`, { method: 'POST', headers: h, body: JSON.stringify({ tenantId: 't-backup', email: 'ada@example.com', password: PASSWORD }) })).status,
    ).toBe(201);
    const login = async () => {
      const r = await fetch(`${server.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'x-tenant-id': 't-backup', 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'ada@example.com', password: PASSWORD }),
      });
      expect(r.status).toBe(200);
      return (await r.json()) as { userSessionToken: string };
    };
    const kept = await login();
    const ended = await login();
    expect((await fetch(`${server.url}/api/v1/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${ended.userSessionToken}` } })).status).toBe(204);

    // Writes (tenants, with their audit records) keep going during the backup.
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      while (writing) {
        const w = await fetch(`${server.url}/api/v1/admin/tenants/t-w-${writes}`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' });
        expect(w.status).toBe(200);
        writes += 1;
      }
    })();
    const backupFile = join(tempDir(), 'tessera-backup.db');
    const writesBefore = writes;
    const b = await cliAsync(envA, ['backup', backupFile]);
    const writesDuring = writes - writesBefore;
    writing = false;
    await writer;
    expect(b.stderr).toBe('');
    expect(b.status).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ backup: backupFile });
    expect(cli(envA, ['backup', backupFile]).status).toBe(1); // never overwrites
    await server.stop();

    // Restore into another place, start a server there with the same key.
    const c = tempDir();
    const envC = { ...envA, TESSERA_STORE: `sqlite:${join(c, 'tessera.db')}` };
    const r = cli(envC, ['restore', backupFile]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(cli(envC, ['restore', backupFile]).status).toBe(1); // a store is there now: --force needed
    expect(cli(envC, ['restore', backupFile, '--force']).status).toBe(0);
    const damaged = join(tempDir(), 'damaged.db');
    writeFileSync(damaged, 'not a database');
    expect(cli(envC, ['restore', damaged, '--force']).status).toBe(1);

    const verify = cli(envC, ['audit', 'verify']);
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);
    const restored = await startTessera(envC);
    try {
      expect((await fetch(`${restored.url}/api/v1/session`, { headers: { authorization: `Bearer ${kept.userSessionToken}` } })).status).toBe(200);
      expect((await fetch(`${restored.url}/api/v1/session`, { headers: { authorization: `Bearer ${ended.userSessionToken}` } })).status).toBe(401);
      process.stdout.write(`[chaos] backup taken while ${writesDuring} tenants were written; restored store serves and verifies\n`);
    } finally {
      await restored.stop();
    }
  }, 120_000);
});
