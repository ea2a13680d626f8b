// Loaded into a Tessera server by bench/revocation-split.ts only (`node --import
// ./bench/revocation-trace.ts src/cli.ts start`), never by the product. It writes one line per
// event to REVOCATION_TRACE_FILE, every time on the shared monotonic clock
// (process.hrtime, CLOCK_MONOTONIC: comparable across the processes of one machine):
//   req <trace> <ns>     an HTTP request carrying `x-bench-trace: <trace>` has been parsed
//   res <trace> <ns>     its response has been written
//   feed <ns> <payload>  a pub/sub message on the session-ends channel was read from the socket
//                        (the JavaScript 'data' event: when this process's event loop got to it)
//   gc <ns> <ms> <kind>  a garbage collection pause began at <ns> and lasted <ms>
//   redis <ns> <bytes>   any other chunk read from a Redis socket while a traced request is open
//                        (the store's answers to that request's commands)
// Nothing in the server is changed: diagnostics channels and one more 'data' listener.

import { appendFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { subscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';

const FILE = process.env.REVOCATION_TRACE_FILE;
const CHANNEL = `${process.env.TESSERA_REDIS_PREFIX ?? ''}ends`;
const now = () => process.hrtime.bigint().toString();
let open = 0;

if (FILE) {
  const write = (line: string) => appendFileSync(FILE, `${line}\n`);
  subscribe('http.server.request.start', (msg) => {
    const { request } = msg as { request: IncomingMessage };
    const trace = request.headers['x-bench-trace'];
    if (typeof trace !== 'string') return;
    open++;
    write(`req ${trace} ${now()}`);
  });
  subscribe('http.server.response.finish', (msg) => {
    const { request } = msg as { request: IncomingMessage };
    const trace = request.headers['x-bench-trace'];
    if (typeof trace !== 'string') return;
    open--;
    write(`res ${trace} ${now()}`);
  });
  new PerformanceObserver((list) => {
    const hrNow = process.hrtime.bigint();
    const perfNow = performance.now();
    for (const e of list.getEntries()) {
      const start = hrNow - BigInt(Math.round((perfNow - e.startTime) * 1e6));
      write(`gc ${start} ${e.duration.toFixed(3)} ${(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? ''}`);
    }
  }).observe({ entryTypes: ['gc'] });
  subscribe('net.client.socket', (msg) => {
    const { socket } = msg as { socket: Socket };
    socket.once('connect', () => {
      if (socket.remotePort !== 6379) return;
      socket.on('data', (chunk: Buffer) => {
        const t = now();
        const text = chunk.toString('latin1');
        if (text.includes(CHANNEL) && text.includes('message')) {
          // Feed probes included (a chunk may hold a probe and an end): the reader matches handles.
          write(`feed ${t} ${text.replace(/\r\n/g, ' ').slice(0, 400)}`);
        } else if (open > 0) {
          write(`redis ${t} ${chunk.length}`);
        }
      });
    });
  });
}
