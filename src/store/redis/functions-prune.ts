// `tessera redis-functions prune`: deletes the Redis Function libraries of other Tessera releases
// (lua.ts). Functions are kept in RDB and AOF like data, so each release's libraries (tens of kB
// each) stay on the server until deleted. Run it once every process is on the new release: a
// process of another release (or another deployment of another release on the same Redis) whose
// library is deleted loads it again on its next call (one FUNCTION LOAD), so it is safe, only
// not useful, while such processes run.

// The store as the server opens it: every module that defines a Function script is loaded, so
// functionLibraries() names all of this release's libraries.
import './redis-store.ts';
import { functionLibraries, TESSERA_LIBRARY } from './lua.ts';
import { openConnection } from './connection.ts';
import { parseRedisUrl } from './url.ts';

export interface PruneReport {
  /** Libraries of this release found (per master, so a name may repeat in a Cluster). */
  kept: string[];
  /** Libraries of other releases deleted (or, with dryRun, that would be). */
  deleted: string[];
}

/** Names in a FUNCTION LIST reply (RESP2: per library a flat array of field names and values). */
function libraryNames(reply: unknown): string[] {
  if (!Array.isArray(reply)) return [];
  const out: string[] = [];
  for (const lib of reply) {
    if (!Array.isArray(lib)) continue;
    const i = lib.indexOf('library_name');
    if (i >= 0 && typeof lib[i + 1] === 'string') out.push(lib[i + 1] as string);
  }
  return out;
}

export async function pruneFunctions(url: string, opts: { dryRun: boolean }): Promise<PruneReport> {
  const current = functionLibraries();
  const conn = await openConnection(parseRedisUrl(url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
  const report: PruneReport = { kept: [], deleted: [] };
  try {
    // Every master: a Cluster's masters each hold their own libraries; replicas follow their master.
    for (const send of await conn.masters()) {
      for (const name of libraryNames(await send(['FUNCTION', 'LIST', 'LIBRARYNAME', 'tessera_*']))) {
        if (!TESSERA_LIBRARY.test(name)) continue;
        if (current.has(name)) {
          report.kept.push(name);
          continue;
        }
        if (!opts.dryRun) {
          try {
            await send(['FUNCTION', 'DELETE', name]);
          } catch (err) {
            // Deleted meanwhile by another prune: gone is what was asked for.
            if (!(err instanceof Error && /library not found/i.test(err.message))) throw err;
          }
        }
        report.deleted.push(name);
      }
    }
  } finally {
    await conn.close();
  }
  return report;
}
