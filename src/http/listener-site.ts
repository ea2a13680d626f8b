// V8's allocation-site pretenuring and the array Node makes for an event's second listener
// (docs/performance.md, "The POST routes' HTTP shell").
//
// Node's EventEmitter keeps one listener as a function and turns the entry into an array literal
// `[existing, listener]` (events.js `_addListener`) when an event gets its second one. Every HTTP
// response gets two `finish` listeners — Node's own and Fastify's, which runs the step once the
// answer is out (app.ts: the metrics and the request line) — so every request makes one such
// array. V8 decides per allocation site
// (here: that one literal, for the whole process) whether its objects are long-lived: when at
// least 100 of them were made since the last scavenge and 85 % or more are still alive at it, the
// site is "tenured" for good and its arrays are made in the old generation from then on. A
// start-up or a burst of first requests can tip it (emitters that keep their two listeners, all
// alive at that scavenge). After that, each response's listener array is old and, once the
// response is done, dead but uncollected until the next mark-compact — and it still points at
// the response's listeners, which point at the request, the response, their headers: every
// scavenge keeps all of them alive and promotes them (about 12 MB per scavenge in the POST
// shell's measurements, scavenges of 28-169 ms, V8's GC threads 4-13 µs per request).
//
// The decision is final either way ("don't tenure" is as permanent as "tenure"), and it is only
// made for a site with 100 surviving objects at a scavenge. So before the server makes anything
// else, this lets V8 see that site with a survival rate of one in five: 5,000 emitters each given
// two listeners, one in five kept until a scavenge has run, which V8 takes as "don't tenure".
// Nothing else is pinned: `--no-allocation-site-pretenuring` turns the judgement off for every
// site, and on the real refresh route and the check it made no difference over eight processes
// each on a quiet machine (docs/performance.md, "Process-to-process spread").

import { EventEmitter } from 'node:events';
import { getHeapSpaceStatistics } from 'node:v8';

/** Emitters given two listeners; a fifth of them kept alive across a scavenge. */
const EMITTERS = 5000;
const KEEP_EVERY = 5;
/** Short-lived objects made, at most, while waiting for the scavenge (about 60 MB). */
const MAX_FILLER = 4_000_000;

/** Once per process: the decision, once made, is final. */
let settled = false;

function newSpaceUsed(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_used_size ?? 0;
}

/** Whether this process has settled the site (tests: `startServer` does it first thing). */
export function listenerArraySiteSettled(): boolean {
  return settled;
}

/**
 * Shows V8 the two-listener array site of `events.js` with a low survival rate across one
 * scavenge, so that it never tenures it. Returns whether a scavenge was seen (the new space's
 * use fell) before the filler ran out. Costs about 20 ms of CPU, once per process (later calls
 * return at once): `startServer` makes it first thing, before the store and the runtime, and
 * `buildApp` for apps built without it (tests, benches).
 */
export function settleListenerArraySite(): boolean {
  if (settled) return true;
  settled = true;
  const noop = (): void => {};
  const kept: EventEmitter[] = [];
  for (let i = 0; i < EMITTERS; i++) {
    const e = new EventEmitter();
    e.on('x', noop);
    e.on('x', noop);
    if (i % KEEP_EVERY === 0) kept.push(e);
  }
  let scavenged = false;
  let last = newSpaceUsed();
  let filler: { i: number }[] = [];
  for (let i = 0; i < MAX_FILLER; i++) {
    filler.push({ i });
    if (filler.length === 1000) filler = [];
    if (i % 20_000 === 0) {
      const used = newSpaceUsed();
      if (used < last) {
        scavenged = true;
        break;
      }
      last = used;
    }
  }
  // The kept emitters were alive at that scavenge; from here on they are garbage.
  kept.length = 0;
  return scavenged;
}
