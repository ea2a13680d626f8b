// Starts Tessera: configuration → secrets → store → HTTP app → sweeper, and stops it gracefully
// (stop accepting, finish in-flight requests, stop the sweeper, close the store).

import { pino, type Logger } from 'pino';
import type { Config } from './config/config.ts';
import { loadOrCreateSecret } from './config/secrets-on-disk.ts';
import { systemClock, type Clock } from './domain/clock.ts';
import { hashSecret } from './domain/secrets.ts';
import type { EventBus } from './events/bus.ts';
import { buildApp } from './http/app.ts';
import type { App, Deps } from './http/deps.ts';
import { startExpirySweeper, type Sweeper } from './sessions/expiry-sweeper.ts';
import { startBankWorker } from './flows/consent-lifecycle.ts';
import { createRuntime } from './runtime.ts';
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

/**
 * Log lines appended to one string and handed to the destination once per turn of the event
 * loop: under load a turn answers dozens of requests, and each destination write costs more than
 * the line itself (SonicBoom measures its whole pending buffer on every write). Every line goes
 * through here, so their order is kept. Lines of the turn under way are handed over at exit too.
 */
class TurnBatcher implements Destination {
  #pending = '';
  #scheduled = false;
  readonly #dest: Destination;
  constructor(dest: Destination) {
    this.#dest = dest;
    batchers.add(this);
  }
  write(chunk: string): boolean {
    this.#pending += chunk;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.drain);
    }
    return true;
  }
  readonly drain = (): void => {
    this.#scheduled = false;
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
const batchers = new Set<TurnBatcher>();
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
  // Buffered, asynchronous writes: one write(2) per 4 KiB of lines (or every LOG_FLUSH_MS)
  // instead of one per request line — that write was a tenth of the session check's CPU time
  // (docs/performance.md) — and lines handed to the buffer once per event-loop turn
  // (TurnBatcher). pino flushes the buffer synchronously when the process exits and stop()
  // flushes it too, so only a crash can lose lines: at most the last 100 ms of them.
  const sonic = pino.destination({ dest, sync: false, minLength: 4096 });
  const destination = new TurnBatcher(sonic);
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
  const log = opts.logger ?? createLogger(config);
  const clock = opts.clock ?? systemClock;
  const embedded = config.store.kind === 'sqlite';

  let cookieSecret = config.cookieSecret;
  if (cookieSecret === null) {
    // Only reachable in embedded mode: config refuses a Redis store without the variable.
    const s = loadOrCreateSecret(config.dataDir, 'cookie-secret');
    cookieSecret = s.value;
    log.info({ path: s.path, created: s.created }, 'cookie signing key loaded from the data folder');
  }

  let adminTokenHash: string | null = config.adminToken === null ? null : hashSecret(config.adminToken);
  if (adminTokenHash === null && embedded) {
    const s = loadOrCreateSecret(config.dataDir, 'admin-token');
    adminTokenHash = hashSecret(s.value);
    log.info(
      { path: s.path, created: s.created },
      `bootstrap admin credential is in ${s.path} (mode 0600); use it as "Authorization: Bearer <contents>"`,
    );
  }

  const store = opts.store ?? (await openStore(config));
  let deps: Deps;
  let app: App;
  try {
    deps = await createRuntime({ ...config, cookieSecret }, store, clock, { adminTokenHash, processMetrics: true });
    app = await buildApp(deps, { logger: log });
  } catch (err) {
    await store.close();
    throw err;
  }
  const bus = deps.bus;

  const sweeper = startExpirySweeper(store, bus, clock, config.sweepIntervalMs, (err) =>
    log.warn({ err: err instanceof Error ? err.message : String(err) }, 'expiry sweep failed'),
  );

  // Pending consents asked of their banks, terminations retried, ended consents purged.
  const bankWorker = startBankWorker(deps, Math.max(config.sweepIntervalMs, 1000), (err) =>
    log.warn({ err: err instanceof Error ? err.message : String(err) }, 'bank work failed'),
  );

  let address: string;
  try {
    address = await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await bankWorker.stop();
    await sweeper.stop();
    await store.close();
    throw err;
  }
  log.info({ address, store: store.kind }, 'tessera listening');
  if (config.devAllowHttpLoopback) log.warn('TESSERA_DEV_ALLOW_HTTP_LOOPBACK=1: plain-HTTP loopback identity providers and SSO redirect URIs are allowed (development only)');

  let stopping: Promise<void> | null = null;
  return {
    app,
    deps,
    bus,
    sweeper,
    url: address,
    stop() {
      stopping ??= (async () => {
        // 1. Readiness turns 503 while requests are still served, so that load balancers stop
        //    sending new ones here (TESSERA_SHUTDOWN_DELAY_MS; 0 skips the wait).
        deps.lifecycle.draining = true;
        if (config.shutdownDelayMs > 0) {
          log.info({ delayMs: config.shutdownDelayMs }, 'draining: /readyz answers 503, requests still served');
          await new Promise((r) => setTimeout(r, config.shutdownDelayMs));
        }
        // 2. Stop accepting; in-flight requests finish (a request arriving on a kept-alive
        //    connection now is answered 503 with "Connection: close"). A keep-alive connection
        //    that turns idle only after close() began would hold the server open, so idle ones
        //    are closed as they appear, and after TESSERA_SHUTDOWN_TIMEOUT_MS everything is.
        const closing = app.close();
        const idle = setInterval(() => app.server.closeIdleConnections(), 50);
        const deadline = setTimeout(() => {
          log.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown: requests still running at the deadline; closing their connections');
          app.server.closeAllConnections();
        }, config.shutdownTimeoutMs);
        try {
          await closing;
        } finally {
          clearInterval(idle);
          clearTimeout(deadline);
        }
        // 3. Background work and the store.
        await sweeper.stop();
        await bankWorker.stop();
        await deps.monitor.stop();
        await deps.sessionCache.stop();
        await store.close();
        log.info('tessera stopped');
        log.flush();
      })();
      return stopping;
    },
  };
}
