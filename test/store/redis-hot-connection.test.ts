// The lean connection for the hot Function calls (src/store/redis/hot-connection.ts), on
// throw-away redis-servers: its replies and errors, pipelining order, AUTH and SELECT, a server
// killed and restarted under load, the fallback to node-redis while it is not ready (and for a
// call its socket closed before it was written), close(), and TLS (rediss://).

import { spawnSync } from 'node:child_process';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, ErrorReply, SimpleError, SocketClosedUnexpectedlyError } from 'redis';
import { StoreUnavailable } from '../../src/domain/errors.ts';
import { hashSecret, newSecret } from '../../src/domain/secrets.ts';
import { DEFAULT_LIFETIMES, issueSession, type Session } from '../../src/domain/session.ts';
import type { RefreshToken } from '../../src/store/port.ts';
import { HotConnection, type HotConnectionOptions, type HotWrites } from '../../src/store/redis/hot-connection.ts';
import { openConnection } from '../../src/store/redis/connection.ts';
import { openRedisStore, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { parseRedisUrl } from '../../src/store/redis/url.ts';
import { redisBinariesMissing, redisTlsFiles, requireOrSkip, startRedisStandalone, testPrefix } from '../support/redis.ts';

const skip = requireOrSkip(redisBinariesMissing());
const T0 = Date.now();
const HOUR = 3_600_000;
/** redis-cli's credentials (the AUTH test's server), or its TLS options (the TLS test's). */
let auth: string[] = [];

type Server = Awaited<ReturnType<typeof startRedisStandalone>>;

function cli(port: number, ...args: string[]): string {
  const r = spawnSync('redis-cli', ['-p', String(port), '--no-auth-warning', ...auth, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

/** CLIENT LIST of the server, without the redis-cli connection asking. */
function clients(port: number): Array<{ id: string; cmd: string; db: string; user: string }> {
  return cli(port, 'CLIENT', 'LIST')
    .trim()
    .split('\n')
    .map((line) => Object.fromEntries(line.split(' ').map((kv) => kv.split('=') as [string, string])))
    .filter((c) => c.cmd !== 'client|list')
    .map((c) => ({ id: c.id as string, cmd: c.cmd as string, db: c.db as string, user: c.user as string }));
}

async function eventually(check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('not within time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function session(userId: string): Session {
  return issueSession({ tenantId: 't-hot', userId, kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password', parentHandle: null }, T0).session;
}

/** A stored session with a refresh token; rotate() rotates its current token once. */
async function chain(store: RedisSessionStore, userId: string) {
  const r = await store.createSession(session(userId), T0);
  if (!r.ok) throw new Error('not created');
  const first: RefreshToken = { tokenHash: hashSecret(newSecret()), sessionHandle: r.session.handle, tenantId: 't-hot', userId, createdAt: T0, rotatedAt: null, successorHash: null };
  await store.addRefreshToken(first);
  let current = first.tokenHash;
  let at = T0;
  const c = {
    async rotate() {
      const next = hashSecret(newSecret());
      at += 10;
      const result = await store.rotateRefreshToken(current, next, at, 0, at + HOUR);
      if (result.outcome === 'rotated') current = next;
      return result;
    },
  };
  // The first call of a script in a store checks its library (lua.ts), through node-redis: the
  // calls after it take the usual way.
  if ((await c.rotate()).outcome !== 'rotated') throw new Error('not rotated');
  return c;
}

/**
 * A chain whose rotations go through the lean connection: it rotates until an FCALL shows on a
 * connection of its own (node-redis's last command being a PING). The lean connection opens beside
 * node-redis within half the store's connect timeout; on a loaded machine it may come up after the
 * store opened, and node-redis carries the hot calls meanwhile. Tests wait for it rather than
 * assume it is there (as the restart test waits for it to be back, d6427f3).
 */
async function onLean(store: RedisSessionStore, port: number, userId: string) {
  const c = await chain(store, userId);
  const until = Date.now() + 10_000;
  for (;;) {
    expect((await c.rotate()).outcome).toBe('rotated');
    await store.ping();
    if (clients(port).some((x) => x.cmd === 'fcall')) return c;
    if (Date.now() > until) throw new Error('the lean connection did not come up within 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The ids of a connection's node-redis connection and of its lean one, once the lean one is up (as onLean). */
async function ids(conn: Awaited<ReturnType<typeof openConnection>>): Promise<{ lean: number; plain: number }> {
  const plain = (await conn.send(undefined, ['CLIENT', 'ID'])) as number;
  const until = Date.now() + 10_000;
  for (;;) {
    const lean = (await conn.sendHot?.('k', ['CLIENT', 'ID'], false)) as number;
    if (lean !== plain) return { lean, plain };
    if (Date.now() > until) throw new Error('the lean connection did not come up within 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function open(url: string, writes: HotWrites | 'off' = 'task') {
  return openRedisStore(url, { prefix: testPrefix('hot'), hotWrites: writes, commandTimeoutMs: 1000, connectTimeoutMs: 1000 });
}

describe.skipIf(skip)('the lean connection for hot calls (a throw-away redis-server)', () => {
  let server: Server;

  beforeAll(async () => {
    server = await startRedisStandalone();
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function hot(writes: HotWrites = 'task', more: Partial<HotConnectionOptions> = {}) {
    const c = new HotConnection({ host: '127.0.0.1', port: server.port, tls: false, database: 0, connectTimeoutMs: 1000, writes, maxQueued: 100_000, ...more });
    expect(await c.start()).toBe(true);
    return c;
  }

  it('answers as node-redis does in RESP2: text or Buffers, integers, nil, nested arrays, and error replies as SimpleError', async () => {
    const c = await hot();
    try {
      const k = `${testPrefix('hot-replies')}k`;
      expect(await c.send(['SET', k, 'välue'])).toBe('OK');
      expect(await c.send(['GET', k])).toBe('välue');
      expect(await c.send(['GET', k], true)).toEqual(Buffer.from('välue'));
      expect(await c.send(['GET', `${k}:none`])).toBeNull();
      expect(await c.send(['STRLEN', k])).toBe(6);
      expect(await c.send(['EVAL', "return {1, 'a', {false, 'b'}, -7}", '0'])).toEqual([1, 'a', [null, 'b'], -7]);
      expect(await c.send(['DEL', k, Buffer.from(`${k}:x`)])).toBe(1);
      const err = await c.send(['FCALL', 'tessera_no_such_function', '0']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SimpleError);
      expect(err).toBeInstanceOf(ErrorReply);
      expect((err as Error).message).toMatch(/^ERR Function not found/);
      // The connection goes on after an error reply.
      expect(await c.send(['PING'])).toBe('PONG');
    } finally {
      await c.close();
    }
  });

  for (const writes of ['task', 'turn'] as const) {
    it(`keeps the order of pipelined commands across partial reads ('${writes}' writes)`, async () => {
      const c = await hot(writes);
      try {
        const k = `${testPrefix('hot-order')}k`;
        const big = 'x'.repeat(300_000); // several reads, and over one slab
        const sent: Array<Promise<unknown>> = [];
        for (let i = 0; i < 3000; i++) {
          sent.push(i % 500 === 7 ? c.send(['ECHO', big]) : c.send(['ECHO', `${i}:${'y'.repeat(i % 97)}`]));
          if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
        }
        sent.push(c.send(['INCRBY', k, '5']));
        const replies = await Promise.all(sent);
        for (let i = 0; i < 3000; i++) expect(replies[i]).toBe(i % 500 === 7 ? big : `${i}:${'y'.repeat(i % 97)}`);
        expect(replies[3000]).toBe(5);
        await c.send(['DEL', k]);
      } finally {
        await c.close();
      }
    });
  }

  it('settles every close() call, a second one included, once the awaited replies are in', async () => {
    const c = await hot('task');
    const reply = c.send(['PING']);
    const first = c.close();
    const second = c.close();
    expect(second).toBe(first);
    await expect(reply).resolves.toBe('PONG');
    await expect(Promise.all([first, second])).resolves.toEqual([undefined, undefined]);
  });

  it('refuses a command past maxQueued at once and keeps the others', async () => {
    const c = new HotConnection({ host: '127.0.0.1', port: server.port, tls: false, database: 0, connectTimeoutMs: 1000, writes: 'task', maxQueued: 2 });
    expect(await c.start()).toBe(true);
    try {
      const sent = [c.send(['PING']), c.send(['PING']), c.send(['PING'])];
      const settled = await Promise.allSettled(sent);
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    } finally {
      await c.close();
    }
  });

  it('sends the rotation through a connection of its own, and everything else through node-redis', async () => {
    for (const writes of ['task', 'turn', 'off'] as const) {
      const before = new Set(clients(server.port).map((c) => c.id));
      const store = await open(server.url, writes);
      try {
        const c = writes === 'off' ? await chain(store, `u-own-${writes}`) : await onLean(store, server.port, `u-own-${writes}`);
        expect((await c.rotate()).outcome).toBe('rotated');
        await store.ping();
        const mine = clients(server.port).filter((x) => !before.has(x.id));
        // node-redis's last command is the PING; the lean connection's the rotation's FCALL.
        const fcall = mine.filter((x) => x.cmd === 'fcall');
        if (writes === 'off') expect(fcall).toEqual([]);
        else expect(fcall).toHaveLength(1);
      } finally {
        await store.close();
      }
    }
  });

  it('fails the calls in flight when the server is killed with StoreUnavailable, and later calls succeed on the lean connection again', async () => {
    const aof = await startRedisStandalone({ aof: 'always' });
    const store = await open(aof.url);
    try {
      await onLean(store, aof.port, 'u-kill-lean');
      let running = true;
      const failures: unknown[] = [];
      let rotated = 0;
      const loops = Array.from({ length: 20 }, async (_, i) => {
        // A failed call may have rotated on the server (the reply was lost): a new chain then.
        let c: Awaited<ReturnType<typeof chain>> | null = null;
        for (let n = 0; running; n++) {
          try {
            c ??= await chain(store, `u-kill-${i}-${n}`);
            const r = await c.rotate();
            if (r.outcome === 'rotated') rotated++;
          } catch (err) {
            failures.push(err);
            c = null;
            await new Promise((r) => setTimeout(r, 5));
          }
        }
      });
      await eventually(() => rotated > 200);
      // Every connection of the store, the lean one among them (it was opened with the store).
      const connections = clients(aof.port).length;
      await aof.restart();
      // Back: rotations go through again (node-redis reconnects at once and carries them while the
      // lean connection waits out its backoff, up to 2 s), and the lean connection is there again.
      const at = rotated;
      await eventually(() => rotated > at + 200 && clients(aof.port).length >= connections, 10_000);
      const back = rotated;
      await eventually(() => rotated > back + 200, 10_000);
      running = false;
      await Promise.all(loops);
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) expect(f).toBeInstanceOf(StoreUnavailable);
      // The last rotations went through the lean connection (node-redis's last command: the PING).
      await store.ping();
      expect(clients(aof.port).filter((x) => x.cmd === 'fcall')).toHaveLength(1);
    } finally {
      await store.close();
      await aof.stop();
    }
  });

  it('fails in-flight commands with node-redis SocketClosedUnexpectedlyError when the connection drops', async () => {
    const c = await hot();
    try {
      const pending = c.send(['BLPOP', `${testPrefix('hot-drop')}nothing`, '5']).catch((e: unknown) => e);
      await eventually(() => clients(server.port).some((x) => x.cmd === 'blpop'));
      cli(server.port, 'CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      expect(await pending).toBeInstanceOf(SocketClosedUnexpectedlyError);
      expect(c.ready).toBe(false);
      // It reconnects by itself.
      await eventually(() => c.ready);
      expect(await c.send(['PING'])).toBe('PONG');
    } finally {
      await c.close();
    }
  });

  it('sends a hot call through node-redis while the lean connection is not ready', async () => {
    const store = await open(server.url);
    try {
      const c = await onLean(store, server.port, 'u-fallback');
      const lean = clients(server.port).find((x) => x.cmd === 'fcall');
      expect(lean).toBeDefined();
      cli(server.port, 'CLIENT', 'KILL', 'ID', (lean as { id: string }).id);
      await new Promise((r) => setTimeout(r, 10)); // its close read, its reconnect not yet (50 ms at least)
      // At once, before the lean connection is back: node-redis carries the rotation.
      expect((await c.rotate()).outcome).toBe('rotated');
      expect((await c.rotate()).outcome).toBe('rotated');
    } finally {
      await store.close();
    }
  });

  // A call encoded on the lean connection whose socket the server closed before it was written
  // never ran: it goes through node-redis (and succeeds) instead of failing as a written one.
  // CLIENT KILL (redis-cli, synchronously) closes the lean connection's socket on the server; the
  // event loop's next poll phase reads that end. The call is sent in a check phase (after a
  // setImmediate): with 'turn' its write waits for the next turn's check phase, after that poll.
  it("sends a hot call its socket closed before it was written through node-redis ('turn': the write at the turn's end)", async () => {
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000, hotWrites: 'turn' });
    try {
      const { lean, plain } = await ids(conn);
      await new Promise((r) => setImmediate(r));
      const call = conn.sendHot?.('k', ['CLIENT', 'ID'], false);
      cli(server.port, 'CLIENT', 'KILL', 'ID', String(lean));
      // Before: SocketClosedUnexpectedlyError (a 503 for a rotation) although nothing was written.
      expect(await call).toBe(plain);
      expect(await conn.send(undefined, ['CLIENT', 'ID'])).toBe(plain);
    } finally {
      await conn.close();
    }
  });

  // With 'task' the write follows the send in the same task: the window is between the read of the
  // server's end and the socket's 'close' (a later phase of the same turn). A call sent there goes
  // through node-redis; before, it was written after the end and failed.
  it("sends a hot call made after the server ended the lean connection, before its 'close', through node-redis ('task')", async () => {
    const conn = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 1000, commandTimeoutMs: 1000, hotWrites: 'task' });
    try {
      const { lean, plain } = await ids(conn);
      await new Promise((r) => setImmediate(r));
      cli(server.port, 'CLIENT', 'KILL', 'ID', String(lean));
      await new Promise((r) => setImmediate(r)); // the next turn's check phase: its poll read the end
      expect(await conn.sendHot?.('k', ['CLIENT', 'ID'], false)).toBe(plain);
    } finally {
      await conn.close();
    }
  });

  it('fails a call written before its socket closed (it may have run), and sends one never written through the fallback', async () => {
    const sentAnotherWay: string[][] = [];
    const c = new HotConnection({
      host: '127.0.0.1',
      port: server.port,
      tls: false,
      database: 0,
      connectTimeoutMs: 1000,
      writes: 'turn',
      maxQueued: 100_000,
      fallback: (args) => {
        sentAnotherWay.push(args as string[]);
        return Promise.resolve('by the fallback');
      },
    });
    expect(await c.start()).toBe(true);
    try {
      const key = `${testPrefix('hot-unwritten')}nothing`;
      const written = c.send(['BLPOP', key, '5']).catch((e: unknown) => e);
      await eventually(() => clients(server.port).some((x) => x.cmd === 'blpop'));
      await new Promise((r) => setImmediate(r));
      const unwritten = c.send(['ECHO', 'not written']);
      cli(server.port, 'CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      expect(await written).toBeInstanceOf(SocketClosedUnexpectedlyError);
      expect(await unwritten).toBe('by the fallback');
      expect(sentAnotherWay).toEqual([['ECHO', 'not written']]);
      await eventually(() => c.ready);
      expect(await c.send(['PING'])).toBe('PONG');
    } finally {
      await c.close();
    }
  });

  it('rejects (does not throw) a command with an argument neither a string nor a Buffer, and goes on', async () => {
    const c = await hot('task');
    try {
      const bad = c.send(['ECHO', 5 as unknown as string]);
      await expect(bad).rejects.toBeInstanceOf(Error);
      const bad2 = c.send(['ECHO', null as unknown as string]);
      await expect(bad2).rejects.toBeInstanceOf(Error);
      expect(await c.send(['ECHO', 'after'])).toBe('after');
    } finally {
      await c.close();
    }
  });

  // Calls sent while the socket is draining (a write answered false) wait in the writer: never
  // written, so at a close they go through the fallback (node-redis here), with their replies.
  it('sends the calls held while the socket drains through the fallback when the connection is killed', async () => {
    const nr = createClient({ url: server.url });
    await nr.connect();
    const fellBack: string[][] = [];
    const c = await hot('task', {
      fallback: (args) => {
        fellBack.push(args.map(String));
        return nr.sendCommand(args);
      },
    });
    const key = `${testPrefix('hot-drain')}held`;
    try {
      const lean = (await c.send(['CLIENT', 'ID'])) as number;
      server.pause();
      let written: Array<Promise<unknown>>;
      try {
        // 48 MB in one write while the server reads nothing: far past the sockets' buffers.
        const big = Buffer.alloc(8 << 20, 120);
        written = Array.from({ length: 6 }, () => c.send(['ECHO', big], true).catch((e: unknown) => e));
        await new Promise((r) => setImmediate(r)); // the write (draining from now on)
      } finally {
        server.resume();
      }
      const held = [c.send(['ECHO', 'held']), c.send(['INCR', key])];
      await new Promise((r) => setImmediate(r)); // a flush: held, the socket is draining
      // spawnSync blocks this process: the socket cannot drain before the kill is done.
      cli(server.port, 'CLIENT', 'KILL', 'ID', String(lean));
      expect(await Promise.all(held)).toEqual(['held', 1]);
      expect(fellBack).toEqual([['ECHO', 'held'], ['INCR', key]]);
      for (const w of await Promise.all(written)) expect(w).toBeInstanceOf(SocketClosedUnexpectedlyError);
      expect(await nr.get(key)).toBe('1');
    } finally {
      server.resume();
      await c.close();
      await nr.del(key);
      await nr.close();
    }
  });

  // The review's kill probe: calls each INCR a key of their own while the lean connection is
  // killed again and again; none may run twice, none may be lost without an error.
  it('runs no call twice and loses none while the lean connection is killed 5 times in 3,000 calls', async () => {
    const nr = createClient({ url: server.url });
    await nr.connect();
    const c = await hot('task', { fallback: (args) => nr.sendCommand(args) });
    const prefix = testPrefix('hot-kill');
    const keys = Array.from({ length: 3000 }, (_, i) => `${prefix}${i}`);
    const INCR = "return redis.call('INCR', KEYS[1])";
    try {
      const calls: Array<Promise<unknown>> = [];
      let leanId = (await c.send(['CLIENT', 'ID'])) as number;
      const kills: Array<Promise<unknown>> = [];
      for (let i = 0; i < keys.length; i++) {
        // As connection.ts does: through node-redis while the lean connection is not ready.
        const args = ['EVAL', INCR, '1', keys[i] as string];
        const call = c.ready ? c.send(args) : nr.sendCommand(args);
        call.catch(() => undefined); // looked at below, after the kills
        calls.push(call);
        if (i % 100 === 99) await new Promise((r) => setImmediate(r));
        if (i % 600 === 300) {
          // A kill sent while calls are in flight on the lean connection, then its next id.
          kills.push(nr.sendCommand(['CLIENT', 'KILL', 'ID', String(leanId)]));
          await eventually(() => !c.ready);
          await eventually(() => c.ready);
          leanId = (await c.send(['CLIENT', 'ID'])) as number;
        }
      }
      expect(kills.length).toBe(5);
      await Promise.all(kills);
      const settled = await Promise.allSettled(calls);
      const counts: Array<string | null> = [];
      for (let from = 0; from < keys.length; from += 500) counts.push(...(await nr.mGet(keys.slice(from, from + 500))));
      let failed = 0;
      settled.forEach((r, i) => {
        // Nothing ran twice; a call that succeeded ran once; one that failed says the socket closed.
        expect(counts[i] === null || counts[i] === '1', `${i}: ${String(counts[i])}`).toBe(true);
        if (r.status === 'fulfilled') {
          expect(r.value).toBe(1);
          expect(counts[i]).toBe('1');
        } else {
          failed++;
          expect(r.reason).toBeInstanceOf(SocketClosedUnexpectedlyError);
        }
      });
      // The kills did meet calls in flight (hundreds to near 2,000, with the machine's load), and
      // calls got through between them.
      expect(failed).toBeGreaterThan(0);
      expect(failed).toBeLessThan(keys.length);
    } finally {
      await c.close();
      for (let from = 0; from < keys.length; from += 500) await nr.del(keys.slice(from, from + 500));
      await nr.close();
    }
  });

  it('loads a missing Function through the usual path after the lean connection answered "Function not found"', async () => {
    const store = await open(server.url);
    try {
      const c = await onLean(store, server.port, 'u-flush');
      cli(server.port, 'FUNCTION', 'FLUSH');
      expect((await c.rotate()).outcome).toBe('rotated');
      expect((await c.rotate()).outcome).toBe('rotated');
      await store.ping();
      expect(clients(server.port).filter((x) => x.cmd === 'fcall')).toHaveLength(1);
    } finally {
      await store.close();
    }
  });

  it('authenticates with a user and password and selects the URL database; with a password alone too', async () => {
    const authed = await startRedisStandalone();
    try {
      cli(authed.port, 'ACL', 'SETUSER', 'hotuser', 'on', '>hot-pass', '~*', '&*', '+@all');
      cli(authed.port, 'CONFIG', 'SET', 'requirepass', 'default-pass');
      auth = ['--user', 'hotuser', '--pass', 'hot-pass'];
      const withUser = await open(`redis://hotuser:hot-pass@127.0.0.1:${authed.port}/3`);
      try {
        // The session is written in database 3 by node-redis: the lean connection must be there too.
        await onLean(withUser, authed.port, 'u-auth');
        const lean = clients(authed.port).filter((x) => x.cmd === 'fcall');
        expect(lean).toHaveLength(1);
        expect(lean[0]).toMatchObject({ db: '3', user: 'hotuser' });
      } finally {
        await withUser.close();
      }
      const withPassword = await open(`redis://:default-pass@127.0.0.1:${authed.port}`);
      try {
        await onLean(withPassword, authed.port, 'u-pass');
        expect(clients(authed.port).filter((x) => x.cmd === 'fcall')).toMatchObject([{ db: '0', user: 'default' }]);
      } finally {
        await withPassword.close();
      }
    } finally {
      auth = [];
      await authed.stop();
    }
  });

  it('close() lets a call in flight finish, then closes the lean connection', async () => {
    const store = await open(server.url);
    const c = await onLean(store, server.port, 'u-close');
    const before = new Set(clients(server.port).map((x) => x.id));
    const inFlight = c.rotate();
    await store.close();
    expect((await inFlight).outcome).toBe('rotated');
    await eventually(() => clients(server.port).every((x) => !before.has(x.id)));
  });

  it('on rediss:// sends the hot calls through a lean TLS connection of their own, with correct replies', async () => {
    const files = redisTlsFiles();
    const defaults = getCACertificates('default');
    // Node's TLS clients (node-redis's and the lean connection's) trust the test CA for this test.
    setDefaultCACertificates([...defaults, files.caPem]);
    auth = ['--tls', '--cacert', files.ca];
    const tlsServer = await startRedisStandalone({ tls: files });
    try {
      expect(tlsServer.url).toMatch(/^rediss:/);
      const before = new Set(clients(tlsServer.port).map((x) => x.id));
      const store = await open(tlsServer.url, 'task');
      try {
        const c = await onLean(store, tlsServer.port, 'u-tls');
        for (let i = 0; i < 20; i++) expect((await c.rotate()).outcome).toBe('rotated');
        await store.ping();
        const mine = clients(tlsServer.port).filter((x) => !before.has(x.id));
        // node-redis's last command is the PING; the lean connection's the rotations' FCALL.
        expect(mine.filter((x) => x.cmd === 'fcall')).toHaveLength(1);
        expect(mine.some((x) => x.cmd === 'ping')).toBe(true);
      } finally {
        await store.close();
      }
      // The lean connection alone: replies of each type, over TLS, pipelined across reads.
      const c = new HotConnection({ host: '127.0.0.1', port: tlsServer.port, tls: true, database: 0, connectTimeoutMs: 2000, writes: 'task', maxQueued: 100_000 });
      expect(await c.start()).toBe(true);
      try {
        const big = 'z'.repeat(100_000);
        const replies = await Promise.all([c.send(['PING']), c.send(['ECHO', big]), c.send(['ECHO', 'é'], true), c.send(['EVAL', "return {1, 'a', {false, 'b'}}", '0'])]);
        expect(replies).toEqual(['PONG', big, Buffer.from('é'), [1, 'a', [null, 'b']]]);
        expect(await c.send(['FCALL', 'tessera_no_such_function', '0']).catch((e: unknown) => e)).toBeInstanceOf(SimpleError);
      } finally {
        await c.close();
      }
    } finally {
      auth = [];
      setDefaultCACertificates(defaults);
      await tlsServer.stop();
      files.remove();
    }
  });
});
