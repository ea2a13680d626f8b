// Shared by the benchmark scripts that start servers as child processes: a free port and a wait
// until the server answers (or has exited).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Polls `url` every 50 ms until it answers, for at most `attempts` polls. */
export async function waitFor(url: string, child: ChildProcess, attempts = 400): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (child.exitCode !== null) throw new Error(`${url}: server exited ${child.exitCode}`);
    try {
      await fetch(url);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`${url} did not come up`);
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** The fields of /proc/<pid>/stat after the command's name (the first is the state), or null. */
function statFields(pid: number | 'self' | undefined): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far, or NaN where /proc is missing. */
export function cpuSeconds(pid: number | undefined): number {
  const fields = statFields(pid);
  return fields === null ? NaN : (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Seconds a process's main thread has spent runnable but waiting for a core so far
 * (/proc/<pid>/task/<pid>/schedstat's second field), or NaN where it is missing.
 */
export function waitSeconds(pid: number | undefined): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return NaN;
  }
}

/**
 * CPU seconds (user + system) of this process's children that have exited and been waited for
 * (/proc/self/stat's cutime + cstime): a spawnSync'd process is counted once it returns.
 */
export function reapedChildrenCpuSeconds(): number {
  const fields = statFields('self');
  return fields === null ? NaN : (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
}
