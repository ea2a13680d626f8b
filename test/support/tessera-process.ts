// Runs Tessera as a real process (`node src/cli.ts start`) on a free port, for tests that need
// several servers, real sockets or the CLI's own behaviour.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { isAddrInUse, startOnFreePort } from './ports.ts';

export { freePort } from './ports.ts';

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface TesseraProcess {
  url: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout (its JSON log lines) so far. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts Tessera on a free port. A caller that must know the port in advance (e.g. for
 * TESSERA_PUBLIC_URL) passes the environment as a function of the port; a process that lost its
 * port to another one (EADDRINUSE) is started again on another port (test/support/ports.ts).
 * An environment that fixes TESSERA_PORT itself gets that port and no retry. `pick` chooses the
 * candidate ports (a test makes the first one collide).
 */
export async function startTessera(
  env: Record<string, string> | ((port: number) => Record<string, string>),
  cwd = PROJECT_ROOT,
  opts: { pick?: () => Promise<number> } = {},
): Promise<TesseraProcess> {
  if (typeof env === 'object' && env.TESSERA_PORT) return startOnPort(Number(env.TESSERA_PORT), env, cwd);
  return startOnFreePort((port) => startOnPort(port, typeof env === 'function' ? env(port) : env, cwd), opts.pick ? { pick: opts.pick } : {});
}

/** Log levels at which the server writes its "tessera listening" line. */
const ANNOUNCING_LEVELS = new Set(['trace', 'debug', 'info']);

async function startOnPort(port: number, env: Record<string, string>, cwd: string): Promise<TesseraProcess> {
  const fullEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TESSERA_PORT: String(port), TESSERA_LOG_LEVEL: 'info', ...env };
  const child = spawn(process.execPath, [CLI, 'start'], { cwd, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  // 'close' comes after the last output ('exit' may come before it).
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  // Where the process says it listens, its /readyz is trusted only after that line: a 200 from
  // whoever else took the port must not pass for this process being ready.
  const announces = ANNOUNCING_LEVELS.has(fullEnv.TESSERA_LOG_LEVEL);
  // Generous: a loaded CI machine can take many seconds to load the TypeScript sources.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) {
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
      // A lost race for the port: the caller may start again elsewhere (startOnFreePort).
      throw Object.assign(new Error(`tessera exited with ${child.exitCode}: ${out}`), isAddrInUse(out) ? { code: 'EADDRINUSE' } : {});
    }
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.status === 200 && (!announces || out.includes('"tessera listening"'))) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`tessera did not become ready: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    child,
    output: () => out,
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      return new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', (code) => {
          clearTimeout(t);
          resolve(code);
        });
        child.kill(signal);
      });
    },
  };
}
