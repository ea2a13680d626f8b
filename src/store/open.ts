// Opens the store that TESSERA_STORE names.

import type { Config } from '../config/config.ts';
import type { Coordination } from './coordination-port.ts';
import type { SessionStore } from './port.ts';

export type Store = SessionStore & Coordination;

export async function openStore(
  config: Pick<Config, 'store' | 'redisPrefix'> & Partial<Pick<Config, 'storePoolSize' | 'storeStatementTimeoutMs' | 'redisWait' | 'redisUserSessionsMax' | 'redisHotWrites'>>,
): Promise<Store> {
  if (config.store.kind === 'sqlite') {
    const { openSqliteStore } = await import('./sqlite/sqlite-store.ts');
    return (await openSqliteStore(config.store.sqlitePath as string));
  }
  if (config.store.kind === 'postgres') {
    const { openPostgresStore } = await import('./postgres/postgres-store.ts');
    return await openPostgresStore(config.store.url, {
      ...(config.storePoolSize === undefined ? {} : { max: config.storePoolSize }),
      ...(config.storeStatementTimeoutMs === undefined ? {} : { statementTimeoutMs: config.storeStatementTimeoutMs }),
    });
  }
  const { openRedisStore } = await import('./redis/redis-store.ts');
  return await openRedisStore(config.store.url, {
    prefix: config.redisPrefix,
    ...(config.redisUserSessionsMax === undefined ? {} : { maxLiveSessionsPerUser: config.redisUserSessionsMax }),
    ...(config.redisWait ? { replicaWait: config.redisWait } : {}),
    ...(config.redisHotWrites === undefined ? {} : { hotWrites: config.redisHotWrites }),
  });
}
