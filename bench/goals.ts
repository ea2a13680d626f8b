// The goals table of `npm run bench` (issue 13), and `--runs=N`: the benchmark N times in a row,
// each run's goals table, then one summary — per goal, each run's verdict and "met in k of N".
//
// A goal is named by its `id` the same way in every run; `ok` is null where a run cannot judge it
// (the verdict says why). Goal 4 in one-round runs (--quick) has no spread between rounds to
// compare its change with, so each run leaves it unjudged and the summary judges it across the
// runs: the change of each scenario's ratio (its req/s over that of its control, a server of the
// same store left at 1,000 sessions and measured in the same round) from 1,000 to the large size,
// median over the runs, against the run-to-run noise of that ratio — the largest spread (max − min
// over the mean) of the N runs' ratios at either size.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Goal {
  /** The goal's number in issue 13. */
  n: number;
  id: string;
  measured: string;
  ok: boolean | null;
  verdict: string;
  /** Goal 4: the scenario's req/s over its control's at 1,000 sessions and at the large size. */
  data?: { small: number; large: number };
}

export function printGoals(goals: Goal[], title = 'Goals (issue 13)'): void {
  console.log(`\n### ${title}\n\n| # | goal | measured | this run |\n|---|---|---|---|`);
  for (const g of [...goals].sort((a, b) => a.n - b.n)) console.log(`| ${g.n} | ${g.id} | ${g.measured} | ${g.verdict} |`);
}

const spread = (xs: number[]) => (xs.length < 2 ? NaN : (Math.max(...xs) - Math.min(...xs)) / (xs.reduce((a, b) => a + b, 0) / xs.length));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const pct = (x: number) => (Number.isNaN(x) ? 'n/a' : `${(x * 100).toFixed(0)} %`);

/** Runs bench/run.ts `runs` times with `args` (without --runs), then prints the summary. Returns the exit code. */
export function runMany(runs: number, args: string[], script: string): number {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-runs-'));
  const results: Array<{ wallSeconds: number; goals: Goal[] } | null> = [];
  try {
    for (let i = 1; i <= runs; i++) {
      console.log(`\n## Run ${i} of ${runs}\n`);
      const out = join(dir, `goals-${i}.json`);
      const r = spawnSync(process.execPath, [script, ...args, `--goals-out=${out}`], { stdio: 'inherit' });
      try {
        results.push(JSON.parse(readFileSync(out, 'utf8')) as { wallSeconds: number; goals: Goal[] });
      } catch {
        console.log(`\n(run ${i} exited ${r.status ?? r.signal} without its goals: counted as meeting none)`);
        results.push(null);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const ids: Array<{ n: number; id: string }> = [];
  for (const r of results) for (const g of r?.goals ?? []) if (!ids.some((x) => x.id === g.id)) ids.push({ n: g.n, id: g.id });
  ids.sort((a, b) => a.n - b.n);
  console.log(`\n## Summary of ${runs} consecutive runs\n`);
  console.log(`Wall time per run: ${results.map((r) => (r ? `${r.wallSeconds.toFixed(0)} s` : 'failed')).join(', ')}.\n`);
  console.log(`| # | goal | ${results.map((_, i) => `run ${i + 1}`).join(' | ')} | met in |`);
  console.log(`|---|---|${results.map(() => '---|').join('')}---|`);
  let allMet = true;
  for (const { n, id } of ids) {
    const per = results.map((r) => r?.goals.find((g) => g.id === id) ?? null);
    const cells = per.map((g) => (g ? `${g.measured} — ${g.verdict}` : 'missing'));
    const judged = per.filter((g) => g?.ok !== null && g?.ok !== undefined);
    let metIn: string;
    if (per.every((g) => g !== null && g.data !== undefined && g.ok === null)) {
      // Goal 4 from one-round runs: judged across the runs (see the head of this file).
      const d = per.map((g) => g!.data!);
      const change = median(d.map((x) => (x.large - x.small) / x.small));
      const noise = Math.max(spread(d.map((x) => x.small)), spread(d.map((x) => x.large)));
      const ok = !Number.isNaN(noise) && Math.abs(change) <= noise;
      metIn = `across the runs: median change ${pct(change)} vs run-to-run noise ${pct(noise)} — ${Number.isNaN(noise) ? 'not judged (one run)' : ok ? 'met' : 'NOT met'}`;
      if (!ok) allMet = false;
    } else if (judged.length === 0) {
      metIn = 'not judged';
    } else {
      const k = per.filter((g) => g?.ok === true).length;
      metIn = `${k} of ${runs}`;
      if (k < runs) allMet = false;
    }
    console.log(`| ${n} | ${id} | ${cells.join(' | ')} | ${metIn} |`);
  }
  console.log(`\n${allMet ? 'Every judged goal was met in every run.' : 'Not every judged goal was met in every run.'}`);
  return results.includes(null) ? 1 : 0;
}
