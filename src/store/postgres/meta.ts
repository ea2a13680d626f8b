// Server metadata on PostgreSQL (meta-port.ts).

import type { MetaStore } from '../meta-port.ts';
import type { PgDriver } from './driver.ts';

export class PostgresMeta implements MetaStore {
  private readonly driver: PgDriver;

  constructor(driver: PgDriver) {
    this.driver = driver;
  }

  async getMeta(key: string): Promise<unknown> {
    const [row] = await this.driver.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key]);
    return row ? (JSON.parse(row.value) as unknown) : null;
  }

  async putMetaIfAbsent(key: string, value: unknown): Promise<unknown> {
    // Race: two servers start at once, each generating a signing key. ON CONFLICT DO NOTHING waits
    // for a concurrent insert of the key and does nothing once it commits; the next statement
    // (a new snapshot) reads the winner's value, so both return the same.
    await this.driver.execute('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, JSON.stringify(value)]);
    const [row] = await this.driver.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key]);
    return JSON.parse(row!.value) as unknown;
  }

  async putMeta(key: string, value: unknown): Promise<void> {
    await this.driver.execute('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [
      key,
      JSON.stringify(value),
    ]);
  }
}
