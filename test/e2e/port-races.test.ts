// A child process that loses its port to another process before it binds is started again on
// another port, and only the child itself counts as up — not whoever took the port, even when
// that one answers like the child would (test/support/ports.ts). Each collision is made
// deterministic: the first picked port is taken before the child starts.

import { createServer } from 'node:http';
import { createServer as createNetServer, type Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/ports.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone } from '../support/redis.ts';
import { startTessera } from '../support/tessera-process.ts';

const dirs: string[] = [];
const blockers: Server[] = [];
afterAll(async () => {
  for (const b of blockers) await new Promise<void>((resolve) => b.close(() => resolve()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Takes `port` with a server that answers like the child would: HTTP 200 to anything, or "+PONG" to any Redis command. */
async function impostor(port: number, kind: 'http' | 'redis'): Promise<void> {
  const s =
    kind === 'http'
      ? createServer((_req, res) => res.end('{"status":"ok"}'))
      : createNetServer((socket) => socket.on('data', () => socket.write('+PONG\r\n')));
  await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve));
  blockers.push(s);
}

/** Free ports, the first of which an impostor takes before the child is started on it. */
function collidingPick(kind: 'http' | 'redis') {
  const picked: number[] = [];
  return {
    picked,
    pick: async () => {
      const port = await freePort();
      picked.push(port);
      if (picked.length === 1) await impostor(port, kind);
      return port;
    },
  };
}

describe('a child process that lost its port starts again on another', () => {
  it('Tessera: the impostor answering /readyz 200 on the first port is not taken for it; the second start serves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-port-races-'));
    dirs.push(dir);
    const { picked, pick } = collidingPick('http');
    const t = await startTessera({ TESSERA_STORE: `sqlite:${join(dir, 'tessera.db')}`, COOKIE_SECRET_SIGN_KEY: 'port-races-' + 'k'.repeat(32) }, undefined, { pick });
    try {
      expect(picked).toHaveLength(2);
      expect(t.url).toBe(`http://127.0.0.1:${picked[1]}`);
      const r = await fetch(`${t.url}/readyz`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/json/);
      expect(t.output()).toContain('"tessera listening"');
    } finally {
      await t.stop();
    }
  }, 120_000);

  const binariesMissing = redisBinariesMissing();
  it.skipIf(requireOrSkip(binariesMissing))('redis-server: the impostor answering PONG on the first port is not taken for it; the second start serves', async () => {
    const { picked, pick } = collidingPick('redis');
    const redis = await startRedisStandalone({ pick });
    try {
      expect(picked).toHaveLength(2);
      expect(redis.port).toBe(picked[1]);
      expect(redis.url).toBe(`redis://127.0.0.1:${picked[1]}`);
    } finally {
      await redis.stop();
    }
  });
});
