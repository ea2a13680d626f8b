// The Node (V8) flags `tessera start` runs with, beyond what its command line gave.
//
// One: the young generation's semi-space is kept at TESSERA_SEMI_SPACE_MB (16) at least
// (`--min-semi-space-size`). V8 grows the young generation under load and shrinks it again when
// the process idles; a server that idled for a while then meets its load with a young
// generation a fraction of that size, collected several times as often per request — and
// every collection holds every request in flight (docs/performance.md, "The check's p99 tail").
// The flag keeps the size the load grows it to anyway, at the cost of that memory while idle.
// A flag of this kind cannot be changed once the process runs, and NODE_OPTIONS does not accept
// it, so `tessera start` replaces itself (same process id, `process.execve`) with the same
// command plus the flag, before it opens anything. Not done where the operator chose the young
// generation's size (a semi-space flag on the command line or in NODE_OPTIONS), with
// TESSERA_SEMI_SPACE_MB=0, where `process.execve` is missing (Node before 22.15) or refuses the
// platform (Windows and IBM i, where it exists but throws ERR_FEATURE_UNAVAILABLE_ON_PLATFORM).
//
// When the replacement cannot happen the server starts without the flag, after one warn line
// (the error's code only: Node's messages for a bad argument quote the environment). A Node
// that aborts the process when execve(2) itself fails (Node 24 does: "process.execve failed
// with error code …", SIGABRT) would end the start there, so the executable is first checked
// the way execve(2) checks it (access X_OK: missing, no permission, a noexec mount). What that
// cannot foresee — a seccomp filter that forbids execve, E2BIG — still aborts such a Node;
// TESSERA_SEMI_SPACE_MB=0 or the operator's own flag avoids the replacement altogether.
//
// The replaced image starts over: a NODE_OPTIONS `--require`/`--import` preload runs again in
// it (the environment is passed on) and `--inspect-brk` stops twice; operators who preload an
// agent that must not start twice set TESSERA_SEMI_SPACE_MB=0 or give the flag themselves.
//
// Nothing more on one core: with the server pinned to one core (os.availableParallelism() 1),
// --single-threaded-gc, --single-threaded, --v8-pool-size=1, --no-concurrent-marking,
// --no-parallel-scavenge and semi-spaces of 8, 32 and 64 MB were measured against this default
// and none lowered the whole process's CPU per rotation or per check by more than the spread
// between processes (docs/performance.md, "One core").

import { accessSync, constants } from 'node:fs';

/** A flag that sizes the young generation, spelt with dashes or underscores. */
const SEMI_SPACE_FLAG = /^--(?:min|max)[-_]semi[-_]space[-_]size(?:=|$)/;

/**
 * The flags to add to a `tessera start` that runs with `execArgv` (its own Node flags) and
 * `nodeOptions` (NODE_OPTIONS): none when `semiSpaceMb` is 0 or the young generation was sized
 * by the operator already.
 */
export function startFlags(semiSpaceMb: number, execArgv: readonly string[], nodeOptions = ''): string[] {
  if (semiSpaceMb === 0) return [];
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  if (given.some((a) => SEMI_SPACE_FLAG.test(a))) return [];
  return [`--min-semi-space-size=${semiSpaceMb}`];
}

/** Platforms where `process.execve` exists but throws ERR_FEATURE_UNAVAILABLE_ON_PLATFORM. */
const NO_EXECVE_PLATFORMS: ReadonlySet<string> = new Set(['win32', 'os400']);

/** What `execWithStartFlags` takes from its process (the real one by default; tests give their own). */
export interface StartProcess {
  platform: string;
  execPath: string;
  execArgv: readonly string[];
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  /** `process.execve`; undefined where Node has none. Returns only by throwing. */
  execve: ((file: string, args: string[], env: NodeJS.ProcessEnv) => void) | undefined;
  /** Throws (with a `code`) when this process may not execute `path`. */
  checkExecutable: (path: string) => void;
  /** One warn log line; `fields` never carry a secret or an environment value. */
  warn: (fields: Record<string, string>, msg: string) => void;
}

/**
 * How a start went on without being replaced: no flag to add, a platform without execve, or
 * the replacement refused (warned about).
 */
export type StartFlagsOutcome = 'no-flags' | 'unavailable' | 'failed';

function realProcess(): Omit<StartProcess, 'warn'> {
  return {
    platform: process.platform,
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    env: process.env,
    execve: typeof process.execve === 'function' ? process.execve.bind(process) : undefined,
    checkExecutable: (path) => accessSync(path, constants.X_OK),
  };
}

/** The error's code (`EACCES`, `ERR_FEATURE_UNAVAILABLE_ON_PLATFORM`), never its message. */
function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'unknown';
}

/**
 * Replaces this process with the same command plus `startFlags` when there are any (never
 * returns then); otherwise returns how the start goes on. Called first thing by `tessera
 * start`, after its configuration was read and before anything is opened.
 */
export function execWithStartFlags(semiSpaceMb: number, proc: Partial<StartProcess> & Pick<StartProcess, 'warn'>): StartFlagsOutcome {
  const p: StartProcess = { ...realProcess(), ...proc };
  const flags = startFlags(semiSpaceMb, p.execArgv, p.env.NODE_OPTIONS);
  if (flags.length === 0) return 'no-flags';
  if (p.execve === undefined || NO_EXECVE_PLATFORMS.has(p.platform)) return 'unavailable';
  const refused = (err: unknown): StartFlagsOutcome => {
    p.warn({ flag: flags.join(' '), code: codeOf(err) }, 'starting without the young generation flag: this process could not replace itself (set TESSERA_SEMI_SPACE_MB=0 to skip the attempt, or pass the flag to node)');
    return 'failed';
  };
  try {
    p.checkExecutable(p.execPath);
  } catch (err) {
    return refused(err);
  }
  try {
    p.execve(p.execPath, [p.execPath, ...flags, ...p.execArgv, ...p.argv.slice(1)], p.env);
  } catch (err) {
    return refused(err);
  }
  // A execve that returns did not replace the process: carry on as it is.
  return refused(undefined);
}
