// Tessera's own lint rules: the layering of docs/architecture.md §1 as errors.
//
//   tessera/layers    an import from one folder of src/ into another must be allowed by LAYERS
//   tessera/no-cycle  no import cycle between files of src/ (type-only imports included)
//
// Both look only at relative imports; packages and node: built-ins are not layers.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * Which folders (or root files) of src/ each one may import, besides itself. `type:` entries
 * may be imported with `import type` only (shapes, no behaviour). Dependencies point down:
 * routes (http) → flows → sessions/auth/tokens/audit → store → domain. Only the composition root
 * (runtime.ts, server.ts, cli.ts) and http may import runtime.ts; every other module declares the
 * dependencies it uses (e.g. `SessionDeps` in sessions/app-sessions.ts).
 */
export const LAYERS = {
  domain: [],
  events: ['domain'],
  net: ['domain'],
  config: ['domain', 'net', 'audit'],
  store: ['domain', 'type:config'],
  tokens: ['domain', 'type:store', 'type:config'],
  auth: ['domain', 'net', 'tokens', 'type:store'],
  banks: ['domain', 'auth', 'net'],
  audit: ['domain', 'config', 'type:events', 'type:store'],
  sessions: ['domain', 'events', 'store', 'tokens', 'audit', 'type:config'],
  flows: ['domain', 'events', 'store', 'tokens', 'audit', 'auth', 'banks', 'net', 'sessions', 'type:config'],
  http: ['domain', 'events', 'store', 'tokens', 'audit', 'auth', 'net', 'banks', 'sessions', 'flows', 'type:config', 'type:runtime.ts'],
  client: ['domain'],
  /** The bank simulator for demos and tests: stands alone (only cli.ts starts it). */
  'bank-simulator': ['domain'],
  'runtime.ts': '*',
  'server.ts': '*',
  'cli.ts': '*',
};

/** The folder (or root file) of src/ that `file` belongs to, or null outside src/. */
function layerOf(srcRoot, file) {
  const rel = relative(srcRoot, file);
  if (rel.startsWith('..') || rel === '') return null;
  return rel.split(sep)[0];
}

function srcRootOf(file) {
  let dir = dirname(file);
  for (;;) {
    if (dir.endsWith(`${sep}src`)) return dir;
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

function resolveImport(fromFile, spec) {
  if (!spec.startsWith('.')) return null;
  return resolve(dirname(fromFile), spec);
}

function importsOf(node) {
  const out = [];
  for (const stmt of node.body) {
    if ((stmt.type === 'ImportDeclaration' || stmt.type === 'ExportNamedDeclaration' || stmt.type === 'ExportAllDeclaration') && stmt.source) {
      const typeOnly =
        stmt.importKind === 'type' ||
        stmt.exportKind === 'type' ||
        (stmt.type === 'ImportDeclaration' && stmt.specifiers.length > 0 && stmt.specifiers.every((s) => s.importKind === 'type'));
      out.push({ node: stmt, spec: String(stmt.source.value), typeOnly });
    }
  }
  return out;
}

const layers = {
  meta: { type: 'problem', docs: { description: 'Imports between folders of src/ follow docs/architecture.md §1' }, schema: [] },
  create(context) {
    const file = context.filename;
    const root = srcRootOf(file);
    if (root === null) return {};
    const from = layerOf(root, file);
    const allowed = LAYERS[from];
    if (allowed === undefined || allowed === '*') return {};
    return {
      Program(program) {
        for (const imp of importsOf(program)) {
          const target = resolveImport(file, imp.spec);
          if (target === null) continue;
          const to = layerOf(root, target);
          if (to === null || to === from) continue;
          if (allowed.includes(to) || (imp.typeOnly && allowed.includes(`type:${to}`))) continue;
          const how = allowed.includes(`type:${to}`) ? ' except with `import type`' : '';
          context.report({ node: imp.node, message: `src/${from} may not import src/${to}${how} (docs/architecture.md §1).` });
        }
      },
    };
  },
};

/** Relative imports of a file read from disk (type-only ones included), memoised per run. */
const graph = new Map();
function edgesOf(file) {
  let e = graph.get(file);
  if (e !== undefined) return e;
  e = [];
  graph.set(file, e);
  if (!existsSync(file)) return e;
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)) {
    e.push(resolve(dirname(file), m[1]));
  }
  return e;
}

/** A path from `start` back to `goal` through the import graph, or null. */
function pathBack(start, goal) {
  const seen = new Set();
  const stack = [[start, [start]]];
  while (stack.length > 0) {
    const [f, path] = stack.pop();
    if (f === goal) return path;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const next of edgesOf(f)) stack.push([next, [...path, next]]);
  }
  return null;
}

const noCycle = {
  meta: { type: 'problem', docs: { description: 'No import cycle between files of src/' }, schema: [] },
  create(context) {
    const file = context.filename;
    const root = srcRootOf(file);
    if (root === null) return {};
    return {
      Program(program) {
        graph.delete(file); // the file as linted now, not as read before
        for (const imp of importsOf(program)) {
          const target = resolveImport(file, imp.spec);
          if (target === null) continue;
          const back = pathBack(target, file);
          if (back !== null) {
            const shown = [file, ...back].map((f) => relative(join(root, '..'), f)).join(' → ');
            context.report({ node: imp.node, message: `Import cycle: ${shown}.` });
          }
        }
      },
    };
  },
};

export default { rules: { layers, 'no-cycle': noCycle } };
