// A SQLite store on its own connection in a worker thread, driven by messages from the
// worker-thread target of test/store/targets.ts. Several of these on one file are several writers
// that really run at the same time, as several Tessera processes would: the conformance races
// then prove the file locking (BEGIN IMMEDIATE + busy timeout), not just the single-threaded
// event loop.
//
// Every part of the store is reached: top-level operations (`['createSession']`), the sub-stores
// (`['consents', 'settleConsent']`), callbacks (a subscriber's listener runs here and is posted
// back), and what a call returns that has methods (a subscription's `close`) stays here as a
// handle that later calls name (`['#handle', '3', 'close']`).

import { parentPort, workerData } from 'node:worker_threads';
import { TesseraError } from '../../src/domain/errors.ts';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.ts';

/** A function argument, replaced by this token on its way to the worker. */
export interface CallbackToken {
  __callback: number;
}

export interface WorkerCall {
  id: number;
  path: string[];
  args: unknown[];
}

export type WorkerReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string; status?: number } };

/** A value with methods, kept in the worker; later calls name it by `handle`. */
export interface HandleToken {
  __handle: number;
  methods: string[];
}

export type WorkerMessage =
  | WorkerReply
  | { ready: true; subStores: string[] }
  | { callback: number; args: unknown[] };

export interface WorkerOptions {
  path: string;
  feedPollMs?: number;
}

const port = parentPort;
if (port === null) throw new Error('sqlite-worker.ts runs as a worker thread');

const { path, feedPollMs } = workerData as WorkerOptions;
const store = await openSqliteStore(path, feedPollMs === undefined ? {} : { feedPollMs });
const handles = new Map<number, Record<string, unknown>>();
let nextHandle = 0;

function isCallbackToken(v: unknown): v is CallbackToken {
  return typeof v === 'object' && v !== null && typeof (v as CallbackToken).__callback === 'number';
}

/** The methods of an object, its class's included (a sub-store is a class instance). */
function methodsOf(v: unknown): string[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return [];
  const names = new Set<string>();
  for (let o: object | null = v; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const k of Object.getOwnPropertyNames(o)) {
      if (k !== 'constructor' && typeof (v as Record<string, unknown>)[k] === 'function') names.add(k);
    }
  }
  return [...names];
}

/** The object a path's last segment is a method of. */
function receiver(path: string[]): Record<string, unknown> | undefined {
  if (path[0] === '#handle') return handles.get(Number(path[1]));
  let obj: unknown = store;
  for (const segment of path.slice(0, -1)) obj = (obj as Record<string, unknown> | undefined)?.[segment];
  return obj as Record<string, unknown> | undefined;
}

port.on('message', (call: WorkerCall) => {
  const reply = (r: WorkerReply): void => port.postMessage(r);
  const self = receiver(call.path);
  const name = call.path[call.path.length - 1] as string;
  const method = self?.[name];
  if (typeof method !== 'function') {
    reply({ id: call.id, ok: false, error: { name: 'TypeError', message: `no method ${call.path.join('.')}` } });
    return;
  }
  const args = call.args.map((a) =>
    isCallbackToken(a) ? (...cbArgs: unknown[]) => port.postMessage({ callback: a.__callback, args: cbArgs }) : a,
  );
  Promise.resolve()
    .then(() => (method as (...a: unknown[]) => unknown).apply(self, args))
    .then(
      (value) => {
        const methods = methodsOf(value);
        if (methods.length === 0) {
          reply({ id: call.id, ok: true, value });
          return;
        }
        const handle = nextHandle++;
        handles.set(handle, value as Record<string, unknown>);
        const token: HandleToken = { __handle: handle, methods };
        reply({ id: call.id, ok: true, value: token });
      },
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        reply({
          id: call.id,
          ok: false,
          error: {
            name: e.name,
            message: e.message,
            ...(e instanceof TesseraError ? { code: e.code, status: e.status } : {}),
          },
        });
      },
    );
});

// The sub-stores (consents, federation, oidc, audit, banks): objects on the store with methods.
const subStores = Object.keys(store).filter((k) => methodsOf((store as unknown as Record<string, unknown>)[k]).length > 0);
port.postMessage({ ready: true, subStores });
