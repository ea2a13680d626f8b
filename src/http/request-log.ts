// The one JSON line per request (the ids of docs/api.md §Request headers, route, status, timing —
// never a query string, header value or body that could hold a secret).
//
// The line is built here from those fields only, so it needs neither the root logger's
// redaction pass nor pino's generic object walk: when the logger is a plain pino instance (no
// mixin, log formatter, stream hook, message prefix or serializer for these fields — Tessera's
// own logger is one), the line is assembled from pino's own pieces (level prefix, time, bindings,
// message key, line end) and handed to its destination, byte for byte what
// `logger.info(fields, 'request')` would write. Any other logger gets exactly that call.

import type { FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';

export interface RequestLine {
  method: string;
  route: string;
  path: string;
  status: number;
  ms: number;
  requestId?: string | undefined;
  correlationId?: string | undefined;
  activityId?: string | undefined;
  tenantId?: string | undefined;
  sessionId?: string | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
}

const FIELDS: readonly (keyof RequestLine)[] = [
  'method',
  'route',
  'path',
  'status',
  'ms',
  'requestId',
  'correlationId',
  'activityId',
  'tenantId',
  'sessionId',
  'ip',
  'userAgent',
];

const MESSAGE = 'request';

/**
 * `ms` as JSON writes it (null when not finite). app.ts gives it rounded to tenths, and such a
 * number is written from its tenths by integer conversions — the general conversion of a
 * fractional number to text was a measurable share of the line; the text is the same, since a
 * decimal of at most ten digits is the shortest that reads back as its nearest double. Any other
 * number is converted as JSON does.
 */
export function jsonMs(ms: number): string {
  const tenths = Math.round(ms * 10);
  if (tenths >= 0 && tenths < 1e9 && tenths / 10 === ms) {
    const digit = tenths % 10;
    const whole = (tenths - digit) / 10;
    return digit === 0 ? `${whole}` : `${whole}.${digit}`;
  }
  return Number.isFinite(ms) ? `${ms}` : 'null';
}

type PinoInternals = Record<symbol, unknown> & { levelVal: number; levels: { values: Record<string, number> } };

/** A writer of request lines into `logger` (a child without redaction). */
export function requestLineWriter(logger: FastifyBaseLogger): (line: RequestLine) => void {
  const slow = (line: RequestLine) => logger.info(line, MESSAGE);
  const s = pino.symbols;
  const l = logger as unknown as PinoInternals;
  const stream = l[s.streamSym] as { write?: (chunk: string) => unknown; [k: symbol]: unknown } | undefined;
  const formatters = l[s.formattersSym] as { log?: unknown } | undefined;
  const hooks = l[s.hooksSym] as { streamWrite?: unknown } | undefined;
  const serializers = (l[s.serializersSym] ?? {}) as Record<string, unknown>;
  const stringifiers = (l[s.stringifiersSym] ?? {}) as Record<string | symbol, unknown>;
  const lsCache = l[s.lsCacheSym] as Record<number, string> | undefined;
  const time = l[s.timeSym] as (() => string) | undefined;
  const messageKey = l[s.messageKeySym];
  const end = l[s.endSym];
  const info = l.levels?.values?.info;
  const plain =
    stream !== undefined &&
    typeof stream.write === 'function' &&
    stream[s.needsMetadataGsym] !== true &&
    !l[s.mixinSym] &&
    !(logger as unknown as { msgPrefix?: string }).msgPrefix &&
    formatters?.log === undefined &&
    hooks?.streamWrite === undefined &&
    FIELDS.every((f) => serializers[f] === undefined && stringifiers[f] === undefined) &&
    stringifiers[s.wildcardFirstSym] === undefined &&
    typeof messageKey === 'string' &&
    typeof end === 'string' &&
    typeof time === 'function' &&
    typeof info === 'number' &&
    typeof lsCache?.[info] === 'string';
  if (!plain) return slow;
  const level = info;
  const prefix = lsCache[level] as string;
  const tail = `,${JSON.stringify(messageKey)}:${JSON.stringify(MESSAGE)}${end}`;
  const str = (k: string, v: string | undefined) => (v === undefined ? '' : `,"${k}":${JSON.stringify(v)}`);
  // A client repeats its method, route and path, its address and its agent from one request to
  // the next: the last fragments of those are kept, so most lines are built from fewer, already
  // serialised pieces (each JSON.stringify call, and each piece the line's text is joined from,
  // was a measurable share of the session check).
  let head = { method: '', route: '', path: '', text: '' };
  let client = { ip: undefined as string | undefined, userAgent: undefined as string | undefined, text: '' };
  return (line) => {
    // The level can change at run time (it is read per line, as pino's methods are swapped).
    if (l.levelVal > level) return;
    if (line.method !== head.method || line.route !== head.route || line.path !== head.path || head.text === '') {
      const text = `,"method":${JSON.stringify(line.method)},"route":${JSON.stringify(line.route)},"path":${JSON.stringify(line.path)}`;
      head = { method: line.method, route: line.route, path: line.path, text };
    }
    if (line.ip !== client.ip || line.userAgent !== client.userAgent || client.text === '') {
      client = { ip: line.ip, userAgent: line.userAgent, text: str('ip', line.ip) + str('userAgent', line.userAgent) + tail };
    }
    // The chindings are read per line too: bindings may be added to the logger later.
    const text =
      prefix +
      time.call(logger) +
      (l[s.chindingsSym] as string) +
      head.text +
      `,"status":${line.status},"ms":${jsonMs(line.ms)}` +
      str('requestId', line.requestId) +
      str('correlationId', line.correlationId) +
      (line.activityId === undefined && line.tenantId === undefined && line.sessionId === undefined
        ? ''
        : str('activityId', line.activityId) + str('tenantId', line.tenantId) + str('sessionId', line.sessionId)) +
      client.text;
    (stream.write as (chunk: string) => unknown).call(stream, text);
  };
}
