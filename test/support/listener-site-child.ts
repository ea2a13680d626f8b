// Run by test/unit/listener-site.test.ts in a fresh Node process (V8's pretenuring decisions are
// per process and final): argv[2] "settle" calls settleListenerArraySite first, "server" starts
// and stops a Tessera server (startServer, SQLite; it settles the site first thing), "none" does
// neither.
// Then a start-up that would tip the events.js two-listener array site to "tenure" — 20,000
// long-lived emitters with two listeners on one event, alive across scavenges — and then
// request-like work: emitters given two "finish" listeners that close over 2 KB each, dropped at
// once. Prints JSON: how far the old generation grew during that work (MB, the largest of its
// samples over the level before it), and whether the settling saw its scavenge ("server": whether
// the server had settled the site).

import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { listenerArraySiteSettled, settleListenerArraySite } from '../../src/http/listener-site.ts';

const oldSpaceMb = () => (getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')?.space_used_size ?? 0) / 1e6;

const mode = process.argv[2];
let settled = mode === 'settle' ? settleListenerArraySite() : null;
if (mode === 'server') {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-listener-site-'));
  const { loadConfig } = await import('../../src/config/config.ts');
  const { createLogger, startServer } = await import('../../src/server.ts');
  const env = {
    TESSERA_STORE: `sqlite:${join(dir, 'x.db')}`,
    TESSERA_PORT: '0',
    TESSERA_HOST: '127.0.0.1',
    COOKIE_SECRET_SIGN_KEY: 'listener-site-cookie-secret-' + 'y'.repeat(32),
    TESSERA_ADMIN_TOKEN: 'listener-site-admin-token-' + 'x'.repeat(32),
  };
  const config = loadConfig(env, dir);
  const server = await startServer(config, { logger: createLogger({ logLevel: 'silent' }, '/dev/null') });
  settled = listenerArraySiteSettled();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}

const keep: unknown[] = [];
for (let i = 0; i < 20_000; i++) {
  const e = new EventEmitter();
  e.on('x', () => {});
  e.on('x', () => {});
  keep.push(e);
}
for (let i = 0; i < 200_000; i++) keep.push({ i });

let sink = 0;
/** One request's worth: an emitter with two "finish" listeners holding ~2 KB, done at once. */
function request(i: number): void {
  // A string, not an array: V8 tracks no allocation site for strings, so the payload itself can
  // never be the object V8 decides to tenure (an array made here was, in some runs: then the
  // old generation grew whatever the listener site's decision).
  const payload = String(i).padStart(2048, '.');
  const e = new EventEmitter();
  e.on('finish', () => void (sink += payload.length));
  e.on('finish', () => void (sink += 1));
  e.emit('finish');
}
// First let the start-up's objects reach the old generation (two scavenges and more), so that
// what grows below is what the requests leave there.
for (let i = 0; i < 40_000; i++) request(i);
const before = oldSpaceMb();
let most = before;
for (let i = 0; i < 60_000; i++) {
  request(i);
  if (i % 500 === 0) most = Math.max(most, oldSpaceMb());
}
process.stdout.write(JSON.stringify({ settled, grewMb: most - before, kept: keep.length, sink: sink > 0 }) + '\n');
process.exit(0);
