// sweepExpired of the Redis sessions adapter: the due index (due-index.ts) names the sessions to
// look at; the slot script SWEEP (scripts.ts) expires those that are due (once, whichever process
// gets there first) and purges those past their retention, and their global entries (routes,
// tenant listing) go with them here.

import type { Session } from '../../domain/session.ts';
import { tagOfHandle } from '../../domain/secrets.ts';
import { mustSession } from './codec.ts';
import type { RedisContext } from './context.ts';
import type { DueChange } from './due-index.ts';
import { SWEEP } from './scripts.ts';
import { PAGE, type SessionIndex } from './session-index.ts';

export async function sweepExpired(ctx: RedisContext, index: SessionIndex, now: number, max: number): Promise<Session[]> {
  const out: Session[] = [];
  // Bounded: every round removes or re-scores (above `now`) each handle it took. Purges do not
  // count against `max` (they report nothing), but every round takes at most a page.
  for (let round = 0; out.length < max && round < 100; round++) {
    const due = await index.due.take(now, Math.min(PAGE, max - out.length));
    if (due.length === 0) break;
    const byTag = new Map<string, string[]>();
    const changes: DueChange[] = [];
    for (const handle of due) {
      const tag = tagOfHandle(handle);
      if (tag === null) changes.push({ op: 'remove', handle });
      else byTag.set(tag, [...(byTag.get(tag) ?? []), handle]);
    }
    const replies = await Promise.all(
      [...byTag].map(async ([tag, handles]) => ({ handles, reply: (await ctx.runSlot(SWEEP, tag, now, [String(ctx.retentionMs), ...handles])) as unknown[][] })),
    );
    const routes: string[] = [];
    const listings: Array<{ tenantId: string; handle: string }> = [];
    for (const { handles, reply } of replies) {
      handles.forEach((handle, i) => {
        const r = reply[i] ?? ['gone'];
        switch (r[0]) {
          case 'expired':
            out.push(mustSession(r[1]));
            changes.push({ op: 'rescore', handle, at: Number(r[2]) });
            break;
          case 'notdue':
          case 'later':
            changes.push({ op: 'rescore', handle, at: Number(r[1]) });
            break;
          case 'purged':
            listings.push({ tenantId: String(r[1]), handle });
            routes.push(...(r.slice(2) as string[]));
            changes.push({ op: 'remove', handle });
            break;
          default:
            changes.push({ op: 'remove', handle });
        }
      });
    }
    // Routes and listing entries first: if this process dies now, the due entry is still there
    // and the next sweep finds the record gone and removes it.
    await Promise.all([index.dropRoutes(routes), index.dropFromListings(listings)]);
    await index.due.settle(changes);
  }
  return out;
}
