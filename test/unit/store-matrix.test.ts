// The conformance matrix (test/store/targets.ts) runs only where a file declares it: every target
// of TARGET_IDS has its test file, test/store/matrix-<id>.test.ts, and no file declares a target
// that is not in the list; docs/architecture.md's table of targets names each of them.

import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TARGET_IDS } from '../store/targets.ts';

describe('the conformance matrix', () => {
  it('has one test file per target, each declaring its own target', () => {
    const dir = new URL('../store/', import.meta.url);
    const files = readdirSync(dir).filter((f) => /^matrix-.*\.test\.ts$/.test(f));
    expect(files.map((f) => f.slice('matrix-'.length, -'.test.ts'.length)).sort()).toStrictEqual([...TARGET_IDS].sort());
    for (const f of files) {
      const id = f.slice('matrix-'.length, -'.test.ts'.length);
      expect(readFileSync(new URL(f, dir), 'utf8'), f).toContain(`await describeMatrix('${id}'`);
    }
  });

  it('is the table of targets in docs/architecture.md', () => {
    const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8');
    const rows = [...doc.matchAll(/^\| `([a-z-]+)` \| \d+ \|/gm)].map((m) => m[1]);
    expect(rows).toStrictEqual([...TARGET_IDS]);
  });
});
