// OidcStore over SQLite (tables `platform_apps`, `oidc_models`, `external_sessions`; see the
// "oidc" migration). Every write is one BEGIN IMMEDIATE transaction without an `await`, as in
// sqlite-store.ts. Nothing expires by itself: reads ignore records past their expiry, and each
// upsert deletes a few expired ones.

import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import type { ExternalSessionLink, OidcStore, PlatformApp } from '../oidc-port.ts';
import { inWriteTransaction, settle } from './transactions.ts';

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

function prepare(db: DatabaseSync) {
  return {
    putApp: db.prepare(`
      INSERT INTO platform_apps (client_id, tenant_id, body) VALUES ($client_id, $tenant_id, $body)
      ON CONFLICT (client_id) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body`),
    appById: db.prepare('SELECT body FROM platform_apps WHERE client_id = $client_id'),
    appsOfTenant: db.prepare('SELECT body FROM platform_apps WHERE tenant_id = $tenant_id ORDER BY client_id'),
    deleteApp: db.prepare('DELETE FROM platform_apps WHERE client_id = $client_id AND tenant_id = $tenant_id'),
    upsert: db.prepare(`
      INSERT INTO oidc_models (model, id, payload, grant_id, uid, expires_at)
      VALUES ($model, $id, $payload, $grant_id, $uid, $expires_at)
      ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, grant_id = excluded.grant_id,
        uid = excluded.uid, expires_at = excluded.expires_at`),
    find: db.prepare('SELECT payload, expires_at FROM oidc_models WHERE model = $model AND id = $id'),
    findByUid: db.prepare('SELECT payload, expires_at FROM oidc_models WHERE model = $model AND uid = $uid AND expires_at > $now LIMIT 1'),
    destroy: db.prepare('DELETE FROM oidc_models WHERE model = $model AND id = $id'),
    byGrant: db.prepare('DELETE FROM oidc_models WHERE grant_id = $grant_id'),
    prune: db.prepare('DELETE FROM oidc_models WHERE rowid IN (SELECT rowid FROM oidc_models WHERE expires_at <= $now LIMIT 50)'),
    link: db.prepare(`
      INSERT INTO external_sessions (issuer, key, idp_handle, tenant_id, expires_at)
      VALUES ($issuer, $key, $idp_handle, $tenant_id, $expires_at)
      ON CONFLICT (issuer, key, idp_handle) DO UPDATE SET expires_at = excluded.expires_at`),
    links: db.prepare('SELECT * FROM external_sessions WHERE issuer = $issuer AND key = $key AND expires_at > $now'),
    pruneLinks: db.prepare('DELETE FROM external_sessions WHERE rowid IN (SELECT rowid FROM external_sessions WHERE expires_at <= $now LIMIT 50)'),
  };
}

export class SqliteOidcStore implements OidcStore {
  private readonly db: DatabaseSync;
  private readonly stmt: ReturnType<typeof prepare>;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.stmt = prepare(db);
  }

  putApp(app: PlatformApp): Promise<PlatformApp> {
    return this.write(() => {
      this.stmt.putApp.run({ client_id: app.clientId, tenant_id: app.tenantId, body: JSON.stringify(app) });
      return app;
    });
  }

  getApp(clientId: string): Promise<PlatformApp | null> {
    return this.run(() => {
      const row = this.one<{ body: string }>(this.stmt.appById, { client_id: clientId });
      return row ? (JSON.parse(row.body) as PlatformApp) : null;
    });
  }

  listApps(tenantId: string): Promise<PlatformApp[]> {
    return this.run(() => (this.stmt.appsOfTenant.all({ tenant_id: tenantId }) as unknown as { body: string }[]).map((r) => JSON.parse(r.body) as PlatformApp));
  }

  deleteApp(clientId: string, tenantId: string): Promise<boolean> {
    return this.write(() => Number(this.stmt.deleteApp.run({ client_id: clientId, tenant_id: tenantId }).changes) > 0);
  }

  upsertModel(model: string, id: string, payload: Record<string, unknown>, expiresAt: number, now: number): Promise<void> {
    return this.write(() => {
      this.stmt.prune.run({ now });
      this.stmt.upsert.run({
        model,
        id,
        payload: JSON.stringify(payload),
        grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
        uid: typeof payload.uid === 'string' ? payload.uid : null,
        expires_at: expiresAt,
      });
    });
  }

  findModel(model: string, id: string, now: number): Promise<Record<string, unknown> | null> {
    return this.run(() => live(this.one<ModelRow>(this.stmt.find, { model, id }), now));
  }

  findModelByUid(model: string, uid: string, now: number): Promise<Record<string, unknown> | null> {
    return this.run(() => live(this.one<ModelRow>(this.stmt.findByUid, { model, uid, now }), now));
  }

  consumeModel(model: string, id: string, now: number): Promise<void> {
    // Read and write in one transaction: two consumers cannot both see it unconsumed and write.
    return this.write(() => {
      const row = this.one<ModelRow>(this.stmt.find, { model, id });
      const payload = live(row, now);
      if (!payload || !row) return;
      payload.consumed = Math.floor(now / 1000);
      this.stmt.upsert.run({
        model,
        id,
        payload: JSON.stringify(payload),
        grant_id: typeof payload.grantId === 'string' ? payload.grantId : null,
        uid: typeof payload.uid === 'string' ? payload.uid : null,
        expires_at: row.expires_at,
      });
    });
  }

  destroyModel(model: string, id: string): Promise<void> {
    return this.write(() => void this.stmt.destroy.run({ model, id }));
  }

  revokeByGrantId(grantId: string): Promise<void> {
    return this.write(() => void this.stmt.byGrant.run({ grant_id: grantId }));
  }

  linkExternalSession(link: ExternalSessionLink, now: number): Promise<void> {
    return this.write(() => {
      this.stmt.pruneLinks.run({ now });
      this.stmt.link.run({ issuer: link.issuer, key: link.key, idp_handle: link.idpHandle, tenant_id: link.tenantId, expires_at: link.expiresAt });
    });
  }

  findExternalSessions(issuer: string, key: string, now: number): Promise<ExternalSessionLink[]> {
    return this.run(() =>
      (this.stmt.links.all({ issuer, key, now }) as unknown as LinkRow[]).map((r) => ({
        issuer: r.issuer,
        key: r.key,
        idpHandle: r.idp_handle,
        tenantId: r.tenant_id,
        expiresAt: r.expires_at,
      })),
    );
  }

  private one<T>(stmt: StatementSync, params: Record<string, SQLInputValue>): T | undefined {
    return stmt.get(params) as T | undefined;
  }

  private write<T>(fn: () => T): Promise<T> {
    return inWriteTransaction(this.db, fn);
  }

  private run<T>(fn: () => T): Promise<T> {
    return settle(this.db, fn);
  }
}

function live(row: ModelRow | undefined, now: number): Record<string, unknown> | null {
  if (!row || row.expires_at <= now) return null;
  return JSON.parse(row.payload) as Record<string, unknown>;
}
