// docs/architecture.md is drawn from the code: its table of which folder of src/ may import which
// (§1) is the LAYERS map that the lint rule enforces (eslint/tessera-rules.js), and its table of
// ports (§2) names every port file of src/store and no other. A change to either side without the
// other fails here.

import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LAYERS } from '../../eslint/tessera-rules.js';

const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');

/** The text of one `## n.` section. */
function section(n: number): string {
  const start = doc.search(new RegExp(`^## ${n}\\. `, 'm'));
  expect(start, `section ${n}`).toBeGreaterThanOrEqual(0);
  const rest = doc.slice(start + 1);
  const end = rest.search(/^## /m);
  return end === -1 ? rest : rest.slice(0, end);
}

/** `domain, auth (URL rules), `runtime.ts`` → ['domain', 'auth', 'runtime.ts']; `—` → []. */
function names(cell: string): string[] {
  return cell
    .replace(/\([^)]*\)/g, '')
    .split(',')
    .map((n) => n.replace(/`/g, '').trim().replace(/\/$/, ''))
    .filter((n) => n !== '' && n !== '—');
}

/** The layer table of §1 as LAYERS writes it: folder → allowed imports, `type:` for type-only ones. */
function layerTable(): Record<string, string[] | '*'> {
  const out: Record<string, string[] | '*'> = {};
  for (const line of section(1).split('\n')) {
    const row = /^\| (`[^|]+) \| ([^|]+) \| ([^|]+) \|$/.exec(line);
    if (!row) continue;
    const folders = names(row[1]!);
    const allowed = /everything/.test(row[2]!) ? '*' : [...names(row[2]!), ...names(row[3]!).map((n) => `type:${n}`)];
    for (const f of folders) out[f] = allowed;
  }
  return out;
}

describe('docs/architecture.md is drawn from the code', () => {
  it('reads the layer table (the parser finds rows at all)', () => {
    expect(Object.keys(layerTable())).toEqual(expect.arrayContaining(['domain', 'http', 'runtime.ts']));
  });

  it('§1: the layer table is the LAYERS map of the lint rule', () => {
    const sorted = (m: Record<string, readonly string[] | string>) =>
      Object.fromEntries(Object.entries(m).map(([k, v]) => [k, typeof v === 'string' ? v : [...v].sort()]));
    expect(sorted(layerTable())).toEqual(sorted(LAYERS as Record<string, readonly string[] | string>));
  });

  it('§2: the table of ports names every port file of src/store', () => {
    const ports = readdirSync(new URL('../../src/store/', import.meta.url)).filter((f) => f.endsWith('-port.ts'));
    const documented = [...section(2).matchAll(/^\| `([a-z-]+-port\.ts)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(ports.sort());
  });
});
