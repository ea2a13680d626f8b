// The audit chain's canonical text: what every stored record's hash was computed over must stay
// the same text, or chains already stored stop verifying. canonicalJson and hashOf's member-by-
// member writer (contentJson) are compared with the straightforward definition they replaced, on
// many generated values and records — stored ones with missing or odd members among them — and
// two records' hashes are pinned to the values the earlier code gave.

import { hash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, chainRecord, contentJson, genesisHash, hashOf, type AuditEventInput, type AuditRecord } from '../../src/domain/audit-chain.ts';

/** canonicalJson as first written: filtered, sorted, mapped and joined. */
function referenceCanonical(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null';
    const s = JSON.stringify(value);
    return s === undefined ? 'null' : s;
  }
  if (Array.isArray(value)) return `[${value.map((v) => referenceCanonical(v === undefined ? null : v)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${referenceCanonical(obj[k])}`).join(',')}}`;
}

/** hashOf as first written: the content object built, then canonicalJson of it. */
function referenceContent(r: Omit<AuditRecord, 'id' | 'hash'>): string {
  return referenceCanonical({
    seq: r.seq,
    tenantId: r.tenantId,
    time: r.time,
    type: r.type,
    userId: r.userId,
    sessionId: r.sessionId,
    kind: r.kind,
    headers: r.headers,
    ip: r.ip,
    userAgent: r.userAgent,
    location: r.location,
    details: r.details,
    prevHash: r.prevHash,
  });
}

/** Any value a record member may hold once read back: JSON, odd numbers, undefined members. */
const member = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue() },
  { weight: 1, arbitrary: fc.constantFrom(undefined, Number.NaN, Number.POSITIVE_INFINITY, -0, '', 'ü\u0000"\\\u2028') },
  { weight: 1, arbitrary: fc.dictionary(fc.string(), fc.option(fc.jsonValue(), { nil: undefined })) },
  { weight: 1, arbitrary: fc.array(fc.option(fc.jsonValue(), { nil: undefined })) },
);

const RECORD_KEYS = ['seq', 'tenantId', 'time', 'type', 'userId', 'sessionId', 'kind', 'headers', 'ip', 'userAgent', 'location', 'details', 'prevHash'] as const;

/** A record as a store could hand it back: any member missing, odd, or well formed. */
const storedRecord = fc.record(Object.fromEntries(RECORD_KEYS.map((k) => [k, member])), { requiredKeys: [] }) as unknown as fc.Arbitrary<Omit<AuditRecord, 'id' | 'hash'>>;

const input = (over: Partial<AuditEventInput> = {}): AuditEventInput => ({
  time: 1796625289895,
  tenantId: 'acme',
  type: 'session.refreshed',
  userId: 'u_0123456789abcdef',
  sessionId: 'abcdefghijkl.abcdefghijklmnopqrstuv',
  kind: 'app',
  headers: { requestId: 'req-1', correlationId: 'corr-1', activityId: null, tenantId: 'acme', sessionId: null },
  ip: '203.0.113.7',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Tessera-Test/1.0 — ünïcode',
  location: { country: 'DE', city: 'Berlin' } as AuditEventInput['location'],
  details: { z: 1, a: [1, 'two', { y: null, b: true }], é: 'x' },
  ...over,
});

describe('audit chain canonical text', () => {
  it('canonicalJson gives the text of its first definition for any value', () => {
    fc.assert(
      fc.property(fc.oneof(member, fc.anything()), (v) => {
        expect(canonicalJson(v)).toBe(referenceCanonical(v));
      }),
      { numRuns: 2000 },
    );
  });

  it('a record hashes over the same text as before, whatever its members hold', () => {
    fc.assert(
      fc.property(storedRecord, (r) => {
        expect(contentJson(r)).toBe(referenceContent(r));
        expect(hashOf(r)).toBe(hash('sha256', referenceContent(r), 'hex'));
      }),
      { numRuns: 2000 },
    );
  });

  it('records made by chainRecord hash as before (many generated inputs)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.option(fc.string(), { nil: null }), fc.dictionary(fc.string(), fc.jsonValue()), fc.integer({ min: 0, max: 1e6 }), (tenantId, type, ip, details, seq) => {
        const head = seq === 0 ? null : { seq, hash: 'f'.repeat(64) };
        const r = chainRecord(head, input({ tenantId, type, ip, details }));
        expect(r.hash).toBe(hash('sha256', referenceContent(r), 'hex'));
      }),
      { numRuns: 1000 },
    );
  });

  it('records of scalar members, no location and flat details (the one-stringify path of chainRecord) hash as before', () => {
    // Members a caller may pass, well formed or odd: the path must give canonicalJson's text for
    // every one it takes, and leave the others to contentJson.
    const scalar = fc.oneof(fc.string(), fc.constant(null), fc.double(), fc.integer(), fc.boolean(), fc.constantFrom(undefined, -0, Number.NaN, 'ü\u0000"\\\u2028'));
    const key = fc.oneof(fc.string(), fc.constantFrom('10', '9', '0', '01', '-1', '__proto__', 'toString', 'é', 'B', 'a'));
    const details = fc.oneof(
      { weight: 3, arbitrary: fc.dictionary(key, scalar) },
      { weight: 1, arbitrary: fc.dictionary(key, fc.jsonValue()) },
      { weight: 1, arbitrary: fc.constant({}) },
    );
    const headers = fc.record({ requestId: scalar, correlationId: scalar, activityId: scalar, tenantId: scalar, sessionId: scalar }, { requiredKeys: [] });
    fc.assert(
      fc.property(
        fc.record({ tenantId: fc.string(), type: fc.string(), userId: scalar, sessionId: scalar, kind: scalar, ip: scalar, userAgent: scalar, time: scalar }),
        headers,
        details,
        fc.option(fc.constant({ country: 'DE', city: 'Berlin' }), { nil: null }),
        fc.integer({ min: 0, max: 1e6 }),
        (members, h, d, location, seq) => {
          const head = seq === 0 ? null : { seq, hash: 'e'.repeat(64) };
          const r = chainRecord(head, { ...input(), ...members, headers: h, details: d, location } as AuditEventInput);
          expect(r.hash).toBe(hash('sha256', referenceContent(r), 'hex'));
          expect(hashOf(r)).toBe(r.hash);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('keeps the hashes the earlier code gave to records without location (the one-stringify path)', () => {
    // Computed with the code before that path, from exactly these inputs.
    const a = chainRecord(null, input({ location: null, details: {} }));
    expect(a.hash).toBe('6cdd8d2c648c64c810ff38c675e8ab86feb133c57cdc3bee1eef453d60a7133c');
    const b = chainRecord({ seq: a.seq, hash: a.hash }, input({ location: null, type: 'session.revoked', details: { reason: 'logout', n: 2, ok: true, '10': 'x', '9': null } }));
    expect(b.hash).toBe('d422e445f609ceb3672290c28e610f7b2167f71970a7e02b5ba4f5085aaa9881');
    const c = chainRecord({ seq: b.seq, hash: b.hash }, input({ location: null, details: { reason: 'logout', z: 'ü\u2028"', a: -0 } }));
    expect(c.hash).toBe('d21f561a2de6a936bf2c6651f7dff24d246053f49debc86fb1b730adc7e31984');
  });

  it('keeps the hashes the earlier code gave (chains already stored still verify)', () => {
    // Computed with the code before contentJson, from exactly these inputs.
    const first = chainRecord(null, input());
    expect(first.prevHash).toBe(genesisHash('acme'));
    expect(genesisHash('acme')).toBe('227c4aca2965e47f7fd08be58c788b46f0fa184f17053fbd3161b1da5f0a84ec');
    expect(first.hash).toBe('52819d088a4c084bc8d2f3059e7e57bae72f7cce6de06f6dbaa898cec45b5d37');
    const second = chainRecord({ seq: first.seq, hash: first.hash }, input({ type: 'session.revoked', details: { reason: 'logout' } }));
    expect(second.hash).toBe('11a59721a78c615e3056c3cb50757bbd73f4d8b2e98442da3033a1cb823946dc');
  });

  it('a changed member changes the hash', () => {
    const r = chainRecord(null, input());
    for (const k of RECORD_KEYS) {
      const changed = { ...r, [k]: k === 'headers' ? { ...r.headers, requestId: 'other' } : k === 'details' ? { z: 2 } : k === 'location' ? null : k === 'seq' || k === 'time' ? 7 : 'other' };
      expect(hashOf(changed), k).not.toBe(r.hash);
    }
  });
});
