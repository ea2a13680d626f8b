// node bench/signed-tokens-ab.ts <other checkout> — CPU µs per SignedTokens.add and .has
// (src/tokens/signed-tokens.ts: a rotation adds the token it signed, a token's first check in a
// process asks) of this checkout against another's, both in this process, alternated for
// AB_ROUNDS (12) rounds of AB_SLICE (20,000) tokens shaped like session tokens (~390 ASCII
// characters); every token added is checked to be known. Prints the medians and in how many
// rounds this checkout was lower (docs/performance.md, "Where the rotation server's CPU goes").
// AB_FRESH=1: every round adds tokens never added before (as a server's rotations do), so the
// sets' generations (50,000) roll over as in a server; without it the rounds reuse four slices.

import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Set { add(token: string): void; has(token: string): boolean }
type Ctor = new (generation: number) => Set;

const other = process.argv[2];
if (!other) throw new Error('usage: node bench/signed-tokens-ab.ts <other checkout>');
const here = fileURLToPath(new URL('..', import.meta.url));
const load = async (root: string) => ((await import(join(resolve(root), 'src/tokens/signed-tokens.ts'))) as { SignedTokens: Ctor }).SignedTokens;
const variants: [string, Ctor][] = [
  ['other', await load(other)],
  ['this', await load(here)],
];
const ROUNDS = Number(process.env.AB_ROUNDS ?? 12);
const SLICE = Number(process.env.AB_SLICE ?? 20_000);
const FRESH = process.env.AB_FRESH === '1';
const tokens = Array.from({ length: 4 * SLICE }, () => `eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.${randomBytes(200).toString('base64url')}.${randomBytes(64).toString('base64url')}`);
const sets = variants.map(([, C]) => new C(50_000));
/** µs per call: [variant][add, has][round]. */
const us: number[][][] = variants.map(() => [[], []]);
const cpu = (f: () => void) => {
  const c0 = process.cpuUsage();
  f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / SLICE;
};
for (let round = 0; round < ROUNDS; round++) {
  // Fresh: the same shapes with the round in them, made flat (a request's token is a flat string).
  const slice = tokens.slice((round % 4) * SLICE, ((round % 4) + 1) * SLICE).map((t) => (FRESH ? Buffer.from(`${t}.${round}`).toString('latin1') : t));
  for (const v of round % 2 === 0 ? [0, 1] : [1, 0]) {
    const s = sets[v] as Set;
    // Each variant its own tokens (a suffix), so the second in a round adds new ones too.
    us[v]![0]!.push(cpu(() => slice.forEach((t) => s.add(t + v))));
    let known = 0;
    us[v]![1]!.push(cpu(() => slice.forEach((t) => void (s.has(t + v) && known++))));
    if (known !== SLICE) throw new Error(`${variants[v]![0]}: ${SLICE - known} tokens added and not known`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
for (const [i, what] of ['add', 'has'].entries()) {
  const [a, b] = [us[0]![i]!, us[1]![i]!];
  console.log(`${what}: other ${median(a).toFixed(3)} µs, this ${median(b).toFixed(3)} µs per call; this lower in ${b.filter((x, j) => x < (a[j] as number)).length} of ${ROUNDS} rounds`);
}
