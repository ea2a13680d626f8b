// One LISTEN connection per store instance, shared by the feed of session ends and the audit
// feed, opened by the first subscriber and closed with the last.
//
// While it is down, notifications are lost: every subscriber's `onReset('down')` is called when
// it goes down and `onReset('up')` once it listens again; in between `isLive()` is false and the
// session cache answers nothing from memory (strict reads) until the feed is back.

import type { FeedChange } from '../coordination-port.ts';
import type { ListenHandle, PgDriver } from './driver.ts';

interface Subscriber {
  channel: string;
  onNotify(payload: string): void;
  onReset(change: FeedChange): void;
}

export class NotifyFeed {
  readonly #driver: PgDriver;
  readonly #channels: readonly string[];
  readonly #subscribers = new Set<Subscriber>();
  #handle: Promise<ListenHandle> | null = null;

  constructor(driver: PgDriver, channels: readonly string[]) {
    this.#driver = driver;
    this.#channels = channels;
  }

  async subscribe(
    channel: string,
    onNotify: (payload: string) => void,
    onReset: (change: FeedChange) => void,
  ): Promise<{ close(): Promise<void>; isLive(): boolean }> {
    const sub: Subscriber = { channel, onNotify, onReset };
    this.#handle ??= this.#driver.listen(this.#channels, {
      onNotify: (ch, payload) => {
        for (const s of this.#subscribers) {
          if (s.channel !== ch) continue;
          try {
            s.onNotify(payload);
          } catch {
            // a failing listener must not stop the feed
          }
        }
      },
      onState: (up) => {
        for (const s of this.#subscribers) {
          try {
            s.onReset(up ? 'up' : 'down');
          } catch {
            // as above
          }
        }
      },
    });
    let handle: ListenHandle;
    try {
      handle = await this.#handle;
    } catch (err) {
      if (this.#subscribers.size === 0) this.#handle = null;
      throw err;
    }
    this.#subscribers.add(sub);
    return {
      isLive: () => handle.isLive(),
      close: async () => {
        if (!this.#subscribers.delete(sub) || this.#subscribers.size > 0) return;
        this.#handle = null;
        await handle.close();
      },
    };
  }
}
