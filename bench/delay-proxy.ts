// A TCP proxy that adds a fixed one-way delay in each direction: the stand-in for a store on
// another host (bench/run.ts puts it between the servers and Redis). Sub-millisecond delays
// need more than setTimeout's 1 ms resolution: chunks wait in a FIFO per direction (the delay is
// fixed, so FIFO order is due order) and a loop sleeps with setTimeout while the next chunk is
// more than ~1.5 ms away and spins on setImmediate for the rest.
// argv: <listenPort> <targetHost> <targetPort> <delayMs>. Prints "listening <port>".

import { createConnection, createServer, type Socket } from 'node:net';

const [listenPort, targetHost, targetPort, delayArg] = process.argv.slice(2);
const delay = Number(delayArg);

interface Pending { due: number; to: Socket; chunk: Buffer | null }
const queue: Pending[] = [];
let head = 0;
let scheduled = false;

function pump(): void {
  scheduled = false;
  const now = performance.now();
  while (head < queue.length && (queue[head] as Pending).due <= now) {
    const p = queue[head++] as Pending;
    if (p.to.destroyed) continue;
    if (p.chunk === null) p.to.end();
    else p.to.write(p.chunk);
  }
  if (head > 4096 && head * 2 > queue.length) {
    queue.splice(0, head);
    head = 0;
  }
  if (head < queue.length) schedule((queue[head] as Pending).due - now);
}

function schedule(waitMs: number): void {
  if (scheduled) return;
  scheduled = true;
  if (waitMs > 1.5) setTimeout(pump, Math.floor(waitMs - 1));
  else setImmediate(pump);
}

function later(to: Socket, chunk: Buffer | null): void {
  queue.push({ due: performance.now() + delay, to, chunk });
  schedule(delay);
}

const server = createServer((client) => {
  client.setNoDelay(true);
  const upstream = createConnection({ host: targetHost, port: Number(targetPort) });
  upstream.setNoDelay(true);
  client.on('data', (c) => later(upstream, c));
  upstream.on('data', (c) => later(client, c));
  client.on('end', () => later(upstream, null));
  upstream.on('end', () => later(client, null));
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
server.listen(Number(listenPort), '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(`listening ${typeof a === 'object' && a ? a.port : listenPort}\n`);
});
process.on('SIGTERM', () => process.exit(0));
