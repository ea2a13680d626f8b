// test/support/ports.ts: a start that loses its port (EADDRINUSE) is run again on another port,
// a bounded number of times; other failures are not retried; listenLoopback binds before anything
// is configured. Each collision is made deterministic by occupying the picked port before the start.

import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { closeServer, freePort, isAddrInUse, listenLoopback, startOnFreePort } from '../support/ports.ts';

const opened: Server[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
});

/** Listens on 127.0.0.1:port (the start under test, or the other process that takes its port). */
function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      opened.push(s);
      resolve(s);
    });
  });
}

const portOf = (s: Server) => (s.address() as { port: number }).port;

/** A pick that hands out free ports and has another listener take the first `collisions` of them. */
function collidingPick(collisions: number) {
  const picked: number[] = [];
  return {
    picked,
    pick: async () => {
      const port = await freePort();
      picked.push(port);
      if (picked.length <= collisions) await listen(port);
      return port;
    },
  };
}

describe('startOnFreePort', () => {
  it('a start whose port was taken runs again on another port and succeeds', async () => {
    const { picked, pick } = collidingPick(1);
    const tried: number[] = [];
    const server = await startOnFreePort(
      async (port) => {
        tried.push(port);
        return listen(port);
      },
      { pick },
    );
    expect(tried).toEqual(picked);
    expect(tried).toHaveLength(2);
    expect(portOf(server)).toBe(tried[1]);
    expect(tried[1]).not.toBe(tried[0]);
  });

  it('gives up with the EADDRINUSE after the bounded number of attempts', async () => {
    const { picked, pick } = collidingPick(3);
    const failure = await startOnFreePort((port) => listen(port), { pick, attempts: 3 }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(isAddrInUse(failure)).toBe(true);
    expect(picked).toHaveLength(3);
  });

  it('does not retry any other failure', async () => {
    let calls = 0;
    const failure = await startOnFreePort(async () => {
      calls += 1;
      throw new Error('the store is down');
    }).then(
      () => null,
      (err: unknown) => err,
    );
    expect((failure as Error).message).toBe('the store is down');
    expect(calls).toBe(1);
  });

  it('recognises a child process that lost the port by its output', () => {
    expect(isAddrInUse('tessera: listen EADDRINUSE: address already in use 127.0.0.1:35701')).toBe(true);
    expect(isAddrInUse(new Error('wrapped', { cause: Object.assign(new Error('listen'), { code: 'EADDRINUSE' }) }))).toBe(true);
    expect(isAddrInUse('tessera: configuration error: TESSERA_STORE')).toBe(false);
  });
});

describe('listenLoopback', () => {
  it('is listening before any handler is attached, and serves the handler attached after', async () => {
    const { server, port, url } = await listenLoopback();
    try {
      expect(server.listening).toBe(true);
      expect(url).toBe(`http://127.0.0.1:${port}`);
      server.on('request', (_req, res) => res.end(`on ${port}`));
      expect(await (await fetch(url)).text()).toBe(`on ${port}`);
    } finally {
      await closeServer(server);
    }
    expect(server.listening).toBe(false);
  });
});
