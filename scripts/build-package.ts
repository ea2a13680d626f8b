// Builds a workspace package (run in its directory): dist/ with ESM JavaScript and .d.ts, by tsc
// from the package's tsconfig.build.json. The repository root's `prepare` runs it on npm install.

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
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
rmSync(join(dir, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.build.json')], { stdio: 'inherit' });
console.log(`${name}: built dist/`);
