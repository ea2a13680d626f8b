// `tessera migrate [--dry-run]`: brings the configured store's schema up to date, or says what it
// would apply. Opening a store migrates it too; this lets an operator do it first (and see it).
// PostgreSQL and SQLite have versioned schemas; Redis has none.

import type { Config } from '../config/config.ts';

export interface MigrationReport {
  store: string;
  /** The schema version before (null: the store has no schema). */
  from: number | null;
  to: number | null;
  /** Applied (or, with dryRun, to be applied), in order. */
  migrations: Array<{ version: number; description: string }>;
  dryRun: boolean;
}

export async function migrateStore(
  config: Pick<Config, 'store' | 'storePoolSize' | 'storeStatementTimeoutMs'>,
  dryRun: boolean,
): Promise<MigrationReport> {
  const brief = (ms: ReadonlyArray<{ version: number; description: string }>) => ms.map((m) => ({ version: m.version, description: m.description }));
  if (config.store.kind === 'postgres') {
    const { parsePostgresUrl } = await import('./postgres/url.ts');
    const { openPgDriver } = await import('./postgres/pg-driver.ts');
    const { migrate, planMigrations } = await import('./postgres/migrations.ts');
    // Migrations run DDL that may wait for locks: a generous statement timeout.
    const driver = await openPgDriver(parsePostgresUrl(config.store.url), {
      max: 1,
      statementTimeoutMs: Math.max(config.storeStatementTimeoutMs, 60_000),
    });
    try {
      const plan = dryRun ? await planMigrations(driver) : await migrate(driver);
      return { store: 'postgres', from: plan.current, to: dryRun ? plan.current : plan.latest, migrations: brief(plan.pending), dryRun };
    } finally {
      await driver.close();
    }
  }
  if (config.store.kind === 'sqlite') {
    const { DatabaseSync } = await import('node:sqlite');
    const { existsSync } = await import('node:fs');
    const { migrations, userVersion } = await import('./sqlite/migrations.ts');
    const path = config.store.sqlitePath as string;
    const versionOf = (): number => {
      if (path === ':memory:' || !existsSync(path)) return 0;
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        return userVersion(db);
      } finally {
        db.close();
      }
    };
    if (dryRun) {
      const current = versionOf();
      return { store: 'sqlite', from: current, to: current, migrations: brief(migrations.slice(current)), dryRun };
    }
    const { openSqliteStore } = await import('./sqlite/sqlite-store.ts');
    const before = versionOf();
    const store = await openSqliteStore(path); // opening applies what is missing
    await store.close();
    return { store: 'sqlite', from: before, to: migrations.length, migrations: brief(migrations.slice(before)), dryRun };
  }
  return { store: config.store.kind, from: null, to: null, migrations: [], dryRun };
}
