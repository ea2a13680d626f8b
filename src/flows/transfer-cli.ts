// `tessera export --out <file> [--tenant <id>]...` and `tessera import <file>`: tenants, users,
// organizations, applications, banks and identity links from one store to another of any kind
// (src/store/transfer.ts for the format and the rules; runbook in docs/reliability.md).

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { SessionStore } from '../store/port.ts';
import { countsOf, exportStore, importStore, InvalidTransferFile, parseTransferFile, TransferConflict, TransferKeyMismatch } from '../store/transfer.ts';
import { KeyRing } from '../tokens/key-ring.ts';
import { deriveKey, keyedDigest } from '../tokens/sealing.ts';

export const TRANSFER_USAGE = `  export --out <file> [--tenant <id>]...
                                 Write tenants, users (argon2 hashes), organizations, applications,
                                 banks and identity links of the store (every tenant, or those
                                 named) to a JSON file (mode 0600); secrets stay sealed
  import <file>                  Write the file's records that this store lacks (any store kind);
                                 the same COOKIE_SECRET_SIGN_KEY as the source is required. Equal
                                 records are skipped; any record that exists with other content
                                 refuses the whole import (exit 2, nothing written). Each tenant
                                 that gets records has a tenant.imported audit record (counts)`;

export interface TransferIo {
  out(line: string): void;
  err(line: string): void;
}

/** The keyed check of the server secret that an export carries (reveals nothing of the key). */
export function transferKeyCheck(serverSecret: string): string {
  return keyedDigest(deriveKey(serverSecret, 'transfer-check'), 'tessera export key check v1');
}

/** Runs `export` or `import`; resolves to the exit code (2: usage, a refused import). */
export async function transferCommand(
  command: 'export' | 'import',
  args: string[],
  env: { serverSecret: string; open(): Promise<SessionStore> },
  io: TransferIo,
): Promise<number> {
  if (command === 'export') {
    const { values } = parseArgs({ args, options: { out: { type: 'string' }, tenant: { type: 'string', multiple: true } } });
    if (!values.out) {
      io.err('tessera: export needs --out <file>');
      return 2;
    }
    const store = await env.open();
    try {
      // The key must be the one this store's data is sealed under (WrongServerSecret otherwise: exit 2).
      await new KeyRing(store, env.serverSecret).load(Date.now());
      let file;
      try {
        file = await exportStore(store, transferKeyCheck(env.serverSecret), values.tenant);
      } catch (err) {
        if (err instanceof InvalidTransferFile) {
          io.err(`tessera: export: ${err.message}`);
          return 2;
        }
        throw err;
      }
      // 0600 from the first byte: password hashes and sealed secrets.
      const fd = openSync(values.out, 'wx', 0o600);
      try {
        writeSync(fd, JSON.stringify(file, null, 1) + '\n');
      } finally {
        closeSync(fd);
      }
      io.out(JSON.stringify({ exported: values.out, from: store.kind, ...countsOf(file) }));
      return 0;
    } finally {
      await store.close();
    }
  }

  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const path = positionals[0];
  if (!path || positionals.length > 1) {
    io.err('tessera: expected: tessera import <file>');
    return 2;
  }
  let file;
  try {
    file = parseTransferFile(readFileSync(path, 'utf8'));
  } catch (err) {
    if (err instanceof InvalidTransferFile) {
      io.err(`tessera: import refused: ${path}: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const keyCheck = transferKeyCheck(env.serverSecret);
  // Checked before the store is opened: a refused import touches nothing.
  if (file.keyCheck !== keyCheck) {
    io.err(`tessera: import refused: ${new TransferKeyMismatch().message}`);
    return 2;
  }
  const store = await env.open();
  try {
    await new KeyRing(store, env.serverSecret).load(Date.now());
    const result = await importStore(store, file, keyCheck, Date.now());
    io.out(JSON.stringify({ imported: path, into: store.kind, written: result.written, unchanged: result.unchanged }));
    return 0;
  } catch (err) {
    if (err instanceof TransferConflict || err instanceof TransferKeyMismatch) {
      io.err(`tessera: import refused: ${err.message}`);
      return 2;
    }
    throw err;
  } finally {
    await store.close();
  }
}
