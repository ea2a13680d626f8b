// Ports for test servers without races.
//
// A port found free (listen on 0, read it, close) is free only at that moment: until something
// binds it again, any other process — test files run in parallel, and outgoing connections take
// ephemeral ports from the same range — may take it, and the later listen fails with EADDRINUSE.
// So a test server either
//
// - binds first and is configured after: `listenLoopback()` listens on port 0 and hands back the
//   port the kernel chose, with no request handler yet (attach one with `server.on('request', …)`);
// - or, where its port must go into its configuration before it can listen (Tessera's public URL
//   in a Fastify app built from that configuration, a child process), starts through
//   `startOnFreePort(start)`: a lost race (EADDRINUSE) costs a retry on another port, not a failure.
//
// `freePort()` itself has two legitimate uses: a candidate port for `startOnFreePort`, and a port
// that must stay closed (nothing listening: "unreachable store", "closed port" tests), where a
// late taker would only make such a test see a refusal it expects anyway less often.

import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';

/** A port nothing listens on at this moment (see above for the two uses it is fit for). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether an error (or a process's output) says the address was taken. */
export function isAddrInUse(err: unknown): boolean {
  if (typeof err === 'string') return err.includes('EADDRINUSE');
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown };
  if (e.code === 'EADDRINUSE') return true;
  if (typeof e.message === 'string' && e.message.includes('EADDRINUSE')) return true;
  return e.cause !== undefined && e.cause !== err && isAddrInUse(e.cause);
}

export const START_ATTEMPTS = 5;

/**
 * Runs `start(port)` on a port `pick` found free; when it fails with EADDRINUSE (someone took the
 * port between the pick and the listen), runs it again on another port, at most `attempts` times
 * in all. Any other error ends it at once. `start` must release whatever it made before it throws.
 */
export async function startOnFreePort<T>(
  start: (port: number) => Promise<T>,
  opts: { attempts?: number; pick?: () => Promise<number> } = {},
): Promise<T> {
  const attempts = opts.attempts ?? START_ATTEMPTS;
  const pick = opts.pick ?? freePort;
  for (let attempt = 1; ; attempt++) {
    const port = await pick();
    try {
      return await start(port);
    } catch (err) {
      if (!isAddrInUse(err) || attempt >= attempts) throw err;
    }
  }
}

/** Listens on 127.0.0.1 on a port the kernel chooses; requests go to handlers attached later. */
export async function listenLoopback(): Promise<{ server: Server; port: number; url: string }> {
  const server = createHttpServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return { server, port, url: `http://127.0.0.1:${port}` };
}

/** Closes a server from `listenLoopback` (idle keep-alive connections too); closing twice is no error. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
