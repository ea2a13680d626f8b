// The one way a Lua script reaches Redis: EVALSHA, and EVAL when the server does not know the
// script yet (its script cache is empty after a restart or a failover). Every script takes its
// routing key as KEYS[1], which sends the call to that key's hash slot in a Cluster.

import { createHash } from 'node:crypto';
import { ErrorReply } from 'redis';
import type { RedisConnection } from './connection.ts';

export interface LuaScript {
  /** From the source's first line `-- tessera:<name>`, for logs; `script` otherwise. */
  readonly name: string;
  readonly source: string;
  readonly sha1: string;
}

export function luaScript(source: string): LuaScript {
  const name = /^-- tessera:(\S+)/.exec(source.trimStart())?.[1] ?? 'script';
  return { name, source, sha1: createHash('sha1').update(source, 'utf8').digest('hex') };
}

/** Runs `script` with KEYS[1] = `key` and ARGV = `args`. */
export async function evalScript(
  conn: Pick<RedisConnection, 'send'>,
  script: LuaScript,
  key: string,
  args: readonly string[],
): Promise<unknown> {
  const tail = ['1', key, ...args];
  try {
    return await conn.send(key, ['EVALSHA', script.sha1, ...tail]);
  } catch (err) {
    if (!(err instanceof ErrorReply) || !err.message.startsWith('NOSCRIPT')) throw err;
    return conn.send(key, ['EVAL', script.source, ...tail]);
  }
}
