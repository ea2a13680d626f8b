import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

// The rotation and SSO load generators (bench/load-refresh.ts, load-sso.ts) against stub servers:
// their figures line, the chain's retry after a reset, the refusals named on stderr.

const ROOT = join(import.meta.dirname, '../..');

function run(script: string, opts: unknown): Promise<{ figures: Record<string, unknown>; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, script), JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${script} exited ${code}: ${err}`));
      resolve({ figures: JSON.parse(out.trim().split('\n').pop() as string) as Record<string, unknown>, stderr: err });
    });
  });
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A stub that answers each POST's JSON body with `answer` (or destroys the socket when it returns null). */
async function stub(answer: (body: Record<string, string>) => { status: number; body: unknown } | null): Promise<string> {
  const server = createServer((req, res) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (data += c));
    req.on('end', () => {
      const a = answer(JSON.parse(data) as Record<string, string>);
      if (a === null) return req.socket.destroy();
      const body = JSON.stringify(a.body);
      res.writeHead(a.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('bench/load-refresh.ts', () => {
  it('rotates each chain, retries the same token after a reset, names a refusal, and hands back the tokens to go on with', async () => {
    let resetOnce = true;
    const url = await stub(({ refreshToken }) => {
      if (refreshToken === 'bad') return { status: 401, body: { title: 'Unauthorized', status: 401 } };
      const n = Number((refreshToken as string).slice(1));
      if (n === 3 && resetOnce) {
        resetOnce = false;
        return null;
      }
      return { status: 200, body: { refreshToken: `t${n + 1}`, accessToken: 'a' } };
    });
    const { figures, stderr } = await run('bench/load-refresh.ts', { url: `${url}/api/v1/auth/token/refresh`, seconds: 60, tokens: ['t0', 'bad'], amount: 10 });
    // Ten responses in all: the bad chain's refusal, then nine rotations of the other (t0 → t9).
    expect(figures).toMatchObject({ requests: 10, non2xx: 1, errors: 1, timeouts: 0, tokens: ['t9', 'bad'] });
    expect(stderr).toMatch(/refused: 401 \{"title":"Unauthorized","status":401\} \(chain 1, after 0 rotations\)/);
    expect(stderr).toMatch(/error: .* \(chain 0, after 3 rotations\)/);
    // p50/p99 of the 2xx responses to 0.01 ms (bench/latency.ts), the load's CPU and wall seconds.
    for (const k of ['p50', 'p99', 'loadCpuS', 'loadWallS', 'rps']) expect(figures[k]).toBeGreaterThan(0);
    expect(Number((figures.p99 as number).toFixed(2))).toBe(figures.p99);
  });

  it('gives up on a chain after three failures in a row', async () => {
    const url = await stub(() => null);
    const { figures, stderr } = await run('bench/load-refresh.ts', { url, seconds: 60, tokens: ['t0'] });
    expect(figures).toMatchObject({ requests: 0, non2xx: 0, errors: 3, tokens: ['t0'] });
    expect(stderr.trim().split('\n')).toHaveLength(3);
  });
});

describe('bench/load-sso.ts', () => {
  it('exchanges each token once with the verifier, and names the first refusal', async () => {
    const seen: string[] = [];
    const url = await stub(({ token, codeVerifier }) => {
      seen.push(token as string);
      expect(codeVerifier).toBe('bench-verifier-' + 'v'.repeat(40));
      return token === 'bad' ? { status: 400, body: { title: 'Bad Request', status: 400 } } : { status: 200, body: { accessToken: 'a' } };
    });
    const dir = mkdtempSync(join(tmpdir(), 'load-sso-'));
    try {
      const tokens = ['ok1', 'ok2', 'bad', 'ok3', 'ok4', 'ok5'];
      writeFileSync(join(dir, 'tokens.txt'), tokens.join('\n') + '\n');
      const { figures, stderr } = await run('bench/load-sso.ts', { url: `${url}/api/v1/sso/token`, connections: 2, seconds: 60, tokens: join(dir, 'tokens.txt') });
      expect(figures).toMatchObject({ requests: 6, non2xx: 1, errors: 0, timeouts: 0 });
      expect(figures.p50).toBeGreaterThan(0);
      expect(seen.sort()).toEqual([...tokens].sort());
      expect(stderr).toBe('first refusal: 400 {"title":"Bad Request","status":400}\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
