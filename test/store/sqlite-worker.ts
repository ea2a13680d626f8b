// A SQLite store on its own connection in a worker thread, driven by messages from
// sqlite.test.ts. Several of these on one file are several writers that really run at the same
// time, as several Tessera processes would: the conformance races then prove the file locking
// (BEGIN IMMEDIATE + busy timeout), not just the single-threaded event loop.

import { parentPort, workerData } from 'node:worker_threads';
import { TesseraError } from '../../src/domain/errors.ts';
import { openSqliteStore } from '../../src/store/sqlite/sqlite-store.ts';

export interface WorkerCall {
  id: number;
  method: string;
  args: unknown[];
}

export type WorkerReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string; status?: number } };

const port = parentPort;
if (port === null) throw new Error('sqlite-worker.ts runs as a worker thread');

const { path } = workerData as { path: string };
const store = await openSqliteStore(path);
const methods = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;

port.on('message', (call: WorkerCall) => {
  const method = methods[call.method];
  const reply = (r: WorkerReply): void => port.postMessage(r);
  if (typeof method !== 'function') {
    reply({ id: call.id, ok: false, error: { name: 'TypeError', message: `no method ${call.method}` } });
    return;
  }
  method.apply(store, call.args).then(
    (value) => reply({ id: call.id, ok: true, value }),
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
port.postMessage({ ready: true });
