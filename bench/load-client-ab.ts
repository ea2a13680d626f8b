// The load generators' own CPU per request, client against client (docs/performance.md, "The
// rotation and SSO load generators on raw sockets"): autocannon (what loads hello world and the
// check), bench/raw-http.ts (the rotation and SSO generators) and node:http's request() with a
// keep-alive Agent (what those used before), each in a process of its own pinned to core 1, the
// same number of POSTs over 50 connections against one stub server on core 0 that answers every
// POST with a rotation-sized JSON body and Tessera's response headers. Rounds alternate the clients. Each client process reports
// its process.cpuUsage() over the load alone (its start-up and imports left out).
//   node bench/load-client-ab.ts            AB_ROUNDS (default 3), AB_REQUESTS (default 20,000)
//   AB_CLIENTS=raw,ref AB_REF=<checkout>    only those clients; `ref` is <checkout>'s bench/raw-http.ts
//                                            driven as its generators drove it (an await per request)
// `raw` drives this checkout's client as load-sso.ts does: requests made beforehand, `sendRequest`
// with a callback, no promise per request. `raw-send` as load-refresh.ts does: each request made
// when it is sent (`send`: its head and body joined per request), a callback, no promise.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { RawConnection } from './raw-http.ts';
import { freePort, pinned, stopChild } from './server-process.ts';

const SELF = fileURLToPath(import.meta.url);
const CONNECTIONS = 50;
const REPLY = JSON.stringify({ accessToken: 'a'.repeat(150), refreshToken: 'r'.repeat(43), expiresIn: 900, tokenType: 'Bearer' });
const BODY = JSON.stringify({ refreshToken: 'r'.repeat(43) });
type Client = 'autocannon' | 'raw' | 'raw-send' | 'node:http' | 'ref';

async function client(kind: Client, url: string, amount: number): Promise<void> {
  let done = 0;
  let bad = 0;
  const Ref = kind === 'ref' ? ((await import(`${process.env.AB_REF}/bench/raw-http.ts`)) as { RawConnection: typeof RawConnection }).RawConnection : RawConnection;
  const cpu0 = process.cpuUsage();
  if (kind === 'autocannon') {
    const { default: autocannon } = await import('autocannon');
    const cpuA = process.cpuUsage();
    const r = await autocannon({ url, connections: CONNECTIONS, amount, method: 'POST', body: BODY, headers: { 'content-type': 'application/json' } });
    done = r.requests.total;
    bad = r.non2xx + r.errors;
    const cpu = process.cpuUsage(cpuA);
    return print(kind, done, bad, cpu);
  }
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const u = new URL(url);
  const viaHttp = () =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) } }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('error', reject);
        res.on('end', () => resolve(data.length > 0 ? (res.statusCode ?? 0) : 0));
      });
      req.on('error', reject);
      req.end(BODY);
    });
  if (kind === 'raw' || kind === 'raw-send') {
    const request = RawConnection.to(url).requestBytes(BODY);
    await Promise.all(
      Array.from(
        { length: CONNECTIONS },
        () =>
          new Promise<void>((finished) => {
            const conn = RawConnection.to(url);
            const answered = (err: Error | null, status: number): void => {
              if (err === null && status === 200) done++;
              else bad++;
              step();
            };
            const step = (): void => {
              if (done + bad >= amount) {
                conn.destroy();
                return finished();
              }
              if (kind === 'raw') conn.sendRequest(request, answered);
              else conn.send(BODY, answered);
            };
            step();
          }),
      ),
    );
    return print(kind, done, bad, process.cpuUsage(cpu0));
  }
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      const conn = Ref.to(url);
      while (done + bad < amount) {
        try {
          const status = kind === 'ref' ? (await conn.post(BODY)).status : await viaHttp();
          if (status === 200) done++;
          else bad++;
        } catch {
          bad++;
        }
      }
      conn.destroy();
    }),
  );
  agent.destroy();
  print(kind, done, bad, process.cpuUsage(cpu0));
}

function print(kind: Client, done: number, bad: number, cpu: NodeJS.CpuUsage): void {
  process.stdout.write(JSON.stringify({ kind, done, bad, usPerRequest: (cpu.user + cpu.system) / Math.max(1, done + bad), userUs: cpu.user / Math.max(1, done + bad), sysUs: cpu.system / Math.max(1, done + bad) }) + '\n');
}

if (process.argv[2] === 'server') {
  const server = createServer((req, res) => {
    req.resume();
    // Tessera's headers: a request id and a correlation id of its own in every response (so no two heads are alike).
    req.on('end', () => {
      const id = randomBytes(16).toString('base64url');
      res
        .writeHead(200, { 'x-request-id': id, 'x-correlation-id': id, 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(REPLY) })
        .end(REPLY);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(Number(process.argv[3]), '127.0.0.1', () => process.stdout.write('listening\n'));
} else if (process.argv[2] === 'client') {
  await client(process.argv[3] as Client, process.argv[4] as string, Number(process.argv[5]));
} else {
  const rounds = Number(process.env.AB_ROUNDS ?? 3);
  const amount = Number(process.env.AB_REQUESTS ?? 20_000);
  const port = await freePort();
  const [cmd, args] = pinned(0, [process.execPath, SELF, 'server', String(port)]);
  const server = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((r) => server.stdout.once('data', () => r()));
  const url = `http://127.0.0.1:${port}/api/v1/auth/token/refresh`;
  const kinds = (process.env.AB_CLIENTS ?? 'autocannon,raw,node:http').split(',') as Client[];
  const all = new Map<Client, number[]>(kinds.map((k) => [k, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      // Each round in another order, so that no client always follows the same one.
      for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
        const [c, a] = pinned(1, [process.execPath, SELF, 'client', kind, url, String(amount)]);
        const r = spawnSync(c, a, { encoding: 'utf8', timeout: 300_000 });
        const f = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { done: number; bad: number; usPerRequest: number };
        all.get(kind)!.push(f.usPerRequest);
        console.log(`round ${round + 1} ${kind}: ${f.usPerRequest.toFixed(1)} µs/request (${f.done} 200s, ${f.bad} other/errors)${r.stderr.trim() ? ` stderr: ${r.stderr.trim().slice(0, 200)}` : ''}`);
      }
    }
  } finally {
    await stopChild(server);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  for (const [k, xs] of all) console.log(`${k}: median ${median(xs).toFixed(1)} µs/request of ${xs.map((x) => x.toFixed(1)).join(' / ')}`);
}
