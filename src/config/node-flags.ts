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
// TESSERA_SEMI_SPACE_MB=0, or where `process.execve` does not exist (Windows).

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

/**
 * Replaces this process with the same command plus `startFlags` when there are any (never
 * returns then); otherwise returns. Called first thing by `tessera start`, after its
 * configuration was read and before anything is opened.
 */
export function execWithStartFlags(semiSpaceMb: number): void {
  const flags = startFlags(semiSpaceMb, process.execArgv, process.env.NODE_OPTIONS);
  if (flags.length === 0 || typeof process.execve !== 'function') return;
  process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], process.env);
}
