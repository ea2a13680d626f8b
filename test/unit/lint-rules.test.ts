// The layering rules are lint errors: the project's own ESLint configuration, run on fixture
// files (test/fixtures/lint/src, laid out like src/), reports a layer violation, a value import
// of the composition root, a flow importing it at all and an import cycle — and nothing on files
// that follow the rules.

import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import tessera, { LAYERS } from '../../eslint/tessera-rules.js';
import tseslint from 'typescript-eslint';

const fixtures = fileURLToPath(new URL('../fixtures/lint/src/', import.meta.url));

function linter(): ESLint {
  return new ESLint({
    cwd: fileURLToPath(new URL('../fixtures/lint/', import.meta.url)),
    overrideConfigFile: true,
    overrideConfig: [
      {
        files: ['**/*.ts'],
        languageOptions: { parser: tseslint.parser },
        plugins: { tessera },
        rules: { 'tessera/layers': 'error', 'tessera/no-cycle': 'error' },
      },
    ],
  });
}

async function messagesOf(file: string): Promise<string[]> {
  const [result] = await linter().lintFiles([fixtures + file]);
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? ''}: ${m.message}`);
}

describe('lint: layering and cycles', () => {
  it('refuses an import that points up a layer (domain → http)', async () => {
    expect(await messagesOf('domain/uses-http.ts')).toEqual(['tessera/layers: src/domain may not import src/http (docs/architecture.md §1).']);
  });

  it('refuses a value import of the composition root where only `import type` is allowed (http)', async () => {
    expect(await messagesOf('http/runtime-value.ts')).toEqual([
      'tessera/layers: src/http may not import src/runtime.ts except with `import type` (docs/architecture.md §1).',
    ]);
  });

  it('refuses any import of the composition root below http, types included: a flow declares what it uses', async () => {
    expect(await messagesOf('flows/runtime-type.ts')).toEqual(['tessera/layers: src/flows may not import src/runtime.ts (docs/architecture.md §1).']);
  });

  it('lets only the composition root (runtime.ts, server.ts, cli.ts) and http import runtime.ts', () => {
    const importers = Object.entries(LAYERS)
      .filter(([, allowed]) => allowed === '*' || allowed.includes('runtime.ts') || allowed.includes('type:runtime.ts'))
      .map(([layer]) => layer)
      .sort();
    expect(importers).toEqual(['cli.ts', 'http', 'runtime.ts', 'server.ts']);
  });

  it('refuses an import cycle, type-only imports included', async () => {
    const messages = await messagesOf('store/a.ts');
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/^tessera\/no-cycle: Import cycle: src\/store\/a\.ts → src\/store\/b\.ts → src\/store\/a\.ts\.$/);
  });

  it('accepts imports that follow the layers', async () => {
    expect(await messagesOf('http/route.ts')).toEqual([]);
    expect(await messagesOf('domain/shape.ts')).toEqual([]);
  });

  it('names every folder of src/ (a new folder must be given its place)', async () => {
    const { readdirSync } = await import('node:fs');
    const src = fileURLToPath(new URL('../../src/', import.meta.url));
    const missing = readdirSync(src).filter((name) => !(name in LAYERS));
    expect(missing).toEqual([]);
  });
});
