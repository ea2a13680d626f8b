import { describe, expect, it } from 'vitest';
import { startFlags } from '../../src/config/node-flags.ts';

// The Node flags `tessera start` adds to its own command line (src/config/node-flags.ts).
describe('tessera start: the young generation flag', () => {
  it('keeps the semi-space at TESSERA_SEMI_SPACE_MB at least', () => {
    expect(startFlags(16, [])).toEqual(['--min-semi-space-size=16']);
    expect(startFlags(48, ['--import', 'x.ts', '--enable-source-maps'])).toEqual(['--min-semi-space-size=48']);
  });

  it('adds nothing with TESSERA_SEMI_SPACE_MB=0', () => {
    expect(startFlags(0, [])).toEqual([]);
  });

  it.each([
    [['--min-semi-space-size=8'], ''],
    [['--max-semi-space-size=64'], ''],
    [['--max_semi_space_size=64'], ''],
    [['--min-semi-space-size', '8'], ''],
    [[], '--max-semi-space-size=32 --enable-source-maps'],
    [[], '  --max_semi_space_size=32'],
  ])('leaves the size to the operator who gave one (%o, NODE_OPTIONS %o)', (execArgv, nodeOptions) => {
    expect(startFlags(16, execArgv, nodeOptions)).toEqual([]);
  });

  it('is not misled by other flags that mention the heap', () => {
    expect(startFlags(16, ['--max-old-space-size=4096', '--semi-space-growth-factor=2'], '--max-old-space-size=2048')).toEqual(['--min-semi-space-size=16']);
  });
});
