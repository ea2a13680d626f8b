// Builds the console into dist/ (type check, then Vite). Run by `npm install` at the repository
// root (its `prepare` builds every workspace).

import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
let tsc: string;
let vite: string;
try {
  tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
  vite = join(dirname(require.resolve('vite/package.json')), 'bin', 'vite.js');
} catch {
  // An install without devDependencies (npm install --omit=dev): /admin/ answers 503
  // console_not_built until the console is built where the devDependencies are.
  console.log('@tessera/admin-console: not built (devDependencies omitted)');
  process.exit(0);
}
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root });
execFileSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], { stdio: 'inherit', cwd: root });
console.log('@tessera/admin-console: built dist/');
