// The Redis adapter's compact User-Agent form (src/store/redis/codec.ts): lossless for any string,
// and its one-pass expansion the same as expanding the phrases one after another (the stored
// format: values written by any earlier release read back unchanged).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import { packUserAgent, refreshTokenFromReply, refreshTokenToFields, sessionFromReply, sessionToFields, unpackUserAgent } from '../../src/store/redis/codec.ts';
import type { RefreshToken } from '../../src/store/port.ts';

/** The stored format's table (codec.ts UA_PHRASES), code and phrase, in its order. */
const TABLE: ReadonlyArray<readonly [string, string]> = [
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
const PHRASES = TABLE.map(([, phrase]) => phrase);

/** The expansion as it was written before (one split/join per phrase, in table order). */
function unpackPhraseByPhrase(stored: string): string {
  if (stored.startsWith('\u0000')) return stored.slice(1);
  let out = stored;
  for (const [code, phrase] of TABLE) out = out.split(code).join(phrase);
  return out;
}

describe('the compact User-Agent form', () => {
  it('expands each code into its phrase', () => {
    for (const [code, phrase] of TABLE) expect(unpackUserAgent(`a${code}b`)).toBe(`a${phrase}b`);
  });

  it('round-trips real User-Agents and any string, control characters included', () => {
    const real = [
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
      'Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0',
      'curl/8.5.0',
      'tab\there',
      '',
    ];
    for (const ua of real) expect(unpackUserAgent(packUserAgent(ua))).toBe(ua);
    const pieces = fc.oneof(fc.constantFrom(...PHRASES), fc.string(), fc.constantFrom('\u0000', '\u0001', '\t', '\u001f'));
    fc.assert(fc.property(fc.array(pieces, { maxLength: 8 }), (parts) => unpackUserAgent(packUserAgent(parts.join(''))) === parts.join('')));
  });

  it('expands stored values exactly as the phrase-by-phrase expansion did', () => {
    const stored = fc.array(fc.oneof(fc.constantFrom(...TABLE.map(([code]) => code)), fc.string(), fc.constantFrom('\t', '\n', '\r', '\u0014', '\u001f')), { maxLength: 10 });
    fc.assert(fc.property(stored, (parts) => unpackUserAgent(parts.join('')) === unpackPhraseByPhrase(parts.join(''))));
    expect(unpackUserAgent('\u0000\u0001raw')).toBe('\u0001raw');
  });
});

describe('a session from its name/value reply', () => {
  const session = {
    ...issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'oidc', device: { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) x', ip: '10.0.0.1', location: { country: 'CH' } } }, 1_700_000_000_000).session,
    data: { mode: 'token', nested: { a: [1, {}] } },
  };

  it('reads back what sessionToFields wrote, in any field order', () => {
    const fields = sessionToFields(session);
    expect(sessionFromReply(fields)).toStrictEqual(session);
    const pairs = Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]).reverse();
    expect(sessionFromReply(pairs.flat())).toStrictEqual(session);
  });

  it('keeps the last value of a name given twice; null without handle or status; throws without another required field', () => {
    expect(sessionFromReply([...sessionToFields(session), 'status', 'revoked', 'd:mode', '"cookie"'])).toMatchObject({ status: 'revoked', data: { mode: 'cookie' } });
    const without = (name: string) => {
      const f = sessionToFields(session);
      const i = f.indexOf(name);
      f.splice(i, 2);
      return f;
    };
    expect(sessionFromReply(without('handle'))).toBeNull();
    expect(sessionFromReply(without('status'))).toBeNull();
    expect(sessionFromReply([])).toBeNull();
    expect(() => sessionFromReply(without('tenantId'))).toThrow('stored record lacks the field "tenantId"');
    expect(() => sessionFromReply(without('absoluteExpiresAt'))).toThrow('"absoluteExpiresAt"');
  });

  it('keeps data keys that name Object.prototype members as own properties, as JSON.parse would', () => {
    const data = JSON.parse('{"__proto__":{"polluted":1},"constructor":"c","toString":2,"hasOwnProperty":null,"mode":"token"}') as Record<string, unknown>;
    const read = sessionFromReply(sessionToFields({ ...session, data }));
    expect(read?.data).toStrictEqual(data);
    expect(Object.getPrototypeOf(read?.data)).toBe(Object.prototype);
    expect(Object.keys(read?.data ?? {})).toEqual(Object.keys(data));
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('reads a layout-1 record whose device is one JSON field', () => {
    const f = sessionToFields({ ...session, device: {} });
    expect(sessionFromReply([...f, 'device', JSON.stringify(session.device)])?.device).toStrictEqual(session.device);
  });
});

/** refreshTokenFromReply as first written: the reply as a Map, read back. */
function referenceToken(reply: unknown): RefreshToken | null {
  if (!Array.isArray(reply) || reply.length === 0) return null;
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) m.set(String(reply[i]), String(reply[i + 1]));
  if (!m.has('tokenHash')) return null;
  const str = (f: string) => {
    const v = m.get(f);
    if (v === undefined) throw new Error(`stored record lacks the field "${f}"`);
    return v;
  };
  return {
    tokenHash: str('tokenHash'),
    sessionHandle: str('sessionHandle'),
    tenantId: str('tenantId'),
    userId: str('userId'),
    createdAt: Number(str('createdAt')),
    rotatedAt: m.get('rotatedAt') === undefined ? null : Number(m.get('rotatedAt')),
    successorHash: m.get('successorHash') ?? null,
  };
}

describe('a refresh token from its name/value reply', () => {
  const token: RefreshToken = { tokenHash: 'th', sessionHandle: 'abcdefghijkl.abcdefghijklmnopqrstuv', tenantId: 't', userId: 'u', createdAt: 1_700_000_000_000, rotatedAt: 1_700_000_001_000, successorHash: 'sh' };

  it('reads back what refreshTokenToFields wrote, in any field order', () => {
    for (const t of [token, { ...token, rotatedAt: null, successorHash: null }]) {
      const fields = refreshTokenToFields(t);
      expect(refreshTokenFromReply(fields)).toStrictEqual(t);
      const pairs = Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]).reverse();
      expect(refreshTokenFromReply(pairs.flat())).toStrictEqual(t);
    }
  });

  it('decodes any reply as the map-based definition did: last value of a repeated name, null without tokenHash, the same error without another field', () => {
    const name = fc.constantFrom('tokenHash', 'sessionHandle', 'tenantId', 'userId', 'createdAt', 'rotatedAt', 'successorHash', 'other', '');
    const value = fc.oneof(fc.string(), fc.integer().map(String), fc.constant('1700000000000'));
    const reply = fc.oneof(
      fc.array(fc.tuple(name, value), { maxLength: 12 }).map((pairs) => pairs.flat()),
      fc.constant(refreshTokenToFields(token)).chain((f) => fc.subarray(f.map((v, i) => [i, v] as const)).map((sub) => sub.map(([, v]) => v))),
      fc.constantFrom(null, 'x', [], ['tokenHash']),
    );
    fc.assert(
      fc.property(reply, (r) => {
        let expected: RefreshToken | null | Error;
        try {
          expected = referenceToken(r);
        } catch (err) {
          expected = err as Error;
        }
        if (expected instanceof Error) expect(() => refreshTokenFromReply(r)).toThrow(expected.message);
        else expect(refreshTokenFromReply(r)).toStrictEqual(expected);
      }),
      { numRuns: 3000 },
    );
  });
});
