// oidc-provider's records at rest (docs/security.md, item 11). oidc-provider names its records by
// the credentials themselves: an access token's or authorization code's id *is* the token, a
// Session's id is the value of the `tessera_oidc_session` cookie, an Interaction's id the value
// of the interaction cookie. The payloads repeat them (`jti`; an Interaction's `session.cookie`
// is the Session's id) and hold other secrets (a Session's logout `state.secret`). So that a read
// of the store — a copied database file, a backup, a Redis replica, a `KEYS *` — yields nothing
// that works against the server:
//
// - the record's id in the store is HMAC-SHA256 of model and id (key `oidc-record-ids`): a lookup
//   by the real id finds it, the stored id gives nothing back;
// - the payload is sealed whole (AES-256-GCM, key `seal-oidc-records`, the model as additional
//   data). Stripping `jti` alone would leave the other copies, and whatever fields a later
//   oidc-provider adds; sealing needs no list of them;
// - the two fields the store indexes are keyed hashes too: `grantId` (revokeByGrantId) and
//   `uid` (findByUid). `consumed` stays outside the seal: the store sets it (consumeModel, one
//   atomic step in each store) and it is copied back on reading.
//
// A record written before this layout (raw id, clear payload) is never found again: its id is
// not a keyed hash of anything. Such records are dead and are deleted as they expire (docs/
// security.md, "Upgrading").

import type { KeyObject } from 'node:crypto';
import { deriveKey, keyedDigest, seal, unseal } from '../../tokens/sealing.ts';

export interface RecordKeys {
  /** HMAC key of stored ids, uids and grant ids. */
  ids: KeyObject;
  /** AES-256-GCM key of the payloads. */
  payloads: KeyObject;
}

/** What the store holds for one record: everything else is inside `sealed`. */
export interface StoredRecord {
  sealed: string;
  grantId?: string;
  uid?: string;
  /** Set by the store's consumeModel (epoch seconds). */
  consumed?: number;
  [k: string]: unknown;
}

export function recordKeys(serverSecret: string): RecordKeys {
  return { ids: deriveKey(serverSecret, 'oidc-record-ids'), payloads: deriveKey(serverSecret, 'seal-oidc-records') };
}

/** The store's id of the record `id` of `model`. */
export function storedId(keys: RecordKeys, model: string, id: string): string {
  return keyedDigest(keys.ids, `id\u0000${model}\u0000${id}`);
}

/** The store's uid of the record of `model` whose payload has this `uid`. */
export function storedUid(keys: RecordKeys, model: string, uid: string): string {
  return keyedDigest(keys.ids, `uid\u0000${model}\u0000${uid}`);
}

/** The store's grant id of every record (of any model) carrying this `grantId`. */
export function storedGrantId(keys: RecordKeys, grantId: string): string {
  return keyedDigest(keys.ids, `grant\u0000${grantId}`);
}

export function sealRecord(keys: RecordKeys, model: string, payload: Record<string, unknown>): StoredRecord {
  return {
    sealed: seal(keys.payloads, JSON.stringify(payload), model),
    ...(typeof payload.grantId === 'string' ? { grantId: storedGrantId(keys, payload.grantId) } : {}),
    ...(typeof payload.uid === 'string' ? { uid: storedUid(keys, model, payload.uid) } : {}),
  };
}

/**
 * The payload of a stored record found by `by` (its id or its uid), or null when there is none
 * to give: absent, in the old clear layout, sealed under another key or for another model, or
 * not the record asked for (a sealed payload copied to another id).
 */
export function openRecord(
  keys: RecordKeys,
  model: string,
  stored: Record<string, unknown> | null,
  by: { id: string } | { uid: string },
): Record<string, unknown> | null {
  if (stored === null || typeof stored.sealed !== 'string') return null;
  let payload: Record<string, unknown>;
  try {
    payload = JSON.parse(unseal(keys.payloads, stored.sealed, model)) as Record<string, unknown>;
  } catch {
    return null;
  }
  if ('id' in by ? payload.jti !== undefined && payload.jti !== by.id : payload.uid !== by.uid) return null;
  if (typeof stored.consumed === 'number') payload.consumed = stored.consumed;
  return payload;
}
