// Runs the bank simulator as a separate process (`node src/cli.ts bank-simulator --port 0
// --test-control`), as a bank would be: Tessera reaches it over a real socket. Optionally over
// TLS with a client-certificate check (a test CA made by `makeTestPki`).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CLI, PROJECT_ROOT } from './tessera-process.ts';

export interface SimulatorProcess {
  url: string;
  child: ChildProcess;
  /** Shapes the simulator's behaviour (see src/bank-simulator/simulator.ts). */
  behave(b: { delayMs?: number; pendingReads?: number; failStatus?: number; omitScaRedirect?: boolean }): Promise<void>;
  /** The XS2A requests it received. */
  requests(): Promise<Array<{ method: string; path: string; headers: Record<string, string>; clientCertificate: boolean }>>;
  /** The user at the bank: approves or denies at the SCA page; answers where the bank sends the browser. */
  decide(scaRedirect: string, decision: 'approve' | 'deny'): Promise<{ status: number; location: string | null }>;
  stop(): Promise<void>;
}

export interface SimulatorTls {
  cert: string;
  key: string;
  clientCa?: string;
  /** The CA that signed `cert`, for callers (fetch) that must trust it. */
  ca: string;
}

export async function startSimulator(tls?: SimulatorTls): Promise<SimulatorProcess> {
  const args = [CLI, 'bank-simulator', '--port', '0', '--test-control'];
  let dir: string | null = null;
  if (tls) {
    dir = mkdtempSync(join(tmpdir(), 'tessera-sim-'));
    writeFileSync(join(dir, 'cert.pem'), tls.cert);
    writeFileSync(join(dir, 'key.pem'), tls.key);
    args.push('--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem'));
    if (tls.clientCa) {
      writeFileSync(join(dir, 'client-ca.pem'), tls.clientCa);
      args.push('--client-ca', join(dir, 'client-ca.pem'));
    }
  }
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the simulator did not start: ${out}`)), 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => reject(new Error(`the simulator exited with ${code}: ${out}`)));
  });
  /** One HTTP call to the simulator (trusting the test CA when it speaks TLS). */
  const call = async (method: string, target: string, body?: string, contentType = 'application/json') => {
    const request = tls ? httpsRequest : httpRequest;
    return new Promise<{ status: number; location: string | null; text: string }>((resolve, reject) => {
      const req = request(target, { method, ...(tls ? { ca: tls.ca } : {}), headers: { 'content-type': contentType } }, (res: IncomingMessage) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, location: typeof res.headers.location === 'string' ? res.headers.location : null, text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  };
  const control = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await call(method, `${url}${path}`, body === undefined ? undefined : JSON.stringify(body));
    return r.text === '' ? null : (JSON.parse(r.text) as unknown);
  };
  return {
    url,
    child,
    async behave(b) {
      await control('POST', '/__sim/behaviour', b);
    },
    async requests() {
      return (await control('GET', '/__sim/requests')) as Awaited<ReturnType<SimulatorProcess['requests']>>;
    },
    async decide(scaRedirect, decision) {
      const r = await call('POST', `${scaRedirect}/${decision}`, '', 'application/x-www-form-urlencoded');
      return { status: r.status, location: r.location };
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestPki {
  /** The test CA (PEM): signs the bank's server certificate and Tessera's client certificate. */
  ca: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
  /** A client certificate from another CA (refused by the bank). */
  stranger: { cert: string; key: string };
}

/** A throw-away CA and certificates, made with openssl in a temporary folder. */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-pki-'));
  const ssl = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  try {
    const ca = (name: string) => {
      ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`);
    };
    const leaf = (name: string, signer: string, ext: string) => {
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
      writeFileSync(join(dir, `${name}.ext`), ext);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
    };
    ca('test-ca');
    ca('other-ca');
    leaf('bank', 'test-ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    leaf('tpp', 'test-ca', 'extendedKeyUsage=clientAuth\n');
    leaf('stranger', 'other-ca', 'extendedKeyUsage=clientAuth\n');
    return {
      ca: read('test-ca.pem'),
      server: { cert: read('bank.pem'), key: read('bank.key') },
      client: { cert: read('tpp.pem'), key: read('tpp.key') },
      stranger: { cert: read('stranger.pem'), key: read('stranger.key') },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
