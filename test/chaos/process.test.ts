// Chaos: the process. SIGTERM reaches Tessera however it was started (`npm start`, `npx tessera
// start`, as PID 1 of its own PID namespace, as a container runs it) and drains: /readyz turns
// 503 while requests are still served, then new connections are refused, a request in flight
// finishes, and the process exits 0. Configuration mistakes exit 2 with one line naming the
// variable.

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { purgePrefix, redisUrlForTests, requireOrSkip, testPrefix } from '../support/redis.ts';
import { CLI, freePort, PROJECT_ROOT } from '../support/tessera-process.ts';
import { isAddrInUse, startOnFreePort } from '../support/ports.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tessera-chaos-proc-'));
  dirs.push(d);
  return d;
}

/** A clean environment: no npm_* variables, no CI flags — only what the case sets. */
function envFor(dir: string, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    TESSERA_PORT: String(port),
    TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`,
    TESSERA_LOG_LEVEL: 'warn',
    ...extra,
  };
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function status(url: string): Promise<number | 'refused'> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(2000) })).status;
  } catch {
    return 'refused';
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/**
 * Spawns a server for a free port and waits until it serves /readyz. One that exits because it
 * lost the port before binding (EADDRINUSE in its output) is spawned again for another port
 * (test/support/ports.ts); one that exits otherwise fails at once, with its output.
 */
async function serving(
  what: string,
  timeoutMs: number,
  spawnFor: (port: number) => ChildProcess,
): Promise<{ child: ChildProcess; port: number; url: string; output: () => string }> {
  return startOnFreePort(async (port) => {
    const child = spawnFor(port);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const url = `http://127.0.0.1:${port}`;
    let gone = false;
    await until(`${what} to serve`, timeoutMs, async () => {
      gone = child.exitCode !== null || child.signalCode !== null;
      return gone || (await status(`${url}/readyz`)) === 200;
    }).catch((err: unknown) => {
      for (const p of descendants(child.pid as number)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // gone
        }
      }
      child.kill('SIGKILL');
      throw new Error(`${(err as Error).message} (${out})`);
    });
    if (gone) {
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
      const err = new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before serving: ${out}`);
      throw isAddrInUse(out) ? Object.assign(err, { code: 'EADDRINUSE' }) : err;
    }
    return { child, port, url, output: () => out };
  });
}

/** Children of a process (Linux /proc). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every process below `pid` (to check none is left serving, and to clean up after a failure). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of childrenOf(pid)) out.push(c, ...descendants(c));
  return out;
}

describe('chaos: SIGTERM reaches the server however it was started', () => {
  const launchers: Array<{ name: string; command: string; args: (port: number) => string[] }> = [
    { name: 'npm start', command: 'npm', args: () => ['start', '--silent'] },
    { name: 'npx tessera start', command: 'npx', args: () => ['--no-install', 'tessera', 'start'] },
    { name: 'PID 1 of its own PID namespace (a container)', command: 'unshare', args: () => ['--pid', '--fork', '--mount-proc', process.execPath, CLI, 'start'] },
  ];
  const unshareWorks = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;

  for (const l of launchers) {
    const skip = l.command === 'unshare' && !unshareWorks;
    it.skipIf(skip)(`${l.name}: SIGTERM to the launcher stops the server, which exits 0`, async () => {
      const dir = tempDir();
      const { child, url, output } = await serving(l.name, 60_000, (port) =>
        spawn(l.command, l.args(port), { cwd: PROJECT_ROOT, env: envFor(dir, port), stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      let tree: number[] = [];
      try {
        tree = descendants(child.pid as number);
        expect(tree.length).toBeGreaterThan(0);
        if (l.command === 'unshare') {
          // The container case: the signal goes to the server itself, PID 1 inside.
          const pid1 = childrenOf(child.pid as number)[0] as number;
          process.kill(pid1, 'SIGTERM');
        } else {
          // What a supervisor does: signal the process it started (npm), not the server.
          child.kill('SIGTERM');
        }
        await until('every process of the tree to end', 20_000, () => tree.every((p) => !alive(p)));
        expect(await status(`${url}/healthz`)).toBe('refused');
        expect(output()).not.toMatch(/shutdown failed|did not finish in time/);
        if (l.command === 'unshare') expect((await exited(child)).code).toBe(0); // unshare passes PID 1's exit code on
      } finally {
        for (const p of [...tree, ...descendants(child.pid as number)]) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // gone
          }
        }
        child.kill('SIGKILL');
      }
    }, 120_000); // room for the waits above (60 s to serve, 20 s to stop); npx resolves slowly on a busy machine
  }
});

describe('chaos: draining on SIGTERM', () => {
  it('readiness 503 first while requests are served; then new connections refused, the request in flight finishes, exit 0', async () => {
    const dir = tempDir();
    const { child, port, url } = await serving('the server', 30_000, (p) =>
      spawn(process.execPath, [CLI, 'start'], {
        cwd: PROJECT_ROOT,
        env: envFor(dir, p, { TESSERA_SHUTDOWN_DELAY_MS: '1500', TESSERA_SHUTDOWN_TIMEOUT_MS: '10000' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    try {
      // A request in flight: headers and half the body sent, the rest only after the listener closed.
      const body = JSON.stringify({ tenant: 'nobody', email: 'nobody@example.com', password: 'x'.repeat(20) });
      const socket = connect(port, '127.0.0.1');
      let response = '';
      socket.on('data', (d: Buffer) => (response += d.toString()));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write(
        `POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body.slice(0, 10)}`,
      );

      const signalledAt = Date.now();
      child.kill('SIGTERM');
      await until('/readyz to answer 503', 5000, async () => (await status(`${url}/readyz`)) === 503);
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.headers.get('retry-after')).toBe('1');
      expect(((await ready.json()) as { code: string }).code).toBe('shutting_down');
      // Still serving during the delay.
      expect(await status(`${url}/healthz`)).toBe(200);
      await until('new connections to be refused', 10_000, async () => (await status(`${url}/healthz`)) === 'refused');
      const refusedAfter = Date.now() - signalledAt;
      expect(refusedAfter).toBeGreaterThanOrEqual(1500); // not before the readiness delay

      socket.end(body.slice(10));
      await closed;
      expect(response).toMatch(/^HTTP\/1\.1 [1-5]\d\d /);
      expect(response).not.toMatch(/^HTTP\/1\.1 5\d\d /);
      const { code } = await exited(child);
      expect(code).toBe(0);
      process.stdout.write(`[chaos] drain: listener closed ${refusedAfter} ms after SIGTERM; exit 0 after ${Date.now() - signalledAt} ms\n`);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('chaos: configuration mistakes exit 2 with one line naming the variable', () => {
  function run(env: Record<string, string>, args = ['start']): { status: number | null; stderr: string } {
    const r = spawnSync(process.execPath, [CLI, ...args], { cwd: PROJECT_ROOT, env, encoding: 'utf8', timeout: 30_000 });
    return { status: r.status, stderr: r.stderr };
  }

  // These runs stop at the configuration check, before any listen: freePort() only fills in a port.
  it('an unknown TESSERA_* variable, with a did-you-mean', async () => {
    const dir = tempDir();
    const r = run(envFor(dir, await freePort(), { TESSERA_KEY_PREFIX: 'mine:' }));
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/TESSERA_KEY_PREFIX: is not a Tessera setting; did you mean TESSERA_REDIS_PREFIX\?/);
    const typo = run(envFor(dir, await freePort(), { TESSERA_PUBLC_URL: 'https://a.example' }));
    expect(typo.status).toBe(2);
    expect(typo.stderr).toMatch(/TESSERA_PUBLC_URL: .*did you mean TESSERA_PUBLIC_URL\?/);
  });

  it('a key that cannot unseal the data already in the store', async () => {
    const dir = tempDir();
    const port = await freePort();
    const first = randomBytes(32).toString('base64url');
    // Set the store up under one key (creates the signing key ring).
    execFileSync(process.execPath, [CLI, 'keys', 'rotate'], { cwd: PROJECT_ROOT, env: envFor(dir, port, { COOKIE_SECRET_SIGN_KEY: first }) });
    const r = run(envFor(dir, port, { COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url') }));
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tessera: configuration error: COOKIE_SECRET_SIGN_KEY: .*cannot be unsealed/);
  });

  it('no admin credential on a Redis store without a platform administrator (on SQLite one is generated and its file named)', async () => {
    const redis = await redisUrlForTests();
    if (requireOrSkip(redis.unavailable)) return;
    const dir = tempDir();
    const prefix = testPrefix('noadmin');
    const port = await freePort();
    const env = {
      ...envFor(dir, port),
      TESSERA_STORE: redis.url,
      TESSERA_REDIS_PREFIX: prefix,
      COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
    };
    try {
      const r = run(env);
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^tessera: configuration error: TESSERA_ADMIN_TOKEN: is required: the store has no platform administrator yet/);
      // Once the store has one, the server starts without the variable.
      const add = spawnSync(process.execPath, [CLI, 'users', 'add', '--tenant', 'platform', '--admin', '--email', 'root@example.com', '--password-stdin'], {
        cwd: PROJECT_ROOT,
        env,
        input: 'correct horse battery staple\n',
        encoding: 'utf8',
      });
      expect(add.status, add.stderr).toBe(0);
      const { child } = await serving('the server', 30_000, (p) =>
        spawn(process.execPath, [CLI, 'start'], { cwd: PROJECT_ROOT, env: { ...env, TESSERA_PORT: String(p) }, stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      child.kill('SIGTERM');
      await exited(child);
    } finally {
      await purgePrefix(redis.url, prefix);
    }
  });
});
