// Listings of the Redis audit store (`list`, `listAnomalies`): a tenant's stream read in id order
// from the cursor (an entry id), SCAN_BUDGET entries at most per call. Entry ids grow with the
// records' time (audit.ts), so a time range is an id range.

import type { AuditRecord } from '../../domain/audit-chain.ts';
import { invalidCursor, isFirstPage, type Page } from '../page.ts';
import type { RedisConnection } from './connection.ts';

/** Stream entries a listing reads at most per call before it answers with a cursor. */
const SCAN_BUDGET = 5000;

/**
 * Reads a stream in id order from the cursor, keeps what `keep` accepts, and stops at `limit`
 * items or after SCAN_BUDGET entries (answering with a cursor either way).
 */
export async function scanStream(
  conn: RedisConnection,
  key: string,
  order: 'asc' | 'desc',
  lo: string,
  hi: string,
  cursor: string | null | undefined,
  limit: number,
  keep: (r: AuditRecord) => boolean,
): Promise<Page<AuditRecord>> {
  let position: string | null = null;
  if (!isFirstPage(cursor)) {
    if (!/^\d{1,20}-\d{1,20}$/.test(cursor)) throw invalidCursor();
    position = cursor;
  }
  const items: AuditRecord[] = [];
  let scanned = 0;
  let lastId: string | null = null;
  for (;;) {
    const batch = Math.min(Math.max(limit * 2, 100), 1000);
    let start = order === 'asc' ? lo : hi;
    const end = order === 'asc' ? hi : lo;
    if (position !== null) start = `(${position}`;
    const args = order === 'asc' ? ['XRANGE', key, start, end, 'COUNT', String(batch)] : ['XREVRANGE', key, start, end, 'COUNT', String(batch)];
    let entries: Array<[string, string[]]>;
    try {
      entries = (await conn.send(key, args, true)) as Array<[string, string[]]>;
    } catch (err) {
      // A cursor Redis cannot use as a stream id (out of range, or nothing before `0-0`).
      if (position !== null && err instanceof Error && /stream id|start id|end id/i.test(err.message)) {
        throw invalidCursor();
      }
      throw err;
    }
    for (const [id, fields] of entries) {
      scanned += 1;
      position = id;
      const json = fieldOf(fields, 'r');
      if (json === null) continue;
      const r = JSON.parse(json) as AuditRecord;
      if (!keep(r)) continue;
      items.push(r);
      lastId = id;
      if (items.length === limit) break;
    }
    if (items.length === limit) {
      // Is there anything after the last item? Answer a cursor only if so.
      const more = (await conn.send(
        key,
        order === 'asc' ? ['XRANGE', key, `(${lastId}`, hi, 'COUNT', '1'] : ['XREVRANGE', key, `(${lastId}`, lo, 'COUNT', '1'],
        true,
      )) as unknown[];
      return { items, nextCursor: more.length > 0 ? lastId : null };
    }
    if (entries.length < batch) return { items, nextCursor: null };
    if (scanned >= SCAN_BUDGET) return { items, nextCursor: position };
  }
}

function fieldOf(fields: string[], name: string): string | null {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1] as string;
  return null;
}
