// The repository stands alone: its code, tests and documents refer only to documents it contains.
// - No citation of the original specification ("SPEC <n>") or of the source documents it was
//   written from ("source <nnn>"): docs/ is the contract now.
// - Every citation of a section, `docs/<file>.md §<heading>` (also `§<n>` for a numbered heading,
//   and chained: `docs/api.md §Token mode, §Cookie mode`), names a file that exists and a heading
//   of it (the prose after a citation may run on: the heading must start the cited text, or the
//   cited text the heading).
// - Every relative Markdown link in docs/ and the READMEs leads to a file that exists and, with a
//   `#fragment`, to a heading (or an explicit `<a id>`) of it.

import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The folders and files that are read; build output, dependencies and test output are not. */
const SCANNED = ['src', 'test', 'docs', 'bench', 'packages', 'web', 'eslint', 'scripts', 'bin', '.ci', 'README.md'];
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git', 'data', '.tessera-test', 'fixtures']);
const TEXT = /\.(ts|tsx|js|mjs|cjs|md|html|css|json|sh|yml|yaml)$|^run$/;

function filesUnder(path: string): string[] {
  const abs = join(root, path);
  if (!existsSync(abs)) return [];
  if (statSync(abs).isFile()) return [abs];
  const out: string[] = [];
  for (const entry of readdirSync(abs, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name)) out.push(...filesUnder(join(path, entry.name)));
    } else if (TEXT.test(entry.name) && entry.name !== 'package-lock.json') {
      out.push(join(abs, entry.name));
    }
  }
  return out;
}

/** This file names the patterns it looks for. */
const self = fileURLToPath(import.meta.url);
const files = SCANNED.flatMap(filesUnder).filter((f) => f !== self);
const texts = new Map(files.map((f) => [f, readFileSync(f, 'utf8')]));

// Built from pieces so that this file does not match itself.
const SPEC_CITATION = new RegExp(['\\b', 'SP', 'EC', '\\b'].join(''));
const SOURCE_CITATION = new RegExp(['\\b[Ss]ource', ' 0\\d\\d\\b'].join(''));

/** The headings of a Markdown file: their text, and the GitHub anchors they (and `<a id>`) make. */
function headingsOf(markdown: string): { texts: string[]; anchors: Set<string> } {
  const texts: string[] = [];
  const anchors = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) continue;
    const h = /^#{1,6} (.+)$/.exec(line);
    if (h) {
      texts.push(h[1]!.trim());
      anchors.add(slug(h[1]!));
    }
    for (const a of line.matchAll(/<a id="([^"]+)">/g)) anchors.add(a[1]!);
  }
  return { texts, anchors };
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/ /g, '-');
}

function headingMatches(headings: string[], cited: string): boolean {
  const number = /^\d+\b/.exec(cited);
  if (number) return headings.some((h) => h.startsWith(`${number[0]}. `));
  return headings.some((h) => h.startsWith(cited) || cited === h || cited.startsWith(`${h} `) || cited.startsWith(`${h}'`));
}

/** Comment continuations joined, so that a citation wrapped over two lines reads as one. */
function joined(text: string): string {
  return text.replace(/\n[ \t]*(?:\/\/|\*(?!\/)|--|#)?[ \t]*/g, ' ');
}

/** `docs/x.md §A, §B; and §C` → [['docs/x.md', 'A'], ['docs/x.md', 'B'], ['docs/x.md', 'C']]. */
function citationsIn(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const flat = joined(text);
  for (const m of flat.matchAll(/\b(docs\/[a-z-]+\.md) §/g)) {
    let at = m.index + m[0].length;
    for (;;) {
      const rest = flat.slice(at);
      const cited = /^[^,;:()"`\n]*/.exec(rest)![0].replace(/[.\s]+$/, '').replace(/\.\s.*$/, '');
      if (!cited.startsWith('<')) out.push([m[1]!, cited]);
      const next = /^[^,;:()"`\n]*(?:[,;]\s*(?:and\s+)?|\s+and\s+)§/.exec(rest);
      if (next === null) break;
      at += next[0].length;
    }
  }
  return out;
}

describe('the repository stands alone', () => {
  it('reads the files it checks (the scan finds src, docs and tests at all)', () => {
    const rel = files.map((f) => relative(root, f));
    expect(rel).toContain('docs/api.md');
    expect(rel).toContain('src/domain/session.ts');
    expect(rel.some((f) => f.startsWith('test/'))).toBe(true);
  });

  it('cites neither the original specification nor the source documents', () => {
    const found: string[] = [];
    for (const [file, text] of texts) {
      text.split('\n').forEach((line, i) => {
        if (SPEC_CITATION.test(line) || SOURCE_CITATION.test(line)) found.push(`${relative(root, file)}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(found).toEqual([]);
  });

  it('parses section citations (chained, wrapped, numbered)', () => {
    expect(citationsIn('// see docs/api.md §Token mode, §Cookie\n// mode; and docs/monitoring.md §4.')).toEqual([
      ['docs/api.md', 'Token mode'],
      ['docs/api.md', 'Cookie mode'],
      ['docs/monitoring.md', '4'],
    ]);
    expect(citationsIn('(docs/api.md §Consent redirects ("Consent rules"): at most one')).toEqual([['docs/api.md', 'Consent redirects']]);
    expect(headingMatches(['4. Anomaly rules', 'Token mode'], '4')).toBe(true);
    expect(headingMatches(['4. Anomaly rules', 'Token mode'], 'Cookie mode')).toBe(false);
    expect(headingMatches(['Cookie mode'], 'Cookie mode with a header')).toBe(true);
    expect(headingMatches(['Audit, metrics and anomalies'], 'Audit')).toBe(true);
    expect(headingMatches(['Cookie mode'], 'Cookie modes')).toBe(false);
  });

  it('every document named as docs/<file>.md exists', () => {
    const missing = new Set<string>();
    for (const [file, text] of texts) {
      for (const m of text.matchAll(/\bdocs\/[a-z-]+\.md\b/g)) if (!existsSync(join(root, m[0]))) missing.add(`${relative(root, file)}: ${m[0]}`);
    }
    expect([...missing]).toEqual([]);
  });

  it('every repository path named in code and documents exists', () => {
    // A path from the repository root (or, inside a workspace, from its root); globs and
    // placeholders (`routes/*.ts`, `matrix-<id>.test.ts`) are not paths.
    const path = /(?<![\w./-])((?:src|test|docs|bench|packages|web|eslint|scripts)\/[\w./-]+\.(?:ts|tsx|js|md|json|html|css))\b/g;
    const missing = new Set<string>();
    for (const [file, text] of texts) {
      const pkg = /^((?:packages|web)\/[^/]+)\//.exec(relative(root, file))?.[1];
      for (const m of text.matchAll(path)) {
        const p = m[1]!;
        if (existsSync(join(root, p)) || (pkg !== undefined && existsSync(join(root, pkg, p)))) continue;
        missing.add(`${relative(root, file)}: ${p}`);
      }
    }
    expect([...missing]).toEqual([]);
  });

  it('every cited section exists', () => {
    const headingCache = new Map<string, string[]>();
    const broken: string[] = [];
    for (const [file, text] of texts) {
      for (const [doc, cited] of citationsIn(text)) {
        const path = join(root, doc);
        if (!existsSync(path)) {
          broken.push(`${relative(root, file)}: ${doc} does not exist`);
          continue;
        }
        let headings = headingCache.get(doc);
        if (headings === undefined) {
          headings = headingsOf(readFileSync(path, 'utf8')).texts;
          headingCache.set(doc, headings);
        }
        if (!headingMatches(headings, cited)) broken.push(`${relative(root, file)}: ${doc} §${cited} is no heading of ${doc}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('every relative link of the documents leads to a file and heading that exist', () => {
    const broken: string[] = [];
    const docs = files.filter((f) => f.endsWith('.md'));
    for (const file of docs) {
      const text = texts.get(file)!.replace(/```[\s\S]*?```/g, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
        const [path, fragment] = target.split('#') as [string, string | undefined];
        const abs = path === '' ? file : resolve(dirname(file), path);
        if (!existsSync(abs)) {
          broken.push(`${relative(root, file)}: ${target} (no such file)`);
          continue;
        }
        if (fragment && abs.endsWith('.md') && !headingsOf(readFileSync(abs, 'utf8')).anchors.has(fragment)) {
          broken.push(`${relative(root, file)}: ${target} (no such heading)`);
        }
      }
    }
    expect(broken).toEqual([]);
  });
});
