// The error-code catalogue (src/domain/error-codes.ts) and docs/api.md's error table describe
// the same closed set: a code a client can receive but cannot look up fails here, and so does a
// documented code nothing can produce.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isErrorCode } from '../../src/domain/error-codes.ts';

/** Codes listed in the error table: rows `| status | `code`, `code` | when |`. */
function documentedCodes(markdown: string): Map<string, number> {
  const codes = new Map<string, number>();
  for (const line of markdown.split('\n')) {
    const row = /^\| (\d{3}) \| ([^|]+) \|/.exec(line);
    if (!row) continue;
    for (const m of row[2]!.matchAll(/`([a-z_]+)`/g)) codes.set(m[1]!, Number(row[1]));
  }
  return codes;
}

const apiMd = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');

describe('error-code catalogue', () => {
  it('reads the error table (the parser finds rows at all)', () => {
    const documented = documentedCodes('| 400 | `a_code`, `b_code` | when |\n| 1 | `x` |\n');
    expect([...documented.keys()]).toEqual(['a_code', 'b_code']);
  });

  it('every code in the catalogue is documented in docs/api.md', () => {
    const documented = documentedCodes(apiMd);
    const missing = ERROR_CODES.filter((c) => !documented.has(c));
    expect(missing).toEqual([]);
  });

  it('every code docs/api.md documents is in the catalogue', () => {
    const stale = [...documentedCodes(apiMd).keys()].filter((c) => !isErrorCode(c));
    expect(stale).toEqual([]);
  });

  it('has no duplicates', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
  });
});
