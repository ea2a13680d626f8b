// The audit log's hash chain (docs/monitoring.md §2): every tenant has its own chain; each record
// carries the hash of the one before it, and its own hash covers its content and that link. Editing
// a record breaks its own hash; deleting one leaves a gap in the sequence numbers and a broken
// link; a record deleted at the end is caught against the head the store keeps next to the chain.
//
// Pure: the adapters call `chainRecord` inside their atomic append (SQLite transaction, Redis
// compare-and-set script), and `ChainVerifier` checks a chain record by record, oldest first.
// What it cannot see is an attacker who rewrites the whole rest of the chain and the head as
// well; publishing the head hash elsewhere (the verify answer prints it) closes that too.

import { hash } from 'node:crypto';
import type { Location } from './session.ts';

export interface AuditHeaders {
  requestId: string | null;
  correlationId: string | null;
  activityId: string | null;
  tenantId: string | null;
  sessionId: string | null;
}

/** What an event becomes in the log, before the chain numbers it. */
export interface AuditEventInput {
  time: number;
  tenantId: string;
  type: string;
  userId: string | null;
  /** The session handle. */
  sessionId: string | null;
  kind: string | null;
  headers: AuditHeaders;
  ip: string | null;
  userAgent: string | null;
  location: Location | null;
  details: Record<string, unknown>;
}

export interface AuditRecord extends AuditEventInput {
  /** `<tenantId>:<seq>`, unique across tenants. */
  id: string;
  /** 1, 2, 3, ... per tenant, without gaps. */
  seq: number;
  prevHash: string;
  /** SHA-256 (hex) of the canonical JSON of everything above except `id`. */
  hash: string;
}

/** A point of the chain: the head (newest record) or the anchor left by pruning. */
export interface ChainPoint {
  seq: number;
  hash: string;
}

/** The link of a tenant's first record: binds the chain to its tenant. */
export function genesisHash(tenantId: string): string {
  return hash('sha256', `tessera-audit-genesis\u0000${tenantId}`, 'hex');
}

/**
 * JSON with object keys sorted at every level and `undefined` members left out: the one text a
 * record hashes to, whichever adapter stored it and in whichever key order it was read back.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
    const s = JSON.stringify(value);
    return s === undefined ? 'null' : s;
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  // One pass over the sorted keys (no filtered and mapped copies: every audited request hashes
  // a record through here).
  const keys = Object.keys(obj).sort();
  let out = '';
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    out += `${out === '' ? '{' : ','}${JSON.stringify(k)}:${canonicalJson(v)}`;
  }
  return out === '' ? '{}' : `${out}}`;
}

/** Normalises an input to exactly what is stored (JSON round trip, canonical field set). */
export function normaliseInput(e: AuditEventInput): AuditEventInput {
  // Only location and details can hold more than strings and numbers: they alone take the round
  // trip (what the whole input's would give them, key order included).
  // (Without the round trip where it would change nothing: no location, details with no members.)
  const plain = {
    location: e.location === null || e.location === undefined ? null : (JSON.parse(canonicalJson(e.location)) as unknown),
    details: isEmptyObject(e.details) ? {} : (JSON.parse(canonicalJson(e.details)) as unknown),
  } as Partial<AuditEventInput>;
  return {
    time: e.time,
    tenantId: e.tenantId,
    type: e.type,
    userId: e.userId ?? null,
    sessionId: e.sessionId ?? null,
    kind: e.kind ?? null,
    headers: {
      requestId: e.headers.requestId ?? null,
      correlationId: e.headers.correlationId ?? null,
      activityId: e.headers.activityId ?? null,
      tenantId: e.headers.tenantId ?? null,
      sessionId: e.headers.sessionId ?? null,
    },
    ip: e.ip ?? null,
    userAgent: e.userAgent ?? null,
    location: (plain.location as Location | undefined) ?? null,
    details: plain.details ?? {},
  };
}

export function hashOf(r: Omit<AuditRecord, 'id' | 'hash'>): string {
  return hash('sha256', contentJson(r), 'hex');
}

/**
 * The canonical JSON of what a record's hash covers — exactly `canonicalJson` of the object
 * { seq, tenantId, time, type, userId, sessionId, kind, headers, ip, userAgent, location, details,
 * prevHash } — written member by member in sorted key order instead of building that object and
 * sorting its keys: the same text (a test compares the two on many records, stored ones with
 * missing or odd members among them) at about half the cost, and every audited request pays it.
 * A member that is undefined is left out, as canonicalJson leaves it out.
 */
export function contentJson(r: Omit<AuditRecord, 'id' | 'hash'>): string {
  let out = '';
  const member = (key: string, value: unknown) => {
    if (value === undefined) return;
    out += `${out === '' ? '{' : ','}"${key}":${canonicalJson(value)}`;
  };
  // Sorted by UTF-16 code units, as Array.prototype.sort orders canonicalJson's keys.
  member('details', r.details);
  member('headers', r.headers);
  member('ip', r.ip);
  member('kind', r.kind);
  member('location', r.location);
  member('prevHash', r.prevHash);
  member('seq', r.seq);
  member('sessionId', r.sessionId);
  member('tenantId', r.tenantId);
  member('time', r.time);
  member('type', r.type);
  member('userAgent', r.userAgent);
  member('userId', r.userId);
  return out === '' ? '{}' : `${out}}`;
}

/** The next record of a chain whose head is `head` (null: the chain is empty). */
export function chainRecord(head: ChainPoint | null, input: AuditEventInput): AuditRecord {
  const e = normaliseInput(input);
  const seq = (head?.seq ?? 0) + 1;
  const prevHash = head?.hash ?? genesisHash(e.tenantId);
  const recordHash = hash('sha256', normalisedContentJson(e, seq, prevHash), 'hex');
  return { id: `${e.tenantId}:${seq}`, ...e, seq, prevHash, hash: recordHash };
}

/** JSON.stringify writes these exactly as canonicalJson does (non-finite numbers as null too). */
function isScalar(v: unknown): boolean {
  return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

/** No own enumerable member (what canonicalJson writes as `{}`). */
function isEmptyObject(v: unknown): boolean {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  for (const k in v) if (Object.hasOwn(v, k)) return false;
  return true;
}

/**
 * Details whose JSON.stringify is their canonicalJson, once normalised: members that are scalars,
 * under names that do not start with a digit. (normaliseInput's round trip leaves an object's
 * members in sorted order — JSON.parse inserts them in the order of the canonical text — except
 * names that are array indices, which every object lists first, in numeric order.)
 */
function isFlatSorted(d: Record<string, unknown>): boolean {
  for (const k of Object.keys(d)) {
    const c = k.charCodeAt(0);
    if ((c >= 48 && c <= 57) || !isScalar(d[k])) return false;
  }
  return true;
}

/**
 * contentJson of the record `chainRecord` makes of a normalised input: when every member is a
 * scalar, the location null and the details flat (the usual event: a rotation's, a login's),
 * one JSON.stringify of the members written in sorted order — the same text (a test compares
 * them), without canonicalJson's key sorting at every level; else contentJson.
 */
function normalisedContentJson(e: AuditEventInput, seq: number, prevHash: string): string {
  const h = e.headers;
  if (
    e.location !== null ||
    !isFlatSorted(e.details) ||
    !isScalar(e.time) || !isScalar(e.tenantId) || !isScalar(e.type) || !isScalar(e.userId) || !isScalar(e.sessionId) ||
    !isScalar(e.kind) || !isScalar(e.ip) || !isScalar(e.userAgent) ||
    !isScalar(h.activityId) || !isScalar(h.correlationId) || !isScalar(h.requestId) || !isScalar(h.sessionId) || !isScalar(h.tenantId)
  ) {
    return contentJson({ ...e, seq, prevHash });
  }
  // Members in canonicalJson's (sorted) order; keep in step with contentJson.
  return JSON.stringify({
    details: e.details,
    headers: { activityId: h.activityId, correlationId: h.correlationId, requestId: h.requestId, sessionId: h.sessionId, tenantId: h.tenantId },
    ip: e.ip,
    kind: e.kind,
    location: null,
    prevHash,
    seq,
    sessionId: e.sessionId,
    tenantId: e.tenantId,
    time: e.time,
    type: e.type,
    userAgent: e.userAgent,
    userId: e.userId,
  });
}

export type ChainProblemKind =
  /** The record's content does not hash to its stored hash: it was edited. */
  | 'hash_mismatch'
  /** The record does not point at the hash of the record before it. */
  | 'broken_link'
  /** Sequence numbers jump: records are missing (deleted). */
  | 'missing_records'
  /** The chain ends before, or after, the head the store recorded. */
  | 'head_mismatch'
  /** The record is not where it claims to be (another tenant's, or a copy). */
  | 'misplaced';

export interface ChainProblem {
  seq: number;
  problem: ChainProblemKind;
  detail: string;
}

export interface ChainReport {
  tenantId: string;
  ok: boolean;
  /** Records checked. */
  records: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** The head the store recorded: publish it elsewhere to detect a rewrite of the whole chain. */
  head: ChainPoint | null;
  /** Where a pruned chain starts from (retention), or null. */
  anchor: ChainPoint | null;
  /** The first problems found (at most 20). */
  problems: ChainProblem[];
}

const MAX_PROBLEMS = 20;

/**
 * Checks one tenant's chain, fed oldest first (any page size). `anchor` is where the chain
 * starts after pruning (null: at genesis); `head` what the store says the newest record is.
 */
export class ChainVerifier {
  readonly #tenantId: string;
  readonly #anchor: ChainPoint | null;
  readonly #head: ChainPoint | null;
  #expectedSeq: number;
  #expectedPrev: string;
  #records = 0;
  #firstSeq: number | null = null;
  #lastSeq: number | null = null;
  readonly #problems: ChainProblem[] = [];
  #problemCount = 0;

  constructor(tenantId: string, anchor: ChainPoint | null, head: ChainPoint | null) {
    this.#tenantId = tenantId;
    this.#anchor = anchor;
    this.#head = head;
    this.#expectedSeq = (anchor?.seq ?? 0) + 1;
    this.#expectedPrev = anchor?.hash ?? genesisHash(tenantId);
  }

  #report(seq: number, problem: ChainProblemKind, detail: string): void {
    this.#problemCount += 1;
    if (this.#problems.length < MAX_PROBLEMS) this.#problems.push({ seq, problem, detail });
  }

  add(r: AuditRecord): void {
    this.#records += 1;
    this.#firstSeq ??= r.seq;
    this.#lastSeq = r.seq;
    if (r.tenantId !== this.#tenantId || r.id !== `${r.tenantId}:${r.seq}`) {
      this.#report(r.seq, 'misplaced', `record ${r.id} is in the chain of tenant ${this.#tenantId}`);
    }
    if (r.seq > this.#expectedSeq) {
      this.#report(r.seq, 'missing_records', `records ${this.#expectedSeq}..${r.seq - 1} are missing`);
    } else if (r.seq < this.#expectedSeq) {
      this.#report(r.seq, 'misplaced', `record ${r.seq} appears after record ${this.#expectedSeq - 1}`);
    }
    if (r.prevHash !== this.#expectedPrev) {
      this.#report(r.seq, 'broken_link', 'prevHash is not the hash of the record before');
    }
    if (hashOf(r) !== r.hash) {
      this.#report(r.seq, 'hash_mismatch', 'the record was changed after it was written');
    }
    this.#expectedSeq = r.seq + 1;
    this.#expectedPrev = r.hash;
  }

  finish(): ChainReport {
    const lastSeq = this.#expectedSeq - 1;
    const head = this.#head;
    if (head === null) {
      if (this.#records > 0) this.#report(lastSeq, 'head_mismatch', 'records exist but the store has no head for this chain');
    } else if (head.seq !== lastSeq) {
      this.#report(
        Math.min(head.seq, lastSeq + 1),
        head.seq > lastSeq ? 'missing_records' : 'head_mismatch',
        head.seq > lastSeq ? `records ${lastSeq + 1}..${head.seq} are missing (the head is ${head.seq})` : `the chain runs past its head ${head.seq}`,
      );
    } else if (head.hash !== this.#expectedPrev) {
      this.#report(head.seq, 'head_mismatch', 'the last record is not the one the head names');
    }
    return {
      tenantId: this.#tenantId,
      ok: this.#problemCount === 0,
      records: this.#records,
      firstSeq: this.#firstSeq,
      lastSeq: this.#lastSeq,
      head,
      anchor: this.#anchor,
      problems: this.#problems,
    };
  }
}
