// Embedded mode keeps two generated secrets under its data folder, each in its own 0600 file:
// the cookie signing key (when COOKIE_SECRET_SIGN_KEY is unset) and the bootstrap admin
// credential (when TESSERA_ADMIN_TOKEN is unset). Their contents are never logged; only where
// they are.

import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newSecret } from '../domain/secrets.ts';

export interface DiskSecret {
  value: string;
  path: string;
  /** True when this start created it. */
  created: boolean;
}

/** Reads the secret in `dataDir/name`, creating it (0600, exclusive) when absent. */
export function loadOrCreateSecret(dataDir: string, name: string): DiskSecret {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, name);
  try {
    writeFileSync(path, newSecret() + '\n', { flag: 'wx', mode: 0o600 });
    chmodSync(path, 0o600);
    return { value: readSecret(path), path, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { value: readSecret(path), path, created: false };
  }
}

function readSecret(path: string): string {
  const value = readFileSync(path, 'utf8').trim();
  if (value.length < 32) throw new Error(`${path} holds no usable secret (delete it to generate a new one)`);
  return value;
}
