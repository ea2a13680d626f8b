// `tessera start` runs with the young generation's size kept (src/config/node-flags.ts): it
// replaces itself, same process id, with its own command plus `--min-semi-space-size`, unless
// TESSERA_SEMI_SPACE_MB=0 or the operator sized the young generation. Read from the process's
// own command line in /proc (Linux).

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../support/tessera-process.ts';
import { isAddrInUse, startOnFreePort } from '../support/ports.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * Starts `node <nodeArgs> src/cli.ts start` on SQLite, waits until ready; its command line then, and how it exited on SIGTERM.
 * A start that lost its port before binding (EADDRINUSE) runs again on another (test/support/ports.ts).
 */
async function startAndRead(nodeArgs: string[], env: Record<string, string>): Promise<{ cmdline: string[]; exit: number | null }> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-flags-'));
  dirs.push(dir);
  return startOnFreePort((port) => startOnPort(port, dir, nodeArgs, env));
}

async function startOnPort(port: number, dir: string, nodeArgs: string[], env: Record<string, string>): Promise<{ cmdline: string[]; exit: number | null }> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'start'], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', TESSERA_PORT: String(port), TESSERA_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) {
        await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
        const e = new Error(`tessera exited with ${child.exitCode}: ${err}`);
        throw isAddrInUse(err) ? Object.assign(e, { code: 'EADDRINUSE' }) : e;
      }
      const ok = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`tessera did not become ready: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The process answering is the one spawned (execve keeps the id): its command line now.
    const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    child.kill('SIGTERM');
    return { cmdline, exit: await exited };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

describe.skipIf(!existsSync('/proc/self/cmdline'))('tessera start: the young generation (TESSERA_SEMI_SPACE_MB)', () => {
  it('runs with --min-semi-space-size=16 by default, in the same process, which still stops on SIGTERM', async () => {
    const { cmdline, exit } = await startAndRead([], {});
    expect(cmdline.filter((a) => a.includes('semi-space'))).toEqual(['--min-semi-space-size=16']);
    // The flag comes before the script, the command after it is unchanged.
    expect(cmdline.slice(cmdline.indexOf('--min-semi-space-size=16') + 1)).toEqual([CLI, 'start']);
    expect(exit).toBe(0);
  }, 90_000);

  it('takes the size from TESSERA_SEMI_SPACE_MB, and adds nothing with 0', async () => {
    expect((await startAndRead([], { TESSERA_SEMI_SPACE_MB: '24' })).cmdline.filter((a) => a.includes('semi-space'))).toEqual(['--min-semi-space-size=24']);
    expect((await startAndRead([], { TESSERA_SEMI_SPACE_MB: '0' })).cmdline.filter((a) => a.includes('semi-space'))).toEqual([]);
  }, 120_000);

  it("keeps the operator's own flags and adds none where the operator sized the young generation", async () => {
    const { cmdline } = await startAndRead(['--max-semi-space-size=8', '--stack-trace-limit=20'], {});
    expect(cmdline.filter((a) => a.startsWith('--'))).toEqual(['--max-semi-space-size=8', '--stack-trace-limit=20']);
    const other = await startAndRead(['--stack-trace-limit=20'], {});
    expect(other.cmdline.filter((a) => a.startsWith('--'))).toEqual(['--min-semi-space-size=16', '--stack-trace-limit=20']);
  }, 120_000);
});
