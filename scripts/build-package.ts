// Builds a workspace package (run in its directory): dist/ with ESM JavaScript and .d.ts, by tsc
// from the package's tsconfig.build.json. The repository root's `prepare` runs it on npm install.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const dir = process.cwd();
const require = createRequire(join(dir, 'package.json'));
const name = (require('./package.json') as { name: string }).name;
let tsc: string;
try {
  tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
} catch {
  // An install without devDependencies (npm install --omit=dev) runs the server only; the
  // packages are built where they are developed or packed.
  console.log(`${name}: not built (TypeScript is not installed: devDependencies omitted)`);
  process.exit(0);
}
// Built beside dist/ and moved in file by file (a rename replaces a file atomically), so dist/
// never lacks a file while it is rebuilt: `npm pack` (prepack) runs this while other processes
// import the package from dist/ — test files running at the same time as test/e2e/packages-pack.
const dist = join(dir, 'dist');
const staging = join(dir, `dist.build-${process.pid}`);
rmSync(staging, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.build.json'), '--outDir', staging], { stdio: 'inherit' });
  const built = new Set(readdirSync(staging, { recursive: true, encoding: 'utf8' }));
  mkdirSync(dist, { recursive: true });
  for (const f of [...built].sort()) {
    // Sorted, a folder comes before its files: made in dist/, then its files moved in.
    if (statSync(join(staging, f)).isDirectory()) mkdirSync(join(dist, f), { recursive: true });
    else renameSync(join(staging, f), join(dist, f));
  }
  // Files of an earlier build that this one no longer makes.
  for (const f of readdirSync(dist, { recursive: true, encoding: 'utf8' }).sort().reverse()) {
    if (!built.has(f)) rmSync(join(dist, f), { recursive: true, force: true });
  }
} finally {
  rmSync(staging, { recursive: true, force: true });
}
console.log(`${name}: built dist/`);
