// The request line's fast path (src/http/request-log.ts) writes exactly what
// `logger.info(fields, 'request')` would, and falls back to that call for loggers it cannot
// mirror.

import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { jsonMs, requestLineWriter, type RequestLine } from '../../src/http/request-log.ts';

function capture(opts: pino.LoggerOptions = {}) {
  const lines: string[] = [];
  const stream = { write: (s: string) => void lines.push(s) };
  const root = pino({ base: { service: 'tessera' }, timestamp: () => ',"time":"2026-12-07T00:00:00.000Z"', ...opts }, stream);
  return { lines, logger: root.child({}, { redact: { paths: [], censor: '' } }) };
}

const LINES: RequestLine[] = [
  { method: 'GET', route: '/api/v1/session', path: '/api/v1/session', status: 200, ms: 0.4, requestId: 'r-1', correlationId: 'c-1', ip: '127.0.0.1' },
  {
    method: 'POST',
    route: 'unmatched',
    path: '/a"b\\c\u0001é\ud800',
    status: 404,
    ms: 12,
    requestId: 'r-2',
    correlationId: 'c-2',
    activityId: '3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b',
    tenantId: 'acme',
    sessionId: 'h-1',
    ip: '::1',
    userAgent: 'Mozilla/5.0 "quoted" \\ agent',
  },
  { method: 'GET', route: '/x', path: '/x', status: 500, ms: Number.NaN, ip: undefined },
  // Repeats and near-repeats of earlier lines (the writer keeps the last fragments it built);
  // fields in the order app.ts gives them.
  { method: 'GET', route: '/x', path: '/x', status: 200, ms: 1, ip: undefined },
  { method: 'GET', route: '/x', path: '/x?', status: 200, ms: 1, ip: '::1' },
  { method: 'POST', route: '/x', path: '/x?', status: 200, ms: 1, ip: '::1', userAgent: 'a' },
  { method: 'POST', route: '/y', path: '/x?', status: 200, ms: 1, ip: '::1', userAgent: 'b' },
  { method: 'POST', route: '/y', path: '/x?', status: 200, ms: 1, tenantId: 't', ip: '::2', userAgent: 'b' },
  { method: 'POST', route: '/y', path: '/x?', status: 200, ms: 1, sessionId: 's', ip: '::2', userAgent: 'b' },
  { method: 'POST', route: '/y', path: '/x?', status: 200, ms: 1, activityId: 'a', ip: '::2', userAgent: undefined },
  { method: 'POST', route: '/y', path: '/x?', status: 200, ms: 1, ip: '::2', userAgent: undefined },
  { method: 'GET', route: '/api/v1/session', path: '/api/v1/session', status: 200, ms: 0.4, requestId: 'r-1', correlationId: 'c-1', ip: '127.0.0.1' },
  { method: 'GET', route: '/api/v1/session', path: '/api/v1/session', status: 200, ms: 0.5, requestId: 'r-3', correlationId: 'c-3', ip: '127.0.0.1' },
  // Durations written from their tenths (jsonMs), and the numbers that are not such.
  ...[0, -0, 0.1, 0.3, 9.9, 10, 99.9, 100.1, 12345.6, 99999999.9, 1e8, 1.25, 0.05, -1, -0.5, 1e9, 123456789.1, 1e21, 1.5e-7, Infinity, -Infinity].map(
    (ms): RequestLine => ({ method: 'GET', route: '/x', path: '/x', status: 200, ms, ip: '::1' }),
  ),
];

describe('request lines', () => {
  it('are byte for byte what pino writes for the same fields', () => {
    const fast = capture();
    const slow = capture();
    const write = requestLineWriter(fast.logger);
    for (const line of LINES) {
      write(line);
      slow.logger.info(line, 'request');
    }
    expect(fast.lines).toHaveLength(LINES.length);
    expect(fast.lines).toEqual(slow.lines);
    for (const l of fast.lines) expect(JSON.parse(l)).toMatchObject({ level: 30, service: 'tessera', msg: 'request' });
  });

  it('follow the logger level as it changes', () => {
    const { lines, logger } = capture();
    const write = requestLineWriter(logger);
    logger.level = 'warn';
    write(LINES[0] as RequestLine);
    expect(lines).toHaveLength(0);
    logger.level = 'info';
    write(LINES[0] as RequestLine);
    expect(lines).toHaveLength(1);
  });

  it('go through pino itself where the logger transforms lines (mixin, formatter, message key)', () => {
    for (const opts of [
      { mixin: () => ({ extra: 1 }) },
      { formatters: { log: (o: Record<string, unknown>) => ({ ...o, formatted: true }) } },
      { messageKey: 'message' },
      { serializers: { path: () => '[path]' } },
    ] as pino.LoggerOptions[]) {
      const fast = capture(opts);
      const slow = capture(opts);
      requestLineWriter(fast.logger)(LINES[1] as RequestLine);
      slow.logger.info(LINES[1], 'request');
      expect(fast.lines).toEqual(slow.lines);
    }
  });
});

describe('the duration', () => {
  it('is the text JSON gives any number (property)', () => {
    const tenths = fc.integer({ min: -2e9, max: 2e9 }).map((t) => t / 10);
    fc.assert(
      fc.property(fc.oneof(tenths, fc.double(), fc.integer()), (ms) => {
        expect(jsonMs(ms)).toBe(JSON.stringify(ms));
      }),
      { numRuns: 20_000 },
    );
  });

  it('is the text JSON gives every duration app.ts writes up to a day (rounded to 0.1 ms)', () => {
    for (let t = 0; t <= 864_000_000; t += t < 100_000 ? 1 : 997) {
      const ms = Math.round((t / 10) * 10) / 10;
      if (jsonMs(ms) !== JSON.stringify(ms)) expect(jsonMs(ms)).toBe(JSON.stringify(ms));
    }
  });
});

describe('the logged path', () => {
  it('is the URL up to its first "?", as before (never the query string)', async () => {
    const { pathOf } = await import('../../src/http/app.ts');
    for (const url of ['/api/v1/session', '/a?b=c', '/a?b?c', '?x', '/', '', '/a/b?', '/%3F?token=secret']) {
      expect(pathOf(url)).toBe(url.split('?')[0]);
    }
  });
});
