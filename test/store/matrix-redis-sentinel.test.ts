// The conformance matrix on one target (test/store/targets.ts): every suite on 'redis-sentinel',
// and what only Sentinel has.

import { describe, expect, it, vi } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import { describeMatrix } from './targets.ts';

await describeMatrix('redis-sentinel', (target) => {
  describe('Redis store through Sentinel: what the suite does not cover', () => {
    it('says it is redis-sentinel and delivers session ends to another process', async () => {
      const { a, b, close } = await target.openPair('sentinel-feed');
      const heard: string[] = [];
      const sub = await b.subscribeSessionEnds(
        (h) => heard.push(...h),
        () => undefined,
      );
      try {
        expect(a.kind).toBe('redis-sentinel');
        const s = issueSession({ tenantId: 't-s', userId: 'u-s', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, Date.now()).session;
        expect((await a.createSession(s, s.createdAt)).ok).toBe(true);
        await a.revokeSession(s.handle, 'logout', s.createdAt + 1);
        await vi.waitFor(() => expect(heard).toContain(s.handle), { timeout: 15_000, interval: 20 });
      } finally {
        await sub.close();
        await close();
      }
    });
  });
});
