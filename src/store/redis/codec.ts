// How session and refresh-token records travel between Node and the slot scripts: as flat
// name/value lists (the shape of an HGETALL reply), in both directions. The scripts keep them in
// their own compact form (slot-lua.ts); these names are only the interface. Not JSON, because
// Lua's cjson is lossy: it prints numbers with 14 significant digits and cannot tell an empty
// array from an empty object. So:
// - every field a script reads or writes (status, kind, expiries, createdAt, lastSeenAt, parent,
//   successor, endedAt, revokeReason, secretHash, tenantId, userId) is its own field, a decimal
//   string for numbers; scripts compare numbers and print them only with %d;
// - the device is up to three fields `dev:userAgent`, `dev:ip`, `dev:location` (JSON);
// - `data` is spread over fields `d:<key>`, each holding JSON.stringify of that top-level value, so
//   updateSessionData merges in Lua (per key) without decoding anything;
// - a null field is an absent field.
//
// (Layout 1 kept these very fields in one Redis hash per session; migrate.ts reads them.)

import type { Device, Location, RevokeReason, Session, SessionKind, SessionStatus } from '../../domain/session.ts';
import type { RefreshToken } from '../port.ts';

const DATA = 'd:';

export function sessionToFields(s: Session): string[] {
  const f: string[] = [
    'handle', s.handle,
    'secretHash', s.secretHash,
    'tenantId', s.tenantId,
    'kind', s.kind,
    'createdAt', num(s.createdAt),
    'lastSeenAt', num(s.lastSeenAt),
    'absoluteExpiresAt', num(s.absoluteExpiresAt),
    'authMethod', s.authMethod,
    'status', s.status,
  ];
  const d = s.device ?? {};
  if (d.userAgent !== undefined) f.push('dev:userAgent', packUserAgent(d.userAgent));
  if (d.ip !== undefined) f.push('dev:ip', d.ip);
  if (d.location !== undefined) f.push('dev:location', JSON.stringify(d.location));
  if (s.userId !== null) f.push('userId', s.userId);
  if (s.parentHandle !== null) f.push('parentHandle', s.parentHandle);
  if (s.idleExpiresAt !== null) f.push('idleExpiresAt', num(s.idleExpiresAt));
  if (s.clientId !== null) f.push('clientId', s.clientId);
  if (s.endedAt !== null) f.push('endedAt', num(s.endedAt));
  if (s.revokeReason !== null) f.push('revokeReason', s.revokeReason);
  if (s.successorHandle !== null) f.push('successorHandle', s.successorHandle);
  for (const [k, v] of Object.entries(s.data ?? {})) {
    if (v !== undefined) f.push(DATA + k, JSON.stringify(v));
  }
  return f;
}

/** A data patch as `d:<key>`, JSON value pairs; null becomes an empty string: "remove the key". */
export function patchToFields(data: Record<string, unknown>): string[] {
  const f: string[] = [];
  for (const [k, v] of Object.entries(data)) {
    if (v === undefined) continue;
    f.push(DATA + k, v === null ? '' : JSON.stringify(v));
  }
  return f;
}

/** A flat HGETALL reply as a map; null for an empty reply (the key does not exist). */
export function fieldMap(reply: unknown): Map<string, string> | null {
  if (!Array.isArray(reply) || reply.length === 0) return null;
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) m.set(String(reply[i]), String(reply[i + 1]));
  return m;
}

/**
 * A session from its name/value reply, in one pass over the reply (no intermediate map: every
 * store call that returns sessions decodes them, the SSO exchange three). As a map would: a name
 * given twice keeps its last value and its first position; null without `handle` or `status`; a
 * record without another required field throws.
 */
export function sessionFromReply(reply: unknown): Session | null {
  if (!Array.isArray(reply) || reply.length === 0) return null;
  let handle, secretHash, tenantId, userId, kind, parentHandle, createdAt, lastSeenAt, idleExpiresAt, absoluteExpiresAt;
  let authMethod, clientId, status, endedAt, revokeReason, successorHandle, legacyDevice, userAgent, ip, location;
  const data: Record<string, unknown> = {};
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const name = String(reply[i]);
    const value = String(reply[i + 1]);
    switch (name) {
      case 'handle': handle = value; break;
      case 'secretHash': secretHash = value; break;
      case 'tenantId': tenantId = value; break;
      case 'userId': userId = value; break;
      case 'kind': kind = value; break;
      case 'parentHandle': parentHandle = value; break;
      case 'createdAt': createdAt = value; break;
      case 'lastSeenAt': lastSeenAt = value; break;
      case 'idleExpiresAt': idleExpiresAt = value; break;
      case 'absoluteExpiresAt': absoluteExpiresAt = value; break;
      case 'authMethod': authMethod = value; break;
      case 'clientId': clientId = value; break;
      case 'status': status = value; break;
      case 'endedAt': endedAt = value; break;
      case 'revokeReason': revokeReason = value; break;
      case 'successorHandle': successorHandle = value; break;
      case 'device': legacyDevice = value; break;
      case 'dev:userAgent': userAgent = value; break;
      case 'dev:ip': ip = value; break;
      case 'dev:location': location = value; break;
      default:
        // defineProperty for a key named __proto__, so that it stays an own property, as JSON.parse
        // would make it (an assignment would set the prototype); any other key is assigned, which
        // makes the same own, enumerable, writable, configurable property.
        if (name.startsWith(DATA)) {
          const key = name.slice(DATA.length);
          if (key === '__proto__') Object.defineProperty(data, key, { value: JSON.parse(value) as unknown, enumerable: true, writable: true, configurable: true });
          else data[key] = JSON.parse(value) as unknown;
        }
    }
  }
  if (handle === undefined || status === undefined) return null;
  return {
    handle,
    secretHash: required(secretHash, 'secretHash'),
    tenantId: required(tenantId, 'tenantId'),
    userId: userId ?? null,
    kind: required(kind, 'kind') as SessionKind,
    parentHandle: parentHandle ?? null,
    createdAt: Number(required(createdAt, 'createdAt')),
    lastSeenAt: Number(required(lastSeenAt, 'lastSeenAt')),
    idleExpiresAt: idleExpiresAt === undefined ? null : Number(idleExpiresAt),
    absoluteExpiresAt: Number(required(absoluteExpiresAt, 'absoluteExpiresAt')),
    authMethod: required(authMethod, 'authMethod'),
    clientId: clientId ?? null,
    device: deviceOf(legacyDevice, userAgent, ip, location),
    status: status as SessionStatus,
    endedAt: endedAt === undefined ? null : Number(endedAt),
    revokeReason: (revokeReason ?? null) as RevokeReason | null,
    successorHandle: successorHandle ?? null,
    data,
  };
}

function required(v: string | undefined, field: string): string {
  if (v === undefined) throw new Error(`stored record lacks the field "${field}"`);
  return v;
}

// A User-Agent is most of a session's record, and most of it is one of a few phrases every
// browser repeats. Each phrase below is stored as one control character (which no HTTP header
// value holds); a User-Agent that holds a control character itself is stored as it is behind a
// NUL. Lossless for any string. The table is part of the stored format: never change or reorder
// an entry, only append (codes 1–8, then 11, 12, 14–31; tab, line feed and carriage return are
// left out).
const UA_PHRASES: ReadonlyArray<readonly [string, string]> = [
  ['\u0013', 'Windows NT 10.0; Win64; x64; '],
  ['\u0001', 'Mozilla/5.0 ('],
  ['\u0002', 'Windows NT 10.0; Win64; x64'],
  ['\u0003', ') AppleWebKit/537.36 (KHTML, like Gecko) Chrome/'],
  ['\u0004', ' Safari/537.36'],
  ['\u0005', 'Macintosh; Intel Mac OS X 10_15_7'],
  ['\u0006', 'X11; Linux x86_64'],
  ['\u0007', ') Gecko/20100101 Firefox/'],
  ['\u0008', 'iPhone; CPU iPhone OS '],
  ['\u000b', ' like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/'],
  ['\u000c', ' Mobile/15E148 Safari/604.1'],
  ['\u000e', 'Linux; Android 10; K'],
  ['\u000f', ') AppleWebKit/605.1.15 (KHTML, like Gecko) Version/'],
  ['\u0010', ' Mobile Safari/537.36'],
  ['\u0011', ' Edg/'],
  ['\u0012', ' Safari/605.1.15'],
];

export function packUserAgent(ua: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(ua)) return `\u0000${ua}`;
  let out = ua;
  for (const [code, phrase] of UA_PHRASES) out = out.split(phrase).join(code);
  return out;
}

/** The phrase of each code, by its character code. */
const UA_EXPANSIONS: ReadonlyMap<string, string> = new Map(UA_PHRASES);
// eslint-disable-next-line no-control-regex
const UA_CODES = /[\u0001-\u001f]/g;

/**
 * In one pass (every read of a session decodes its User-Agent): no phrase holds a control
 * character, so expanding every code at once is what expanding them one phrase after another was.
 */
export function unpackUserAgent(stored: string): string {
  if (stored.startsWith('\u0000')) return stored.slice(1);
  return stored.replace(UA_CODES, (code) => UA_EXPANSIONS.get(code) ?? code);
}

function deviceOf(legacy: string | undefined, ua: string | undefined, ip: string | undefined, loc: string | undefined): Device {
  // Layout 1 stored the device as one JSON field (migrate.ts reads old records through here).
  if (legacy !== undefined) return JSON.parse(legacy) as Device;
  const d: Device = {};
  if (ua !== undefined) d.userAgent = unpackUserAgent(ua);
  if (ip !== undefined) d.ip = ip;
  if (loc !== undefined) d.location = JSON.parse(loc) as Location;
  return d;
}

/** A script reply that is a list of HGETALL replies. */
export function sessionsFromReply(reply: unknown): Session[] {
  if (!Array.isArray(reply)) return [];
  return reply.map(sessionFromReply).filter((s): s is Session => s !== null);
}

export function refreshTokenToFields(t: RefreshToken): string[] {
  const f = [
    'tokenHash', t.tokenHash,
    'sessionHandle', t.sessionHandle,
    'tenantId', t.tenantId,
    'userId', t.userId,
    'createdAt', num(t.createdAt),
  ];
  if (t.rotatedAt !== null) f.push('rotatedAt', num(t.rotatedAt));
  if (t.successorHash !== null) f.push('successorHash', t.successorHash);
  return f;
}

/**
 * A refresh token from its name/value reply, in one pass (no intermediate map: every rotation
 * decodes its successor). As a map would: a name given twice keeps its last value; null without
 * `tokenHash`; a record without another required field throws.
 */
export function refreshTokenFromReply(reply: unknown): RefreshToken | null {
  if (!Array.isArray(reply) || reply.length === 0) return null;
  let tokenHash, sessionHandle, tenantId, userId, createdAt, rotatedAt, successorHash;
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const value = String(reply[i + 1]);
    switch (String(reply[i])) {
      case 'tokenHash': tokenHash = value; break;
      case 'sessionHandle': sessionHandle = value; break;
      case 'tenantId': tenantId = value; break;
      case 'userId': userId = value; break;
      case 'createdAt': createdAt = value; break;
      case 'rotatedAt': rotatedAt = value; break;
      case 'successorHash': successorHash = value; break;
    }
  }
  if (tokenHash === undefined) return null;
  return {
    tokenHash,
    sessionHandle: required(sessionHandle, 'sessionHandle'),
    tenantId: required(tenantId, 'tenantId'),
    userId: required(userId, 'userId'),
    createdAt: Number(required(createdAt, 'createdAt')),
    rotatedAt: rotatedAt === undefined ? null : Number(rotatedAt),
    successorHash: successorHash ?? null,
  };
}

/** Numbers travel as decimal strings; scripts copy them and never print numbers of their own. */
export function num(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`not a finite number: ${n}`);
  return String(n);
}

export function mustSession(reply: unknown): Session {
  const s = sessionFromReply(reply);
  if (s === null) throw new Error('the store returned an empty session record');
  return s;
}

export function mustToken(reply: unknown): RefreshToken {
  const t = refreshTokenFromReply(reply);
  if (t === null) throw new Error('the store returned an empty refresh-token record');
  return t;
}
