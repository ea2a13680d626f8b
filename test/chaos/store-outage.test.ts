// Chaos: the store goes away under load and comes back. Requests that need the store answer 503
// `store_unavailable` with Retry-After (never a hang, a 500 or a crash; vitest fails the file on
// an unhandled rejection), /readyz answers 503, and service resumes by itself once the store is
// back. Redis: the server is SIGKILLed and restarted (AOF on, so the data comes back). SQLite: the
// file's filesystem (a tmpfs the test mounts) fills up, then gets room again.
//
// The figures (503 latency, recovery time) are printed, not asserted: docs/reliability.md has them.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone } from '../support/redis.ts';

const ADMIN = 'chaos-admin-' + 'a'.repeat(32);
const PASSWORD = 'correct horse battery';

interface Sample {
  at: number;
  path: string;
  status: number | 'error';
  ms: number;
  retryAfter: string | null;
  code: string | null;
}

async function call(url: string, init: RequestInit = {}): Promise<Omit<Sample, 'at' | 'path'>> {
  const t0 = performance.now();
  try {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
    const text = await r.text();
    let code: string | null = null;
    try {
      code = (JSON.parse(text) as { code?: string }).code ?? null;
    } catch {
      // not JSON
    }
    return { status: r.status, ms: performance.now() - t0, retryAfter: r.headers.get('retry-after'), code };
  } catch {
    return { status: 'error', ms: performance.now() - t0, retryAfter: null, code: null };
  }
}

async function setUp(server: RunningServer, tenant: string): Promise<void> {
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  expect((await fetch(`${server.url}/api/v1/admin/tenants/${tenant}`, { method: 'PUT', headers: h, body: '{"profile":"integration"}' })).status).toBe(200);
  const u = await fetch(`${server.url}/api/v1/admin/users`, {
    method: 'POST',
    headers: h,
    body: JSON.stringify({ tenantId: tenant, email: 'ada@example.com', password: PASSWORD }),
  });
  expect(u.status).toBe(201);
}

/**
 * Load until `stop()`: each worker logs in once (the login throttle would refuse a login loop),
 * then reads its session list (a store read) and writes a tenant (a store write, with its audit
 * record) in a loop, while one polls /readyz. Returns every sample.
 */
async function load(url: string, tenant: string, workers = 4): Promise<{ samples: Sample[]; stop: () => Promise<void> }> {
  const samples: Sample[] = [];
  let running = true;
  const record = (path: string, r: Omit<Sample, 'at' | 'path'>) => samples.push({ at: Date.now(), path, ...r });
  const tokens: string[] = [];
  for (let i = 0; i < workers; i++) {
    const r = await fetch(`${url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'x-tenant-id': tenant, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'ada@example.com', password: PASSWORD }),
    });
    expect(r.status).toBe(200);
    tokens.push(((await r.json()) as { userSessionToken: string }).userSessionToken);
  }
  let n = 0;
  const worker = async (token: string) => {
    while (running) {
      record('sessions', await call(`${url}/api/v1/sessions`, { headers: { authorization: `Bearer ${token}` } }));
      record(
        'write',
        await call(`${url}/api/v1/admin/tenants/${tenant}-w${n++}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body: '{"profile":"integration"}',
        }),
      );
    }
  };
  const ready = async () => {
    while (running) {
      record('readyz', await call(`${url}/readyz`));
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const all = [...tokens.map(worker), ready()];
  return {
    samples,
    stop: async () => {
      running = false;
      await Promise.all(all);
    },
  };
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

function p(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** Every answer is an expected one: the normal ones, or 503 store_unavailable with Retry-After. */
function checkAnswers(samples: Sample[], normal: Record<string, number[]>): Sample[] {
  const unavailable = samples.filter((s) => s.status === 503);
  for (const s of samples) {
    expect(s.status, `${s.path} answered ${s.status}`).not.toBe('error');
    if (s.status === 503) {
      expect(s.retryAfter, `${s.path} 503 without Retry-After`).toBe('1');
      expect(s.code).toBe('store_unavailable');
    } else {
      expect(normal[s.path], `${s.path} answered ${s.status}`).toContain(s.status);
    }
  }
  return unavailable;
}

const NORMAL = { sessions: [200], write: [200], readyz: [200] };

const redisSkip = requireOrSkip(redisBinariesMissing());

describe.skipIf(redisSkip)('chaos: Redis killed under load', () => {
  it('503 store_unavailable with Retry-After while it is down, /readyz 503, resumes by itself', async () => {
    const redis = await startRedisStandalone({ aof: 'everysec' });
    const dir = mkdtempSync(join(tmpdir(), 'tessera-chaos-outage-'));
    let server: RunningServer | null = null;
    try {
      const config = loadConfig(
        {
          TESSERA_STORE: redis.url,
          TESSERA_REDIS_PREFIX: 'chaos:',
          COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
          TESSERA_ADMIN_TOKEN: ADMIN,
          TESSERA_PORT: '0',
          TESSERA_LOG_LEVEL: 'silent',
        },
        dir,
      );
      server = await startServer(config, { logger: pino({ level: 'silent' }) });
      await setUp(server, 't-outage');
      const l = await load(server.url, 't-outage');
      await until('some successful writes', 20_000, () => l.samples.some((s) => s.path === 'write' && s.status === 200));
      execFileSync('redis-cli', ['-p', String(redis.port), 'BGREWRITEAOF']); // the tenant and user are on disk
      await new Promise((r) => setTimeout(r, 1500));

      const killedAt = Date.now();
      await redis.kill();
      await until('/readyz to answer 503', 10_000, () => l.samples.some((s) => s.path === 'readyz' && s.at > killedAt && s.status === 503));
      await new Promise((r) => setTimeout(r, 1500));
      await redis.restart();
      const backAt = Date.now();
      await until('a write to succeed again', 20_000, () => l.samples.some((s) => s.path === 'write' && s.at > backAt && s.status === 200)).catch((err: unknown) => {
        const after = l.samples.filter((s) => s.at > backAt).map((s) => `${s.path}:${s.status}:${s.code}`);
        throw new Error(`${String(err)}; answers since: ${[...new Set(after)].join(' ')}`);
      });
      const resumedAfter = Math.min(...l.samples.filter((s) => s.path === 'write' && s.at > backAt && s.status === 200).map((s) => s.at)) - backAt;
      await new Promise((r) => setTimeout(r, 500));
      await l.stop();

      const unavailable = checkAnswers(l.samples, NORMAL);
      expect(unavailable.length).toBeGreaterThan(0);
      // While Redis was down nothing was served from memory either: every request answered 503
      // (after the first second, when requests already in flight could still finish).
      const during = l.samples.filter((s) => s.at > killedAt + 1000 && s.at < backAt && s.path !== 'readyz');
      expect(during.length).toBeGreaterThan(0);
      expect(during.every((s) => s.status === 503)).toBe(true);
      const ms = unavailable.map((s) => s.ms);
      process.stdout.write(
        `[chaos] redis killed: ${l.samples.length} requests, ${unavailable.length} answered 503 (p50 ${p(ms, 0.5).toFixed(1)} ms, p95 ${p(ms, 0.95).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms), ` +
          `no other failure; first successful write ${resumedAfter} ms after redis-server was accepting again\n`,
      );
    } finally {
      await server?.stop();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A small tmpfs for the SQLite file, so that its disk can really fill up (needs CAP_SYS_ADMIN). */
function mountSmallDisk(): { dir: string; unmount(): void } | null {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-chaos-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return {
    dir,
    unmount() {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const disk = mountSmallDisk();
afterAll(() => disk?.unmount());
if (disk === null) process.stderr.write('[tessera tests] skipping the disk-full test: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)\n');

describe.skipIf(disk === null)('chaos: the SQLite disk fills up under load', () => {
  it('503 store_unavailable with Retry-After for writes, /readyz 503, resumes once there is room', async () => {
    const d = disk as { dir: string };
    const config = loadConfig(
      {
        TESSERA_STORE: `sqlite:${join(d.dir, 'tessera.db')}`,
        COOKIE_SECRET_SIGN_KEY: randomBytes(32).toString('base64url'),
        TESSERA_ADMIN_TOKEN: ADMIN,
        TESSERA_PORT: '0',
        TESSERA_LOG_LEVEL: 'silent',
      },
      d.dir,
    );
    const server = await startServer(config, { logger: pino({ level: 'silent' }) });
    const filler = join(d.dir, 'filler');
    try {
      await setUp(server, 't-disk');
      const l = await load(server.url, 't-disk', 2);
      await until('some successful writes', 20_000, () => l.samples.some((s) => s.path === 'write' && s.status === 200));
      // Fill the disk: write until ENOSPC.
      const chunk = Buffer.alloc(64 * 1024, 1);
      let filled = 0;
      try {
        for (;;) {
          writeFileSync(filler, chunk, { flag: 'a' });
          filled += chunk.length;
        }
      } catch {
        // full
      }
      const fullAt = Date.now();
      await until('a write to answer 503', 20_000, () => l.samples.some((s) => s.path === 'write' && s.at > fullAt && s.status === 503));
      await until('/readyz to answer 503', 10_000, () => l.samples.some((s) => s.path === 'readyz' && s.at > fullAt && s.status === 503));
      unlinkSync(filler);
      const roomAt = Date.now();
      const readyAfter = await until('/readyz to answer 200 again', 10_000, () =>
        l.samples.some((s) => s.path === 'readyz' && s.at > roomAt && s.status === 200),
      );
      await until('a write to succeed again', 10_000, () => l.samples.some((s) => s.path === 'write' && s.at > roomAt && s.status === 200));
      await l.stop();
      const unavailable = checkAnswers(l.samples, NORMAL);
      const ms = unavailable.map((s) => s.ms);
      process.stdout.write(
        `[chaos] sqlite disk full (${(filled / 1024).toFixed(0)} KiB filler): ${l.samples.length} requests, ${unavailable.length} answered 503 ` +
          `(p50 ${p(ms, 0.5).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms), no other failure; ready ${readyAfter} ms after room was made\n`,
      );
    } finally {
      await server.stop();
    }
  });
});
