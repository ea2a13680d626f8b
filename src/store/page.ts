// Listing pages, their cursor and their limit: one definition for every port and adapter.
//
// A cursor is opaque to clients: base64url of the last item's (createdAt, key) — key being the
// handle of a session or the id of a consent. An absent, null or empty cursor (`?cursor=`) asks
// for the first page, on every store; anything else that this codec did not produce is
// BadRequest('invalid_cursor'). A limit outside 1..max is BadRequest('invalid_limit').
// (Audit listings page by their log's own position — a sequence number or a stream id — and
// share the same first-page rule; see isFirstPage.)

import { BadRequest } from '../domain/errors.ts';

export interface Page<T> {
  items: T[];
  /** Opaque; pass back as `cursor` for the next page. null when there is no further page. */
  nextCursor: string | null;
}

/** Where a listing sorted by (createdAt, key) stands: its last item so far. */
export interface Position {
  createdAt: number;
  key: string;
}

/** Keys are handles and ids: short, and never empty. */
const MAX_KEY_LENGTH = 64;

export function encodeCursor(p: Position): string {
  return Buffer.from(JSON.stringify([p.createdAt, p.key]), 'utf8').toString('base64url');
}

/** True for the cursor of a first page: absent, null or empty. */
export function isFirstPage(cursor: string | null | undefined): cursor is null | undefined | '' {
  return cursor === undefined || cursor === null || cursor === '';
}

/** The position a cursor names; null for the first page. Throws BadRequest('invalid_cursor'). */
export function decodeCursor(cursor: string | null | undefined): Position | null {
  if (isFirstPage(cursor)) return null;
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(v) &&
      v.length === 2 &&
      Number.isSafeInteger(v[0]) &&
      typeof v[1] === 'string' &&
      v[1].length > 0 &&
      v[1].length <= MAX_KEY_LENGTH
    ) {
      return { createdAt: v[0] as number, key: v[1] };
    }
  } catch {
    // fall through to the refusal
  }
  throw invalidCursor();
}

export function invalidCursor(): BadRequest {
  return new BadRequest('invalid_cursor', 'The cursor is not one this server issued.');
}

/** Throws BadRequest('invalid_limit') unless `limit` is an integer from 1 to `max`. */
export function checkLimit(limit: number, max: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new BadRequest('invalid_limit', `limit must be an integer from 1 to ${max}.`);
  }
}

/** The page of `rows` fetched with limit + 1: the extra row only says that there is a next page. */
export function pageOf<T>(rows: T[], limit: number, positionOf: (item: T) => Position): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(positionOf(last)) : null };
}
