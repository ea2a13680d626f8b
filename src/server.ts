// Starts Tessera: configuration → secrets → store → runtime (src/runtime.ts) → HTTP app →
// runtime.start → listen. Stopping is the runtime's `stop`: drain, close the listener, stop the
// background work and the feeds, close the store, flush the log.

import { pino, type Logger } from 'pino';
import type { Config } from './config/config.ts';
import { systemClock, type Clock } from './domain/clock.ts';
import type { EventBus } from './events/bus.ts';
import { buildApp } from './http/app.ts';
import { settleListenerArraySite } from './http/listener-site.ts';
import type { App, Deps } from './http/deps.ts';
import type { Sweeper } from './sessions/expiry-sweeper.ts';
import { adminTokenHashOf, createRuntime, serverSecretOf, type Runtime } from './runtime.ts';
import type { Coordination } from './store/coordination-port.ts';
import { openStore } from './store/open.ts';
import type { SessionStore } from './store/port.ts';

export interface RunningServer {
  app: App;
  deps: Deps;
  bus: EventBus;
  sweeper: Sweeper;
  /** The address actually bound, e.g. http://127.0.0.1:8080 */
  url: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  logger?: Logger;
  /** Use this store instead of opening the configured one (tests). Closed on stop. */
  store?: SessionStore & Coordination;
}

/** pino's isoTime, formatted once per millisecond rather than once per line. */
let lastLogMs = -1;
let lastLogTime = '';
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== lastLogMs) {
    lastLogMs = now;
    lastLogTime = `,"time":"${new Date(now).toISOString()}"`;
  }
  return lastLogTime;
}

/** How long a log line may wait in the buffer before it is written. */
const LOG_FLUSH_MS = 100;

/** The part of pino's SonicBoom destination the batcher uses. */
interface Destination {
  write(chunk: string): boolean;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

/** Characters of log lines collected before they are handed to the destination in one piece. */
const LOG_HANDOVER_CHARS = 16 * 1024;

/**
 * Log lines appended to one string and handed to the destination in pieces of about 16 KiB (or
 * when the LOG_FLUSH_MS timer, a flush or the exit comes first): each destination write costs
 * more than a line (SonicBoom measures its whole pending buffer on every write, and every
 * piece it writes is one write(2) on libuv's thread pool and a callback back on the event
 * loop). Every line goes through here, so their order is kept.
 */
class LineBatcher implements Destination {
  #pending = '';
  readonly #dest: Destination;
  constructor(dest: Destination) {
    this.#dest = dest;
    batchers.add(this);
  }
  write(chunk: string): boolean {
    this.#pending += chunk;
    if (this.#pending.length >= LOG_HANDOVER_CHARS) this.drain();
    return true;
  }
  readonly drain = (): void => {
    if (this.#pending === '') return;
    const lines = this.#pending;
    this.#pending = '';
    this.#dest.write(lines);
  };
  flush(cb?: (err?: Error) => void): void {
    this.drain();
    this.#dest.flush(cb);
  }
  flushSync(): void {
    this.drain();
    this.#dest.flushSync();
  }
}
const batchers = new Set<LineBatcher>();
process.once('exit', () => {
  for (const b of batchers) {
    try {
      b.flushSync();
    } catch {
      // The destination is gone (closed pipe): nothing more can be written.
    }
  }
});

/** `dest`: a file descriptor or path for the lines (standard output by default). */
export function createLogger(config: Pick<Config, 'logLevel'>, dest: number | string = 1): Logger {
  // Buffered, asynchronous writes: one write(2) per ~16 KiB of lines (or every LOG_FLUSH_MS)
  // instead of one per request line — that write was a tenth of the session check's CPU time
  // (docs/performance.md) — the lines collected by LineBatcher and handed over in one piece.
  // pino flushes the buffer synchronously when the process exits and stop() flushes it too, so
  // only a crash can lose lines: at most the last 100 ms of them.
  const sonic = pino.destination({ dest, sync: false, minLength: 4096 });
  const destination = new LineBatcher(sonic);
  setInterval(() => {
    try {
      destination.flush();
    } catch {
      // Nothing buffered, or a write already under way: the next tick writes it.
    }
  }, LOG_FLUSH_MS).unref();
  return pino(
    {
      level: config.logLevel,
      base: { service: 'tessera' },
      timestamp: isoTimeOncePerMs,
      // Belt and braces: request logging never passes these, but nothing else may either.
      redact: {
        paths: ['*.authorization', '*.cookie', '*.password', '*.refreshToken', '*.token', '*.secret'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  // First, before anything makes emitters: V8 must never tenure events.js's listener arrays
  // (src/http/listener-site.ts).
  settleListenerArraySite();
  const log = opts.logger ?? createLogger(config);
  const clock = opts.clock ?? systemClock;
  const cookieSecret = serverSecretOf(config, log);
  const adminTokenHash = adminTokenHashOf(config, log);

  const store = opts.store ?? (await openStore(config));
  let runtime: Runtime;
  try {
    runtime = await createRuntime({ ...config, cookieSecret }, store, clock, { adminTokenHash, processMetrics: true, log });
  } catch (err) {
    await store.close();
    throw err;
  }
  let app: App;
  let address: string;
  try {
    app = await buildApp(runtime.deps, { logger: log });
    runtime.serve(app);
    await runtime.start();
    address = await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await runtime.stop();
    throw err;
  }
  log.info({ address, store: store.kind }, 'tessera listening');
  if (config.devAllowHttpLoopback) log.warn('TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1: plain-HTTP loopback identity providers and SSO redirect URIs are allowed (development only)');

  return {
    app,
    deps: runtime.deps,
    bus: runtime.deps.bus,
    sweeper: runtime.sweeper as Sweeper,
    url: address,
    // The shutdown order lives in the runtime (src/runtime.ts `stop`): drain, listener,
    // background work, feeds, store, log.
    stop: () => runtime.stop(),
  };
}
