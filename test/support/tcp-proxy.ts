// A TCP proxy in front of a test's own redis-server, to break one client's connections the way a
// network does: refuse new connections (a partition that reconnects cannot cross), or freeze an
// open connection so that it stays up but carries nothing (a half-open socket that no event
// reports).

import { createServer, connect, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Open and past connections, in the order the client opened them. */
  readonly connections: ReadonlyArray<{ client: Socket; upstream: Socket; frozen: boolean }>;
  /** While true, new connections are closed at once. */
  refuseNew(on: boolean): void;
  /** Stops (or resumes) forwarding on connection `i` in both directions, without closing it. */
  freeze(i: number, on: boolean): void;
  /**
   * Forwards everything, on open and later connections, `ms` late (a slow link). What has not
   * crossed when either side closes is lost, as with a host that dies.
   */
  delay(ms: number): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let refusing = false;
  let delayMs = 0;
  const connections: Array<{ client: Socket; upstream: Socket; frozen: boolean; held: Array<[Socket, Buffer]> }> = [];
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    const c = { client, upstream, frozen: false, held: [] as Array<[Socket, Buffer]> };
    connections.push(c);
    const forward = (to: Socket) => (data: Buffer) => {
      if (c.frozen) c.held.push([to, data]);
      else if (delayMs > 0) setTimeout(() => void (!to.destroyed && to.write(data)), delayMs);
      else to.write(data);
    };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port,
    connections,
    refuseNew: (on) => void (refusing = on),
    freeze(i, on) {
      const c = connections[i];
      if (!c) throw new Error(`no connection ${i} (have ${connections.length})`);
      c.frozen = on;
      if (!on) for (const [to, data] of c.held.splice(0)) to.write(data);
    },
    delay: (ms) => void (delayMs = ms),
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) {
          c.client.destroy();
          c.upstream.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
