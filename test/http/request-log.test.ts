// The request line's fast path (src/http/request-log.ts) writes exactly what
// `logger.info(fields, 'request')` would, and falls back to that call for loggers it cannot
// mirror.

import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { ManualClock } from '../../src/domain/clock.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import { buildApp } from '../../src/http/app.ts';
import { jsonMs, requestLineWriter, type RequestLine } from '../../src/http/request-log.ts';
import { createRuntime } from '../../src/runtime.ts';
import { openStore } from '../../src/store/open.ts';
import { ADMIN_TOKEN, COOKIE_SECRET } from '../support/harness.ts';

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

describe('an app', () => {
  /** An app on an in-memory SQLite store, with `logger` (or none, as tests build theirs). */
  async function app(logger?: pino.Logger) {
    const config = loadConfig({ TESSERA_STORE: 'sqlite::memory:', COOKIE_SECRET_SIGN_KEY: COOKIE_SECRET, TESSERA_ADMIN_TOKEN: ADMIN_TOKEN, TESSERA_SWEEP_INTERVAL_MS: '3600000' });
    const store = await openStore(config);
    const runtime = await createRuntime({ ...config, cookieSecret: COOKIE_SECRET }, store, new ManualClock(), { adminTokenHash: hashSecret(ADMIN_TOKEN) });
    const built = await buildApp(runtime.deps, logger ? { logger } : {});
    runtime.serve(built);
    return { app: built, stop: () => runtime.stop() };
  }
  const count = (metrics: string, route: string, status: number) =>
    metrics.split('\n').find((l) => l.startsWith(`tessera_http_request_duration_seconds_count{method="POST",route="${route}",status="${status}"}`));

  it('writes one request line per answer once it is out, and counts it in the latency histogram', async () => {
    const written: string[] = [];
    const { app: a, stop } = await app(pino({ level: 'info', base: { service: 'tessera' } }, { write: (l: string) => void written.push(l) }));
    try {
      const requests = [
        { method: 'POST', url: '/api/v1/auth/token/refresh?secret=1', payload: { refreshToken: 'x'.repeat(43) }, status: 401, route: '/api/v1/auth/token/refresh' },
        { method: 'POST', url: '/api/v1/auth/token/refresh', payload: { other: 1 }, status: 400, route: '/api/v1/auth/token/refresh' },
        { method: 'POST', url: '/api/v1/sso/token', payload: { token: 't' }, status: 401, route: '/api/v1/sso/token' },
        { method: 'POST', url: '/nowhere', payload: {}, status: 404, route: 'unmatched' },
      ] as const;
      for (const r of requests) {
        const res = await a.inject({ method: r.method, url: r.url, payload: r.payload, headers: { 'user-agent': 'probe/1', 'x-correlation-id': 'corr-1' } });
        expect(res.statusCode).toBe(r.status);
        const lines = written.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'request');
        expect(lines).toHaveLength(requests.indexOf(r) + 1);
        const line = lines.at(-1) as Record<string, unknown>;
        expect(line).toMatchObject({
          level: 30,
          service: 'tessera',
          method: 'POST',
          route: r.route,
          path: r.url.split('?')[0],
          status: r.status,
          requestId: res.headers['x-request-id'],
          correlationId: 'corr-1',
          ip: '127.0.0.1',
          userAgent: 'probe/1',
        });
        expect(typeof line.ms).toBe('number');
      }
      const metrics = (await a.inject({ url: '/metrics' })).body;
      expect(count(metrics, '/api/v1/auth/token/refresh', 401)).toMatch(/ 1$/);
      expect(count(metrics, '/api/v1/auth/token/refresh', 400)).toMatch(/ 1$/);
      expect(count(metrics, '/api/v1/sso/token', 401)).toMatch(/ 1$/);
      expect(count(metrics, 'unmatched', 404)).toMatch(/ 1$/);
    } finally {
      await stop();
    }
  });

  /**
   * Two refresh requests answered 401 through a real socket (the after-response step runs in the
   * response's `finish` listener there), then a moment for the listeners to run.
   */
  async function twoRefusedRefreshes(a: Awaited<ReturnType<typeof app>>['app']) {
    const base = await a.listen({ port: 0, host: '127.0.0.1' });
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}/api/v1/auth/token/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: 'x'.repeat(43) }) });
      expect(res.status).toBe(401);
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  it('keeps serving when the after-response step throws (it runs in the response\'s finish listener): the error is logged', async () => {
    // The request line's write fails once, as a broken log destination would; before, an
    // onResponse hook's runner caught that, and a log controller's requestCompleted must too, or
    // the throw is uncaught (vitest fails the run on it, and a real process ends).
    const written: string[] = [];
    let failOnce = true;
    const stream = {
      write: (l: string) => {
        if (failOnce && l.includes('"msg":"request"')) {
          failOnce = false;
          throw new Error('log destination broken');
        }
        written.push(l);
      },
    };
    const { app: a, stop } = await app(pino({ level: 'info', base: { service: 'tessera' } }, stream));
    try {
      await twoRefusedRefreshes(a);
      const lines = written.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.filter((l) => l.msg === 'the after-response step (metrics, request line) failed')).toHaveLength(1);
      expect(lines.find((l) => l.msg === 'the after-response step (metrics, request line) failed')).toMatchObject({ level: 50, err: { message: 'log destination broken' } });
      // The second answer's line is written as usual.
      expect(lines.filter((l) => l.msg === 'request')).toHaveLength(1);
    } finally {
      await stop();
    }
  });

  it('keeps serving when the log destination fails for the request line and for the error line about it', async () => {
    let attempts = 0;
    const stream = {
      write: (l: string) => {
        if (!l.includes('"msg":"request"') && !l.includes('after-response step')) return;
        attempts += 1;
        throw new Error('log destination gone');
      },
    };
    const { app: a, stop } = await app(pino({ level: 'info', base: { service: 'tessera' } }, stream));
    try {
      await twoRefusedRefreshes(a);
      // Each answer tried its request line and then the error line: both threw, neither escaped.
      expect(attempts).toBeGreaterThanOrEqual(4);
    } finally {
      await stop();
    }
  });

  it('built without a logger still counts every answer', async () => {
    const { app: a, stop } = await app();
    try {
      for (let i = 0; i < 3; i++) {
        expect((await a.inject({ method: 'POST', url: '/api/v1/auth/token/refresh', payload: { refreshToken: 'x'.repeat(43) } })).statusCode).toBe(401);
      }
      expect(count((await a.inject({ url: '/metrics' })).body, '/api/v1/auth/token/refresh', 401)).toMatch(/ 3$/);
    } finally {
      await stop();
    }
  });
});
