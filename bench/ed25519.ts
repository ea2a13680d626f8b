// node bench/ed25519.ts — the CPU of one Ed25519 signature and one verification of a session
// token, by each implementation of src/tokens/ed25519.ts (libsodium through sodium-native, and
// node:crypto), and of a token's first check in a process that did not sign it: jose's
// `jwtVerify` with the options src/tokens/session-token.ts gave it before it checked signatures
// itself, and `verifySessionToken` of this checkout with each implementation. The input is a
// real token's (a userSessionToken's header and claims, ~330 bytes). CPU of the whole process
// (`process.cpuUsage`: WebCrypto's verification runs on libuv's pool), per operation; the
// variants are alternated for AB_ROUNDS rounds (default 9) of AB_OPS operations (default 4000;
// verifications a quarter of that), and the median round of each is printed.

import { generateKeyPairSync } from 'node:crypto';
import { jwtVerify } from 'jose';
import { ed25519For, useEd25519 } from '../src/tokens/ed25519.ts';
import { signSessionTokenSync, verifySessionToken, type SessionTokenClaims } from '../src/tokens/session-token.ts';
import type { KeyRing } from '../src/tokens/key-ring.ts';

const ROUNDS = Number(process.env.AB_ROUNDS ?? 9);
const OPS = Number(process.env.AB_OPS ?? 4000);
const VERIFY_OPS = Math.max(1, Math.floor(OPS / 4));

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const kid = '2026-12-07.AbCdEfGh';
const issuer = 'https://tessera.example.com';
const signingRing = { signing: () => ({ kid, key: privateKey }), verification: () => publicKey } as unknown as KeyRing;
const claims = (i: number): SessionTokenClaims => ({
  iss: issuer,
  sub: 'u_01JEXAMPLE0000000000000000',
  tid: 'acme',
  sid: `s_${i.toString(36).padStart(24, '0')}`,
  scope: 'session',
  iat: 1_765_000_000,
  exp: 1_765_000_900,
  jti: `j${i.toString(36).padStart(21, '0')}`,
});
const now = 1_765_000_100_000;
// Distinct tokens, so that no check finds one it verified before.
const tokens = Array.from({ length: VERIFY_OPS * (ROUNDS + 1) * 4 }, (_, i) => signSessionTokenSync(signingRing, claims(i)));
let next = 0;
const message = Buffer.from((tokens[0] as string).slice(0, (tokens[0] as string).lastIndexOf('.')));
const signature = Buffer.from((tokens[0] as string).slice((tokens[0] as string).lastIndexOf('.') + 1), 'base64url');
const sodium = ed25519For('auto');
const node = ed25519For('node');
if (sodium.name !== 'libsodium') console.log(`(libsodium is not available here: ${sodium.fallbackReason}; both rows are node:crypto)`);

/** A ring that has verified nothing yet: every check of it is a first check. */
const freshRing = () => ({ verification: () => publicKey, maybeReload: async () => undefined }) as unknown as KeyRing;

interface Variant {
  name: string;
  ops: number;
  run(n: number): Promise<void> | void;
}

const variants: Variant[] = [
  { name: 'sign, node:crypto', ops: OPS, run: (n) => { for (let i = 0; i < n; i++) node.sign(message, privateKey); } },
  { name: 'sign, libsodium', ops: OPS, run: (n) => { for (let i = 0; i < n; i++) sodium.sign(message, privateKey); } },
  { name: 'verify, node:crypto', ops: VERIFY_OPS, run: (n) => { for (let i = 0; i < n; i++) node.verify(message, signature, publicKey); } },
  { name: 'verify, libsodium', ops: VERIFY_OPS, run: (n) => { for (let i = 0; i < n; i++) sodium.verify(message, signature, publicKey); } },
  {
    name: 'first check, jose jwtVerify (before)',
    ops: VERIFY_OPS,
    run: async (n) => {
      for (let i = 0; i < n; i++) {
        await jwtVerify(tokens[next++ % tokens.length] as string, publicKey, { algorithms: ['EdDSA'], issuer, currentDate: new Date(now), clockTolerance: 0, requiredClaims: ['sub', 'sid', 'tid', 'exp', 'iat', 'jti'] });
      }
    },
  },
  ...(['node', 'auto'] as const).map((choice) => ({
    name: `first check, verifySessionToken (${choice === 'node' ? 'node:crypto' : 'libsodium'})`,
    ops: VERIFY_OPS,
    run: async (n: number) => {
      useEd25519(choice);
      const ring = freshRing();
      for (let i = 0; i < n; i++) await verifySessionToken(ring, tokens[next++ % tokens.length] as string, issuer, now);
    },
  })),
];

const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = -1; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? variants : [...variants].reverse();
  for (const v of order) {
    const c0 = process.cpuUsage();
    await v.run(v.ops);
    const c = process.cpuUsage(c0);
    if (round >= 0) samples.get(v.name)!.push((c.user + c.system) / v.ops); // round -1 warms up
  }
}
useEd25519('auto');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] as number;
console.log(`\n# bench/ed25519.ts — ${new Date().toISOString()}, Node ${process.version}, ${ROUNDS} rounds, ${OPS} signatures / ${VERIFY_OPS} verifications per variant and round\n`);
console.log('| operation | CPU µs (median round) | rounds |');
console.log('|---|---:|---|');
for (const [name, xs] of samples) console.log(`| ${name} | ${median(xs).toFixed(1)} | ${xs.map((x) => x.toFixed(0)).join(' ')} |`);
