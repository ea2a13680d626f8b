// Each workspace package as a consumer gets it: `npm pack` gives a tarball (its prepack builds
// dist/), the tarballs install into an empty folder (their dependencies from the registry or the
// npm cache), and Node imports each package from that node_modules — as plain JavaScript, since
// Node refuses to strip types inside node_modules.

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../support/tessera-process.ts';

const run = promisify(execFile);
const PACKAGES = ['client', 'react', 'node'] as const;
const dir = mkdtempSync(join(tmpdir(), 'tessera-pack-'));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm pack of each package', () => {
  it('packs, installs into an empty folder and imports', async () => {
    const tarballs: Record<string, string> = {};
    for (const p of PACKAGES) {
      const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: join(PROJECT_ROOT, 'packages', p) });
      const [info] = JSON.parse(stdout.slice(stdout.indexOf('['))) as [{ filename: string; files: { path: string }[] }];
      const files = info.files.map((f) => f.path).sort();
      expect(files).toContain('dist/index.js');
      expect(files).toContain('dist/index.d.ts');
      expect(files).toContain('README.md');
      expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/'))).toEqual([]);
      tarballs[p] = join(dir, info.filename);
    }

    const app = join(dir, 'app');
    rmSync(app, { recursive: true, force: true });
    mkdirSync(app, { recursive: true });
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarballs.client!, tarballs.react!, tarballs.node!, 'react@^19'], { cwd: app });
    expect(readdirSync(join(app, 'node_modules', '@tessera')).sort()).toEqual(['client', 'node', 'react']);

    const probe = `
      const client = await import('@tessera/client');
      const react = await import('@tessera/react');
      const node = await import('@tessera/node');
      const t = client.createTesseraClient({ baseUrl: 'https://auth.example.com', tenantId: 'acme' });
      await t.ready;
      const out = {
        client: Object.keys(client).sort(),
        react: Object.keys(react).sort(),
        node: Object.keys(node).sort(),
        session: t.getSession(),
      };
      t.close();
      console.log(JSON.stringify(out));
    `;
    writeFileSync(join(app, 'probe.mjs'), probe);
    const { stdout } = await run(process.execPath, ['probe.mjs'], { cwd: app });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(out).toEqual({
      client: ['TesseraError', 'createTesseraClient'],
      react: ['TesseraProvider', 'useSession', 'useTessera'],
      node: ['MemoryAppSessionStore', 'TesseraAuthError', 'bearerToken', 'tessera', 'tesseraApp', 'tesseraExpress', 'verifySessionToken'],
      session: null,
    });
  }, 240_000);
});
