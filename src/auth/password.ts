// Passwords: argon2id (OWASP-recommended parameters), verified in constant time by the library.
// A dummy hash is verified when the user does not exist, so that an unknown email costs the same
// time as a wrong password and the answer reveals nothing.

import { hash, verify } from '@node-rs/argon2';

// @node-rs/argon2: Algorithm.Argon2id === 2 (a const enum, which type stripping cannot inline).
const ARGON2ID = 2;
const OPTIONS = { algorithm: ARGON2ID, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 1024;

export async function hashPassword(password: string): Promise<string> {
  return hash(password, OPTIONS);
}

let dummyHash: Promise<string> | null = null;

/** True when `password` matches `phc`; with `phc` null, spends the same time and returns false. */
export async function verifyPassword(phc: string | null, password: string): Promise<boolean> {
  if (phc === null) {
    dummyHash ??= hashPassword('tessera-dummy-password-for-timing');
    await verify(await dummyHash, password).catch(() => false);
    return false;
  }
  try {
    return await verify(phc, password);
  } catch {
    return false;
  }
}
