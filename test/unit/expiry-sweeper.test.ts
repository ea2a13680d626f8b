import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/domain/clock.ts';
import { issueSession } from '../../src/domain/session.ts';
import { EventBus, type TesseraEvent } from '../../src/events/bus.ts';
import { startExpirySweeper, type Sweeper } from '../../src/sessions/expiry-sweeper.ts';
import { openTestStore } from '../support/harness.ts';

let sweeper: Sweeper | undefined;
let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await sweeper?.stop();
  await cleanup?.();
});

describe('the expiry sweeper', () => {
  it('emits session.expired once per session, by itself, when the clock passes the expiry', async () => {
    const opened = await openTestStore('sqlite');
    cleanup = async () => {
      await opened.store.close();
      await opened.cleanup();
    };
    const clock = new ManualClock(Date.now());
    const bus = new EventBus();
    const events: TesseraEvent[] = [];
    bus.subscribe((e) => events.push(e));
    sweeper = startExpirySweeper(opened.store, bus, clock, 3_600_000, () => {});

    const mk = (idle: number) =>
      issueSession({ tenantId: 't', userId: 'u', kind: 'app', lifetime: { idle, absolute: 3600 }, authMethod: 'password' }, clock.now()).session;
    const short = mk(60);
    const long = mk(600);
    await opened.store.createSession(short, clock.now());
    await opened.store.createSession(long, clock.now());

    expect(await sweeper.sweepOnce()).toBe(0);
    clock.advance(61_000);
    expect(await sweeper.sweepOnce()).toBe(1);
    expect(await sweeper.sweepOnce()).toBe(0);
    expect(events.map((e) => [e.type, e.sessionHandle])).toEqual([['session.expired', short.handle]]);
    expect((await opened.store.getSessionByHandle(short.handle))?.status).toBe('expired');
    expect((await opened.store.getSessionByHandle(long.handle))?.status).toBe('active');
  });
});
