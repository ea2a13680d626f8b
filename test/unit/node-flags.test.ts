import { describe, expect, it } from 'vitest';
import { execWithStartFlags, startFlags, type StartProcess } from '../../src/config/node-flags.ts';

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

// How `tessera start` replaces itself with those flags, or carries on without them, with the
// process's parts given by the test (src/config/node-flags.ts).
describe('tessera start: replacing itself with the flag', () => {
  const SECRET = 'admin-token-value-that-must-not-be-logged-0123456789';

  function fakeProcess(over: Partial<StartProcess> = {}) {
    const execs: { file: string; args: string[]; env: NodeJS.ProcessEnv }[] = [];
    const warnings: { fields: Record<string, string>; msg: string }[] = [];
    const checked: string[] = [];
    const proc: StartProcess = {
      platform: 'linux',
      execPath: '/opt/node/bin/node',
      execArgv: ['--enable-source-maps'],
      argv: ['/opt/node/bin/node', '/srv/tessera/src/cli.ts', 'start'],
      env: { NODE_OPTIONS: '', TESSERA_ADMIN_TOKEN: SECRET },
      execve: (file, args, env) => void execs.push({ file, args, env }),
      checkExecutable: (path) => void checked.push(path),
      warn: (fields, msg) => void warnings.push({ fields, msg }),
      ...over,
    };
    return { proc, execs, warnings, checked };
  }

  function errorWithCode(code: string, message: string): Error {
    return Object.assign(new Error(message), { code });
  }

  it('replaces itself once: the same command and environment, the flag before the first Node flag', () => {
    const { proc, execs, checked } = fakeProcess();
    execWithStartFlags(16, proc);
    expect(checked).toEqual(['/opt/node/bin/node']);
    expect(execs).toEqual([
      {
        file: '/opt/node/bin/node',
        args: ['/opt/node/bin/node', '--min-semi-space-size=16', '--enable-source-maps', '/srv/tessera/src/cli.ts', 'start'],
        env: proc.env,
      },
    ]);
  });

  it.each([['win32'], ['os400']])('does not try on %s (execve exists there but throws), and carries on', (platform) => {
    const { proc, execs, warnings } = fakeProcess({
      platform,
      execve: () => {
        throw errorWithCode('ERR_FEATURE_UNAVAILABLE_ON_PLATFORM', 'not here');
      },
    });
    expect(execWithStartFlags(16, proc)).toBe('unavailable');
    expect(execs).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('does not try where Node has no execve', () => {
    const { proc, warnings } = fakeProcess({ execve: undefined });
    expect(execWithStartFlags(16, proc)).toBe('unavailable');
    expect(warnings).toEqual([]);
  });

  it.each([
    ['ERR_FEATURE_UNAVAILABLE_ON_PLATFORM'],
    ['E2BIG'],
    ['EPERM'],
    // Node's message for a bad argument quotes the whole environment.
    ['ERR_INVALID_ARG_VALUE'],
  ])('carries on when execve throws %s, after one warn line with the code and no environment value', (code) => {
    const { proc, warnings } = fakeProcess({
      execve: () => {
        throw errorWithCode(code, `The argument 'env' is invalid. Received { TESSERA_ADMIN_TOKEN: '${SECRET}' }`);
      },
    });
    expect(execWithStartFlags(16, proc)).toBe('failed');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.fields).toEqual({ flag: '--min-semi-space-size=16', code });
    expect(JSON.stringify(warnings)).not.toContain(SECRET);
  });

  it('an error without a usable code is logged as unknown', () => {
    const { proc, warnings } = fakeProcess({
      execve: () => {
        throw errorWithCode(`E ${SECRET}`, SECRET);
      },
    });
    expect(execWithStartFlags(16, proc)).toBe('failed');
    expect(warnings.map((w) => w.fields.code)).toEqual(['unknown']);
    expect(JSON.stringify(warnings)).not.toContain(SECRET);
  });

  it.each([['EACCES'], ['ENOENT']])(
    'does not call execve when the executable cannot be executed (%s: a Node that aborts on a failed execve(2) would end the start), and carries on',
    (code) => {
      const { proc, execs, warnings } = fakeProcess({
        checkExecutable: () => {
          throw errorWithCode(code, 'no');
        },
      });
      expect(execWithStartFlags(16, proc)).toBe('failed');
      expect(execs).toEqual([]);
      expect(warnings.map((w) => w.fields)).toEqual([{ flag: '--min-semi-space-size=16', code }]);
    },
  );

  it.each([
    [['--min-semi-space-size=8'], ''],
    [[], '--max-semi-space-size=32'],
  ])('does not replace itself when the flag is there already (%o, NODE_OPTIONS %o)', (execArgv, nodeOptions) => {
    const { proc, execs, checked, warnings } = fakeProcess({ execArgv, env: { NODE_OPTIONS: nodeOptions } });
    expect(execWithStartFlags(16, proc)).toBe('no-flags');
    expect(execs).toEqual([]);
    expect(checked).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('does not replace itself with TESSERA_SEMI_SPACE_MB=0', () => {
    const { proc, execs } = fakeProcess();
    expect(execWithStartFlags(0, proc)).toBe('no-flags');
    expect(execs).toEqual([]);
  });
});
