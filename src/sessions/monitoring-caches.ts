// The two per-process collections of monitoring (src/sessions/monitoring.ts), each bounded with
// makeRoom (src/domain/bounded-map.ts): once full, the oldest sixteenth of the bound goes in one
// pass, not the oldest entry at every insertion — on a V8 Map each of those one-at-a-time evictions
// walks every slot deleted before it (docs/performance.md "Monitoring's bounds").

import { makeRoom } from '../domain/bounded-map.ts';

/**
 * Requests counted per session and per window, for the request_rate rule. At most `max` sessions
 * are counted at once. A session's entry is made again when its window changes, so the map's order
 * is the order in which the sessions' current windows began; when it is full the sessions whose
 * window began longest ago are forgotten first, max / 16 of them at once (at least one). An entry
 * whose window is over holds nothing the next request would use (that request starts a new count);
 * a forgotten session whose window is still running counts again from its next request, as if its
 * window had begun then — so the rule may trip later for it, never earlier. That happens only when
 * more than 15/16 of `max` sessions have made a request in the same window.
 */
export class RequestCounts {
  readonly #max: number;
  readonly #counts = new Map<string, { window: number; count: number }>();

  constructor(max: number) {
    this.#max = max;
  }

  /** Counts one request of `handle` in `window`; returns its count in that window, this one included. */
  add(handle: string, window: number): number {
    let c = this.#counts.get(handle);
    if (c === undefined || c.window !== window) {
      if (c === undefined) makeRoom(this.#counts, this.#max);
      else this.#counts.delete(handle); // to the end: the order is that of the windows' starts
      c = { window, count: 0 };
      this.#counts.set(handle, c);
    }
    return ++c.count;
  }

  /** How many sessions are counted (the bound's test). */
  get size(): number {
    return this.#counts.size;
  }
}

/**
 * Whether a tenant exists, as the audit pipeline asks it for every event: a tenant found is
 * remembered for as long as it stays in the cache, one not found for `negativeMs`. At most `max`
 * tenants are remembered; when full, the oldest remembered go first (max / 16 at once), and are
 * asked of the store again when next needed.
 */
export class TenantPresence {
  readonly #max: number;
  readonly #negativeMs: number;
  readonly #now: () => number;
  readonly #lookup: (id: string) => Promise<boolean>;
  readonly #tenants = new Map<string, { exists: boolean; until: number }>();

  constructor(max: number, negativeMs: number, now: () => number, lookup: (id: string) => Promise<boolean>) {
    this.#max = max;
    this.#negativeMs = negativeMs;
    this.#now = now;
    this.#lookup = lookup;
  }

  /** The answer from the cache alone (undefined: `exists` would ask the store). */
  knownNow(id: string): boolean | undefined {
    const hit = this.#tenants.get(id);
    return hit && (hit.exists || hit.until > this.#now()) ? hit.exists : undefined;
  }

  async exists(id: string): Promise<boolean> {
    const now = this.#now();
    const hit = this.#tenants.get(id);
    if (hit && (hit.exists || hit.until > now)) return hit.exists;
    const exists = await this.#lookup(id);
    if (!this.#tenants.has(id)) makeRoom(this.#tenants, this.#max);
    this.#tenants.set(id, { exists, until: now + this.#negativeMs });
    return exists;
  }

  /** How many tenants are remembered (the bound's test). */
  get size(): number {
    return this.#tenants.size;
  }
}
