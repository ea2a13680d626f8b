// Builds a workspace package (run in its directory): dist/ with ESM JavaScript and .d.ts, by tsc
// from the package's tsconfig.build.json. The repository root's `prepare` runs it on npm install.

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const dir = process.cwd();
const require = createRequire(join(dir, 'package.json'));
rmSync(join(dir, 'dist'), { recursive: true, force: true });
const tsc = join(dirname(require.resolve('typescript/package.json')), 'bin', 'tsc');
execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.build.json')], { stdio: 'inherit' });
console.log(`${(require('./package.json') as { name: string }).name}: built dist/`);
