// Listings backfilled at open. The Redis store has no schema, but some of its listings appeared
// after data was already written: the tenant listing (`P tenants`), the user listing
// (`P tu:<tenant>`), and the tenant's organizations, applications and identity links
// (`P torg:`, `P tapp:`, `P tfid:`). Records written before them are found by one SCAN of the
// store's prefix and added to the listings; then `P meta:listings` records the version done, and
// later opens skip the scan (one GET).
//
// - Idempotent: every step is ZADD/SADD of what the record says; two processes opening at once
//   both add the same members. A member whose record is deleted meanwhile is skipped by readers
//   (every listing is a hint, checked against the record).
// - Bounded: one SCAN pass (COUNT 1000 a step) over the keys of this prefix on every master,
//   one GET per user, organization and application found. A store written only by versions that
//   keep the listings themselves gains nothing but the marker.

import { userTag } from '../../domain/secrets.ts';
import type { Send, RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';

/** Raise when a new listing needs a backfill of its own; the scan then runs once more. */
export const LISTINGS_VERSION = 1;
const MARKER = 'listings';

export interface BackfillReport {
  /** False when the marker said the listings were complete already (nothing scanned). */
  scanned: boolean;
  keys: number;
  tenants: number;
  users: number;
  organizations: number;
  apps: number;
  identities: number;
}

/** Escapes glob characters of a prefix for SCAN MATCH. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export async function backfillListings(conn: RedisConnection, keys: RedisKeys): Promise<BackfillReport> {
  const report: BackfillReport = { scanned: false, keys: 0, tenants: 0, users: 0, organizations: 0, apps: 0, identities: 0 };
  const marker = keys.meta(MARKER);
  const done = (await conn.send(marker, ['GET', marker])) as string | null;
  if (done !== null && Number((JSON.parse(done) as { version?: unknown }).version) >= LISTINGS_VERSION) return report;
  report.scanned = true;
  const p = keys.prefix;
  const get = async (key: string): Promise<string | null> => (await conn.send(key, ['GET', key])) as string | null;
  const add = async (command: 'ZADD' | 'SADD', listing: string, member: string): Promise<void> => {
    await conn.send(listing, command === 'ZADD' ? ['ZADD', listing, '0', member] : ['SADD', listing, member]);
  };
  for (const send of await conn.masters()) {
    for await (const key of scanKeys(send, `${globEscape(p)}*`)) {
      report.keys += 1;
      const rest = key.slice(p.length);
      if (rest.startsWith('tenant:')) {
        await add('ZADD', keys.tenants(), rest.slice('tenant:'.length));
        report.tenants += 1;
      } else if (rest.startsWith('ue:')) {
        // ue:<tenant>:<email> → userId (tenant ids hold no colon).
        const cut = rest.indexOf(':', 3);
        if (cut < 0) continue;
        const tenantId = rest.slice(3, cut);
        const email = rest.slice(cut + 1);
        const userId = await get(key);
        if (userId === null) continue;
        const raw = await get(keys.user(userTag(tenantId, userId), userId));
        if (raw === null) continue;
        const u = JSON.parse(raw) as { email?: string; tenantId?: string };
        if (u.email !== email || u.tenantId !== tenantId) continue;
        await add('ZADD', keys.tenantUsers(tenantId), `${email} ${userId}`);
        report.users += 1;
      } else if (rest.startsWith('org:') || rest.startsWith('app:')) {
        const raw = await get(key);
        if (raw === null) continue;
        const { tenantId } = JSON.parse(raw) as { tenantId?: unknown };
        if (typeof tenantId !== 'string') continue;
        const id = rest.slice(4);
        if (rest.startsWith('org:')) {
          await add('SADD', keys.tenantOrganizations(tenantId), id);
          report.organizations += 1;
        } else {
          await add('SADD', keys.tenantApps(tenantId), id);
          report.apps += 1;
        }
      } else if (rest.startsWith('fid:')) {
        const cut = rest.indexOf(':', 4);
        if (cut < 0) continue;
        await add('SADD', keys.tenantIdentities(rest.slice(4, cut)), rest.slice(cut + 1));
        report.identities += 1;
      }
    }
  }
  await conn.send(marker, ['SET', marker, JSON.stringify({ version: LISTINGS_VERSION, at: new Date().toISOString() })]);
  return report;
}

async function* scanKeys(send: Send, match: string): AsyncGenerator<string> {
  let cursor = '0';
  do {
    const [next, batch] = (await send(['SCAN', cursor, 'MATCH', match, 'COUNT', '1000'])) as [string, string[]];
    cursor = next;
    yield* batch;
  } while (cursor !== '0');
}
