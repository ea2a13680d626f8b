// Builds dist/ (ESM + .d.ts with tsc) and prints the bundle's size minified + gzip.
// Run by `npm install` at the repository root (its `prepare` builds every workspace).

import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
let tsc: string;
try {
  tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
} catch {
  // An install without devDependencies (npm install --omit=dev) runs the server only.
  console.log('@tessera/client: not built (TypeScript is not installed: devDependencies omitted)');
  process.exit(0);
}
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });

const code = readFileSync(join(root, 'dist', 'index.js'), 'utf8');
const raw = gzipSync(code, { level: 9 }).length;
let line = `@tessera/client: dist/index.js ${code.length} B, gzip ${raw} B`;
try {
  // rolldown's minifier (oxc) comes with vitest's toolchain; the size is informative only.
  const { minify } = (await import('rolldown/experimental')) as { minify: (f: string, c: string, o?: object) => Promise<{ code: string }> };
  const min = (await minify('index.js', code, { compress: true, mangle: true })).code;
  writeFileSync(join(root, 'dist', 'index.min.js'), min);
  line += `; minified ${min.length} B, minified + gzip ${gzipSync(min, { level: 9 }).length} B (dist/index.min.js)`;
} catch (err) {
  line += ` (no minifier available: ${(err as Error).message.split('\n')[0]})`;
}
console.log(line);
