// OidcStore over PostgreSQL (tables `platform_apps`, `oidc_models`, `external_sessions`;
// migration 5). Nothing expires by itself: reads ignore records past their expiry, and upserts
// delete a few expired ones.

import type { ExternalSessionLink, OidcStore, PlatformApp } from '../oidc-port.ts';
import type { PgDriver } from './driver.ts';

interface ModelRow {
  payload: string;
  expires_at: number;
}

interface LinkRow {
  issuer: string;
  key: string;
  idp_handle: string;
  tenant_id: string;
  expires_at: number;
}

const UPSERT_MODEL = `
  INSERT INTO oidc_models (model, id, payload, grant_id, uid, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
  ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
    uid = excluded.uid, expires_at = excluded.expires_at`;

function modelValues(model: string, id: string, payload: Record<string, unknown>, expiresAt: number): unknown[] {
  return [
    model,
    id,
    JSON.stringify(payload),
    typeof payload.grantId === 'string' ? payload.grantId : null,
    typeof payload.uid === 'string' ? payload.uid : null,
    expiresAt,
  ];
}

export class PostgresOidcStore implements OidcStore {
  readonly #driver: PgDriver;

  constructor(driver: PgDriver) {
    this.#driver = driver;
  }

  async putApp(app: PlatformApp): Promise<PlatformApp> {
    await this.#driver.execute(
      `INSERT INTO platform_apps (client_id, tenant_id, body) VALUES ($1, $2, $3)
       ON CONFLICT (client_id) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body`,
      [app.clientId, app.tenantId, JSON.stringify(app)],
    );
    return app;
  }

  async getApp(clientId: string): Promise<PlatformApp | null> {
    const [row] = await this.#driver.query<{ body: string }>('SELECT body FROM platform_apps WHERE client_id = $1', [clientId]);
    return row ? (JSON.parse(row.body) as PlatformApp) : null;
  }

  async listApps(tenantId: string): Promise<PlatformApp[]> {
    const rows = await this.#driver.query<{ body: string }>('SELECT body FROM platform_apps WHERE tenant_id = $1 ORDER BY client_id', [tenantId]);
    return rows.map((r) => JSON.parse(r.body) as PlatformApp);
  }

  async deleteApp(clientId: string, tenantId: string): Promise<boolean> {
    const [row] = await this.#driver.query<{ client_id: string }>('DELETE FROM platform_apps WHERE client_id = $1 AND tenant_id = $2 RETURNING client_id', [clientId, tenantId]);
    return row !== undefined;
  }

  async upsertModel(model: string, id: string, payload: Record<string, unknown>, expiresAt: number, now: number): Promise<void> {
    await this.#driver.execute(
      `DELETE FROM oidc_models WHERE (model, id) IN (
         SELECT model, id FROM oidc_models WHERE expires_at <= $1 LIMIT 50 FOR UPDATE SKIP LOCKED)`,
      [now],
    );
    await this.#driver.execute(UPSERT_MODEL, modelValues(model, id, payload, expiresAt));
  }

  async findModel(model: string, id: string, now: number): Promise<Record<string, unknown> | null> {
    const [row] = await this.#driver.query<ModelRow>('SELECT payload, expires_at FROM oidc_models WHERE model = $1 AND id = $2', [model, id]);
    return live(row, now);
  }

  async findModelByUid(model: string, uid: string, now: number): Promise<Record<string, unknown> | null> {
    const [row] = await this.#driver.query<ModelRow>(
      'SELECT payload, expires_at FROM oidc_models WHERE model = $1 AND uid = $2 AND expires_at > $3 LIMIT 1',
      [model, uid, now],
    );
    return live(row, now);
  }

  consumeModel(model: string, id: string, now: number): Promise<void> {
    // The record is read FOR UPDATE: two consumers cannot both see it unconsumed and write.
    return this.#driver.transaction(async (tx) => {
      const [row] = await tx.query<ModelRow>('SELECT payload, expires_at FROM oidc_models WHERE model = $1 AND id = $2 FOR UPDATE', [
        model,
        id,
      ]);
      const payload = live(row, now);
      if (!payload || !row) return;
      payload.consumed = Math.floor(now / 1000);
      await tx.execute(UPSERT_MODEL, modelValues(model, id, payload, row.expires_at));
    });
  }

  async destroyModel(model: string, id: string): Promise<void> {
    await this.#driver.execute('DELETE FROM oidc_models WHERE model = $1 AND id = $2', [model, id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.#driver.execute('DELETE FROM oidc_models WHERE grant_id = $1', [grantId]);
  }

  async linkExternalSession(link: ExternalSessionLink, now: number): Promise<void> {
    await this.#driver.execute(
      `DELETE FROM external_sessions WHERE (issuer, key, idp_handle) IN (
         SELECT issuer, key, idp_handle FROM external_sessions WHERE expires_at <= $1 LIMIT 50 FOR UPDATE SKIP LOCKED)`,
      [now],
    );
    await this.#driver.execute(
      `INSERT INTO external_sessions (issuer, key, idp_handle, tenant_id, expires_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (issuer, key, idp_handle) DO UPDATE SET expires_at = excluded.expires_at`,
      [link.issuer, link.key, link.idpHandle, link.tenantId, link.expiresAt],
    );
  }

  async findExternalSessions(issuer: string, key: string, now: number): Promise<ExternalSessionLink[]> {
    const rows = await this.#driver.query<LinkRow>('SELECT * FROM external_sessions WHERE issuer = $1 AND key = $2 AND expires_at > $3', [
      issuer,
      key,
      now,
    ]);
    return rows.map((r) => ({ issuer: r.issuer, key: r.key, idpHandle: r.idp_handle, tenantId: r.tenant_id, expiresAt: r.expires_at }));
  }
}

function live(row: ModelRow | undefined, now: number): Record<string, unknown> | null {
  if (!row || row.expires_at <= now) return null;
  return JSON.parse(row.payload) as Record<string, unknown>;
}
