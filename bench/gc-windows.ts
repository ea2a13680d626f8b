// node bench/gc-windows.ts <dir> — after `BENCH_GC_TRACE=<dir> node bench/run.ts …`: every
// mark-compact of every traced server (V8's --trace-gc lines, one file per server), put on the
// run's wall clock and set against the run's measured windows (<dir>/windows.txt): inside which
// row it fell — that server's own row or another's — or outside every window, or in one of the
// bench's own collections (bench/gc-on-signal.ts). V8 prints its milliseconds since the isolate
// started; each `bench-gc <wall-clock ms>` line the preload writes after a collection of the
// bench's ties that clock to the wall clock (the n-th such line to the n-th `testing` mark-compact).
// A server the bench never collected is shown on V8's clock only. Scavenges are counted, not placed.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Window {
  start: number;
  end: number;
  row: string;
}

export interface MarkCompact {
  /** Milliseconds since the isolate started (V8's clock). */
  t: number;
  kind: string;
  pauseMs: number;
  /** A collection of the bench's (`gc()`: V8 calls its reason `testing`). */
  bench: boolean;
}

const LINE = /^\[\d+:(0x[0-9a-f]+)(?::\d+)?\]\s+([\d.]+) ms: (Mark-Compact(?: \(reduce\))?|Scavenge|Minor Mark-Sweep)(?= )(.*)$/;

/**
 * One server's trace: the mark-compacts of its last isolate (`tessera start` replaces itself once
 * at start-up, so its file holds two isolates), its scavenges, and the offset from V8's clock to
 * the wall clock (NaN when the bench never collected it).
 */
export function parseTrace(text: string): { markCompacts: MarkCompact[]; scavenges: number; offset: number } {
  const lines = text.split('\n');
  const events = lines.flatMap((l) => {
    const m = LINE.exec(l);
    return m ? [{ isolate: m[1]!, t: Number(m[2]), kind: m[3]!, rest: m[4]! }] : [];
  });
  const isolate = events.at(-1)?.isolate;
  const own = events.filter((e) => e.isolate === isolate);
  const markCompacts = own
    .filter((e) => e.kind.startsWith('Mark-Compact'))
    .map((e) => ({ t: e.t, kind: e.kind, pauseMs: Number(/MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \//.exec(e.rest)?.[1] ?? NaN), bench: /\btesting\b/.test(e.rest) }));
  const acks = lines.filter((l) => l.startsWith('bench-gc ')).map((l) => Number(l.split(' ')[1]));
  const offsets = markCompacts
    .filter((m) => m.bench)
    .slice(0, acks.length)
    .map((m, i) => acks[i]! - m.t)
    .sort((a, b) => a - b);
  return { markCompacts, scavenges: own.filter((e) => e.kind === 'Scavenge').length, offset: offsets.length === 0 ? NaN : offsets[Math.floor(offsets.length / 2)]! };
}

export function parseWindows(text: string): Window[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [start, end, ...row] = l.split(' ');
      return { start: Number(start), end: Number(end), row: row.join(' ') };
    });
}

/** Where a mark-compact that ended at wall-clock `at` (and paused for `pauseMs`) fell: the windows it overlaps. */
export function placed(at: number, pauseMs: number, windows: Window[]): Window[] {
  return windows.filter((w) => at >= w.start && at - (Number.isNaN(pauseMs) ? 0 : pauseMs) <= w.end);
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: node bench/gc-windows.ts <dir of BENCH_GC_TRACE>');
  const windows = parseWindows(readFileSync(join(dir, 'windows.txt'), 'utf8'));
  const t0 = Math.min(...windows.map((w) => w.start));
  let inside = 0;
  // The load generator's own (it runs one every ~13,000 requests of load, in every row alike) apart from the servers'.
  let insideLoad = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.log')).sort()) {
    const { markCompacts, scavenges, offset } = parseTrace(readFileSync(join(dir, file), 'utf8'));
    const port = /-(\d+)-[0-9a-f]+\.log$/.exec(file)?.[1];
    console.log(`${file}: ${markCompacts.length} mark-compacts (${markCompacts.filter((m) => m.bench).length} the bench's), ${scavenges} scavenges`);
    for (const m of markCompacts) {
      const what = `${m.kind}${m.bench ? ' (the bench\'s)' : ''}, pause ${m.pauseMs} ms`;
      if (Number.isNaN(offset)) {
        console.log(`  ${(m.t / 1000).toFixed(1)} s of V8's clock: ${what} (not placed: never collected by the bench)`);
        continue;
      }
      const at = m.t + offset;
      const where = placed(at, m.pauseMs, windows);
      const rows = where.filter((w) => !w.row.startsWith('(full collection'));
      if (rows.length > 0 && !m.bench) {
        if (file.startsWith('load-generator')) insideLoad++;
        else inside++;
      }
      const said = rows.length > 0 ? `INSIDE ${rows.map((w) => (port && w.row.endsWith(`@${port}`) ? `${w.row} (its own row)` : w.row)).join('; ')}` : where.length > 0 ? 'in a collection of the bench' : 'outside every window';
      console.log(`  ${((at - t0) / 1000).toFixed(1)} s after the first window opened: ${what} — ${said}`);
    }
  }
  console.log(`\n${inside} mark-compact(s) of the servers, not the bench's, inside a measured window (and ${insideLoad} of the load generator's); ${windows.filter((w) => !w.row.startsWith('(full collection')).length} windows.`);
}
