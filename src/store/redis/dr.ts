// `tessera dr promote`: the switch-over to a second site whose Redis is a replica of the first
// (docs/reliability.md, "A second site"). The whole Redis is switched, not a key prefix.
//
// With the old primary reachable (a planned switch-over, or a partial disaster):
//   1. CLIENT PAUSE WRITE on the old primary: clients' writes wait, replication goes on;
//   2. wait until the replica has everything the primary has (its offset reaches the primary's);
//   3. REPLICAOF NO ONE on the replica: it is the primary now;
//   4. REPLICAOF <new primary> on the old one (fencing: it becomes a read-only replica of the new
//      primary, so a Tessera still pointed at it answers writes 503 and hears the new site's
//      feed of ends), then CLIENT UNPAUSE.
// With the old primary unreachable only `force` promotes, and says how far behind the replica
// may be: writes acknowledged there but not replicated are lost — except those that waited for
// the replica (TESSERA_REDIS_WAIT_REPLICAS=1 on the first site: ends and rotations).

import { StoreUnavailable } from '../../domain/errors.ts';
import { openConnection, type RedisConnection } from './connection.ts';
import { InvalidRedisUrl, parseRedisUrl, redactUrl, type RedisTarget } from './url.ts';

export interface PromoteOptions {
  /** The replica at the second site (redis:// or rediss://). */
  to: string;
  /** The old primary, to fence and to catch up with; may be unreachable with `force`. */
  from?: string;
  force: boolean;
  /** How long writes may be paused while the replica catches up. */
  timeoutMs: number;
  log: (line: string) => void;
}

export class PromoteRefused extends Error {}

function standalone(url: string, role: string): Extract<RedisTarget, { mode: 'standalone' }> {
  let t: RedisTarget;
  try {
    t = parseRedisUrl(url);
  } catch (err) {
    if (err instanceof InvalidRedisUrl) throw new PromoteRefused(`${role}: ${err.message}`);
    throw err;
  }
  if (t.mode !== 'standalone') throw new PromoteRefused(`${role} must be a redis:// or rediss:// URL (Sentinel promotes replicas by itself)`);
  return t;
}

function field(info: string, name: string): string | null {
  return new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? null;
}

const replication = async (c: RedisConnection) => String(await c.send(undefined, ['INFO', 'replication']));

export async function promoteReplica(opts: PromoteOptions): Promise<void> {
  const toTarget = standalone(opts.to, '--to');
  const conn = { connectTimeoutMs: 2000, commandTimeoutMs: Math.max(2000, opts.timeoutMs + 1000) };
  const to = await openConnection(toTarget, conn).catch((err: unknown) => {
    throw new PromoteRefused(`the replica ${redactUrl(opts.to)} does not answer: ${err instanceof Error ? err.message : String(err)}`);
  });
  let from: RedisConnection | null = null;
  try {
    const toInfo = await replication(to);
    if (field(toInfo, 'role') === 'master') {
      opts.log(`${redactUrl(opts.to)} is a primary already: nothing to promote`);
      return;
    }
    if (opts.from !== undefined) {
      from = await openConnection(standalone(opts.from, '--from'), conn).catch(() => null);
    }
    if (from === null) {
      if (!opts.force) {
        throw new PromoteRefused(
          opts.from === undefined
            ? 'without --from the old primary can be neither caught up with nor fenced; stop it (or cut it off), then run again with --force'
            : `the old primary ${redactUrl(opts.from)} does not answer; make sure it is stopped or cut off for good, then run again with --force`,
        );
      }
      opts.log(
        `old primary unreachable; the replica's link: ${field(toInfo, 'master_link_status') ?? '?'}, last contact ${field(toInfo, 'master_last_io_seconds_ago') ?? '?'} s ago, offset ${field(toInfo, 'slave_repl_offset') ?? '?'} — writes the old primary acknowledged after that are lost`,
      );
      await to.send(undefined, ['REPLICAOF', 'NO', 'ONE']);
      opts.log(`promoted ${redactUrl(opts.to)}: it is the primary now`);
      return;
    }

    // 1. Stop writes on the old primary (replication goes on).
    await from.send(undefined, ['CLIENT', 'PAUSE', String(opts.timeoutMs), 'WRITE']);
    let unpaused = false;
    const unpause = async () => {
      if (unpaused) return;
      unpaused = true;
      await from?.send(undefined, ['CLIENT', 'UNPAUSE']).catch(() => undefined);
    };
    try {
      // 2. Wait until the replica has all of it.
      const target = Number(field(await replication(from), 'master_repl_offset') ?? 'NaN');
      const deadline = Date.now() + opts.timeoutMs;
      for (;;) {
        const offset = Number(field(await replication(to), 'slave_repl_offset') ?? '-1');
        if (offset >= target) {
          opts.log(`replica caught up (offset ${offset})`);
          break;
        }
        if (Date.now() > deadline) {
          if (!opts.force) throw new PromoteRefused(`the replica did not catch up within ${opts.timeoutMs} ms (offset ${offset} of ${target}); nothing was changed`);
          opts.log(`replica still behind (offset ${offset} of ${target}); promoting anyway (--force)`);
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      // 3. Promote.
      await to.send(undefined, ['REPLICAOF', 'NO', 'ONE']);
      opts.log(`promoted ${redactUrl(opts.to)}: it is the primary now`);
      // 4. Fence the old primary: a read-only replica of the new one.
      await from.send(undefined, ['REPLICAOF', toTarget.host.host, String(toTarget.host.port)]);
      opts.log(`fenced ${redactUrl(opts.from as string)}: it is a read-only replica of ${toTarget.host.host}:${toTarget.host.port} now`);
    } finally {
      await unpause();
    }
  } catch (err) {
    if (err instanceof StoreUnavailable) throw new PromoteRefused(err.message);
    throw err;
  } finally {
    await from?.close();
    await to.close();
  }
}
