// node bench/redis-scripts-ab.ts <redis url of a server of your own> <other checkout> — REDIS's CPU
// per rotate and per look-up-and-redeem (the SSO exchange's one store call), the two hot slot
// scripts alone, for comparing their Lua in two versions of the code. Each variant is an
// in-process Tessera of its checkout (bench/inprocess-tessera.ts, its own key prefix), called
// below the flows through its store port (no HTTP, no audit append, no signature): what Redis
// does is the script and nothing else, so small differences resolve where bench/redis-cpu-ab.ts
// (the whole request, its audit included) cannot on a loaded machine. Per round and variant:
// AB_SLICE rotations (50 chains, `rotateRefreshToken` as app-sessions.ts calls it) and
// AB_SLICE / 2 exchanges (`lookUpAndRedeem` with the plan redeem-token.ts makes for a token
// bound by a verifier; one-time tokens made just before by that checkout's
// bench/fill-sso-tokens.ts), Redis's CPU (`INFO cpu`, user + sys) around each; every outcome
// checked. Rounds alternate the variants' order; medians, "lower in k of n rounds" and the median
// of the paired differences. The server must be used by nothing else (start one:
// redis-server --port <free> --save '' --appendonly no --daemonize yes).
// Environment: AB_ROUNDS (default 15), AB_SLICE (default 2000), AB_CONCURRENCY (chains and
// exchanges at once, default 50). AB_CALLGRIND=<pid>: that redis-server runs under
// `valgrind --tool=callgrind --callgrind-out-file=<dir>/cg.%p.out redis-server …` (<dir> in
// AB_CALLGRIND_DIR, default the current one) and each slice is counted in thousands of its
// instructions (callgrind_control --zero before, --dump after, the dump's totals) instead of CPU
// µs: a count the machine's load does not move, for differences of a few per cent (valgrind makes
// Redis ~50x slower: keep AB_SLICE small, ~600, and AB_CONCURRENCY ~10, under the 1 s command
// timeout). The dumps stay in that directory, each named by its slice (callgrind_annotate them).

import { randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';
import type * as SecretsModule from '../src/domain/secrets.ts';
import type { RedeemPlan } from '../src/store/sessions-port.ts';
import { loginChains, startInProcessTessera, type InProcessTessera } from './inprocess-tessera.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REDIS_URL = process.argv[2] ?? '';
const OTHER = process.argv[3] ?? '';
if (!REDIS_URL || !OTHER) throw new Error('usage: node bench/redis-scripts-ab.ts <redis url> <other checkout>');
const ROUNDS = Number(process.env.AB_ROUNDS ?? 15);
const SLICE = Number(process.env.AB_SLICE ?? 2000);
const CHAINS = Number(process.env.AB_CONCURRENCY ?? 50);
const CALLGRIND = process.env.AB_CALLGRIND ?? '';
const CALLGRIND_DIR = resolve(process.env.AB_CALLGRIND_DIR ?? '.');
const ADMIN = 'ab-admin-token-' + 'x'.repeat(32);
/** The verifier of every bench login's challenge (bench/fill-sso-tokens.ts). */
const VERIFIER = 'bench-verifier-' + 'v'.repeat(40);
const UNIT = CALLGRIND ? 'k instructions' : 'µs';
const dir = mkdtempSync(join(tmpdir(), 'tessera-redis-scripts-ab-'));

const admin = createClient({ url: REDIS_URL, RESP: 2 });
await admin.connect();

/** Under callgrind: zeroes its counters (the slice starts at 0). */
function startSlice(): void {
  if (CALLGRIND) execFileSync('callgrind_control', ['--zero', CALLGRIND], { stdio: 'ignore' });
}
/** Under callgrind: thousands of instructions since startSlice (a dump named `label`). */
function sliceInstructions(label: string): number {
  execFileSync('callgrind_control', [`--dump=${label}`, CALLGRIND], { stdio: 'ignore' });
  // A directory that is missing or holds no dump of this callgrind says so (not EISDIR / ENOENT).
  const dumps = existsSync(CALLGRIND_DIR) ? readdirSync(CALLGRIND_DIR).filter((f) => f.startsWith(`cg.${CALLGRIND}.out.`)) : [];
  const last = dumps.sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop())).pop();
  const total = last === undefined ? undefined : /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(CALLGRIND_DIR, last), 'utf8'))?.[1];
  if (total === undefined) throw new Error(`no callgrind dump in ${CALLGRIND_DIR} (AB_CALLGRIND_DIR: where callgrind writes its dumps)`);
  return Number(total) / 1e3;
}

async function redisCpu(): Promise<number> {
  const text = await admin.sendCommand<string>(['INFO', 'cpu']);
  const f = (k: string) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(text)?.[1] ?? 0);
  return (f('used_cpu_user') + f('used_cpu_sys')) * 1e6;
}

interface Variant {
  name: string;
  root: string;
  prefix: string;
  cookieSecret: string;
  t: InProcessTessera;
  secrets: typeof SecretsModule;
  /** Each chain's current refresh-token hash. */
  chains: string[];
}

async function variant(root: string, name: string): Promise<Variant> {
  const cookieSecret = randomBytes(32).toString('base64url');
  const prefix = `bench-rscr-${randomBytes(4).toString('hex')}:`;
  const t = await startInProcessTessera({ root, redisUrl: REDIS_URL, prefix, cookieSecret, adminToken: ADMIN, dir });
  const secrets = (await import(join(root, 'src/domain/secrets.ts'))) as typeof SecretsModule;
  const raw = await loginChains(t, ADMIN, CHAINS, `rscr-${name}-`);
  return { name, root, prefix, cookieSecret, t, secrets, chains: raw.map((r) => secrets.hashSecret(r)) };
}

async function rotations(v: Variant): Promise<number> {
  const per = Math.ceil(SLICE / CHAINS);
  // The successors made before the clock starts.
  const next = v.chains.map(() => Array.from({ length: per }, () => v.secrets.hashSecret(v.secrets.newSecret())));
  const c0 = CALLGRIND ? (startSlice(), 0) : await redisCpu();
  await Promise.all(
    v.chains.map(async (_, i) => {
      for (let k = 0; k < per; k++) {
        const now = Date.now();
        const successor = next[i]![k]!;
        const r = await v.t.deps.store.rotateRefreshToken(v.chains[i]!, successor, now, 60_000, now + 3_600_000);
        if (r.outcome !== 'rotated') throw new Error(`${v.name}: rotation ${r.outcome}`);
        v.chains[i] = successor;
      }
    }),
  );
  return ((CALLGRIND ? sliceInstructions(`rotation-${v.name}`) : await redisCpu()) - c0) / (per * CHAINS);
}

async function fill(v: Variant, n: number): Promise<string[]> {
  const out = join(dir, `tokens-${randomBytes(3).toString('hex')}.txt`);
  const child = spawn(process.execPath, [join(v.root, 'bench/fill-sso-tokens.ts'), JSON.stringify({ store: REDIS_URL, prefix: v.prefix, cookieKey: v.cookieSecret, tenantId: 'bench', count: n, budgetS: 40, out })], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise<number | null>((res) => child.once('exit', res));
  if (code !== 0) throw new Error(`${v.name}: the fill exited ${code}`);
  return readFileSync(out, 'utf8').split('\n').filter(Boolean);
}

async function exchanges(v: Variant, tokens: string[]): Promise<number> {
  const { hashSecret, newSecret } = v.secrets;
  const challenge = hashSecret(VERIFIER);
  const work = tokens.map((token) => ({ hash: hashSecret(token), refresh: hashSecret(newSecret()) }));
  let next = 0;
  const c0 = CALLGRIND ? (startSlice(), 0) : await redisCpu();
  await Promise.all(
    Array.from({ length: CHAINS }, async () => {
      while (next < work.length) {
        const w = work[next++]!;
        const now = Date.now();
        const plan: RedeemPlan = {
          kind: 'flow',
          tenants: [{ tenantId: 'bench', idleExpiresAt: now + 3_600_000 }],
          expectSeen: { purpose: 'sso_token', codeChallenge: challenge },
          targetField: 'appHandle',
          target: { expectData: { mode: 'pending' }, patch: { mode: 'token' } },
          refreshToken: { tokenHash: w.refresh, createdAt: now },
        };
        const r = await v.t.deps.store.lookUpAndRedeem(w.hash, plan, now);
        if (r.outcome !== 'redeemed') throw new Error(`${v.name}: exchange ${r.outcome}`);
      }
    }),
  );
  return ((CALLGRIND ? sliceInstructions(`exchange-${v.name}`) : await redisCpu()) - c0) / work.length;
}

const variants = [await variant(ROOT, 'this'), await variant(resolve(OTHER), 'other')];
const rows: Array<{ round: number; variant: string; rotation: number; exchange: number }> = [];
try {
  for (const v of variants) {
    await rotations(v); // warm-up: the libraries loaded, the chains' values at their steady size
    await exchanges(v, await fill(v, 200));
  }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    const tokens = new Map<string, string[]>();
    for (const v of order) tokens.set(v.name, await fill(v, Math.ceil(SLICE / 2)));
    for (const v of order) {
      const rotation = await rotations(v);
      const exchange = await exchanges(v, tokens.get(v.name)!);
      rows.push({ round, variant: v.name, rotation, exchange });
      console.log(`round ${round} ${v.name}: rotation ${rotation.toFixed(1)} ${UNIT}, exchange ${exchange.toFixed(1)} ${UNIT}`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const of = (name: string, k: 'rotation' | 'exchange') => rows.filter((r) => r.variant === name).map((r) => r[k]);
  console.log(`\n# bench/redis-scripts-ab.ts — ${new Date().toISOString()}, ${ROUNDS} rounds × ${SLICE} rotations and ${Math.ceil(SLICE / 2)} exchanges per slice\n`);
  console.log(`| what | this: Redis ${CALLGRIND ? 'instructions, thousands' : 'CPU µs'} (median) | other | this lower in | median of paired differences |`);
  console.log('|---|---:|---:|---:|---:|');
  for (const k of ['rotation', 'exchange'] as const) {
    const a = of('this', k);
    const b = of('other', k);
    const lower = a.filter((x, i) => x < b[i]!).length;
    console.log(`| ${k} | ${median(a).toFixed(1)} | ${median(b).toFixed(1)} | ${lower} of ${a.length} | ${median(a.map((x, i) => x - b[i]!)).toFixed(1)} |`);
  }
} finally {
  for (const v of variants) await v.t.stop().catch(() => undefined);
  for (const v of variants) {
    for await (const keys of admin.scanIterator({ MATCH: `${v.prefix}*`, COUNT: 1000 })) if (keys.length > 0) await admin.unlink(keys);
  }
  await admin.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
