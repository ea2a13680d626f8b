// `tessera redis-functions prune` (src/store/redis/functions-prune.ts): Functions are kept like
// data (RDB, AOF), so the libraries of older releases pile up; prune deletes the `tessera_*`
// libraries not of this release and nothing else, and a process whose library was deleted loads
// it again. On a redis-server of the test's own (the shared one holds other runs' libraries).

import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LIFETIMES, issueSession } from '../../src/domain/session.ts';
import { openConnection, type RedisConnection } from '../../src/store/redis/connection.ts';
import { pruneFunctions } from '../../src/store/redis/functions-prune.ts';
import { functionLibraries } from '../../src/store/redis/lua.ts';
import { openRedisStore, parseRedisUrl, type RedisSessionStore } from '../../src/store/redis/redis-store.ts';
import { CREATE, GET } from '../../src/store/redis/scripts.ts';
import { redisBinariesMissing, requireOrSkip, startRedisStandalone, testPrefix } from '../support/redis.ts';
import { CLI, PROJECT_ROOT } from '../support/tessera-process.ts';

const skipOwn = requireOrSkip(redisBinariesMissing());

const OLD = 'tessera_create_00000000000000000000';
const OLDER = 'tessera_get_0123456789abcdef0123';
const FOREIGN = 'someone_else';

async function libraries(conn: RedisConnection): Promise<string[]> {
  const reply = (await conn.send(undefined, ['FUNCTION', 'LIST'])) as unknown[][];
  return reply.map((lib) => String(lib[lib.indexOf('library_name') + 1])).sort();
}

const lib = (name: string) => `#!lua name=${name}\nredis.register_function('${name}', function() return 1 end)\n`;

describe.skipIf(skipOwn)('tessera redis-functions prune', () => {
  let server: Awaited<ReturnType<typeof startRedisStandalone>>;
  let admin: RedisConnection;
  let store: RedisSessionStore;
  beforeAll(async () => {
    server = await startRedisStandalone();
    admin = await openConnection(parseRedisUrl(server.url), { connectTimeoutMs: 2000, commandTimeoutMs: 5000 });
    store = await openRedisStore(server.url, { prefix: testPrefix('prune') });
  });
  afterAll(async () => {
    await store?.close();
    await admin?.close();
    await server?.stop();
  });

  it("deletes other releases' libraries and keeps this release's and everyone else's; a deleted library is loaded again", async () => {
    const t0 = Date.now();
    const { session } = issueSession({ tenantId: 't-prune', userId: 'u1', kind: 'app', lifetime: DEFAULT_LIFETIMES.app, authMethod: 'password' }, t0);
    expect((await store.createSession(session, t0)).ok).toBe(true); // loads this release's create
    expect((await store.getSessionByHandle(session.handle))?.handle).toBe(session.handle); // and get
    for (const name of [OLD, OLDER, FOREIGN]) await admin.send(undefined, ['FUNCTION', 'LOAD', lib(name)]);
    const mine = [CREATE.fn?.name as string, GET.fn?.name as string];
    expect(functionLibraries().has(mine[0] as string)).toBe(true);

    const dry = await pruneFunctions(server.url, { dryRun: true });
    expect(dry.deleted.sort()).toEqual([OLD, OLDER]);
    expect(dry.kept.sort()).toEqual([...mine].sort());
    expect(await libraries(admin)).toEqual([...mine, OLD, OLDER, FOREIGN].sort());

    const done = await pruneFunctions(server.url, { dryRun: false });
    expect(done.deleted.sort()).toEqual([OLD, OLDER]);
    expect(await libraries(admin)).toEqual([...mine, FOREIGN].sort());

    // Through the CLI: an old library again, and this release's get deleted behind the store's back.
    await admin.send(undefined, ['FUNCTION', 'LOAD', lib(OLD)]);
    await admin.send(undefined, ['FUNCTION', 'DELETE', GET.fn?.name as string]);
    const cli = spawnSync(process.execPath, [CLI, 'redis-functions', 'prune', '--url', server.url], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TESSERA_LOG_LEVEL: 'warn' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(cli.stderr).toBe('');
    expect(cli.status).toBe(0);
    expect(cli.stdout).toBe(`deleted ${OLD}\n1 deleted, 1 of this release kept\n`);
    expect(await libraries(admin)).toEqual([mine[0] as string, FOREIGN].sort());

    // The store loads what it lost on its next call.
    expect((await store.getSessionByHandle(session.handle))?.handle).toBe(session.handle);
    expect(await libraries(admin)).toEqual([...mine, FOREIGN].sort());
  });

  it('refuses a store that is not Redis (exit 2)', () => {
    const cli = spawnSync(process.execPath, [CLI, 'redis-functions', 'prune'], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', TESSERA_STORE: 'sqlite::memory:' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(cli.status).toBe(2);
    expect(cli.stderr).toMatch(/needs a Redis store/);
  });
});
