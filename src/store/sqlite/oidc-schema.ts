// The SQLite schema of the OpenID-provider store (src/store/sqlite/oidc.ts), applied as one
// migration in migrations.ts.

export const OIDC_SCHEMA = `
  -- Applications: OIDC clients of Tessera (docs/api.md §Platform applications). Body: the
  -- PlatformApp as JSON, its client secret sealed.
  CREATE TABLE platform_apps (
    client_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    body      TEXT NOT NULL
  ) STRICT;

  -- oidc-provider's records (its adapter interface), by (model, id).
  CREATE TABLE oidc_models (
    model      TEXT NOT NULL,
    id         TEXT NOT NULL,
    payload    TEXT NOT NULL, -- JSON
    grant_id   TEXT,
    uid        TEXT,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (model, id)
  ) STRICT;
  CREATE INDEX oidc_models_by_grant ON oidc_models (grant_id) WHERE grant_id IS NOT NULL;
  CREATE INDEX oidc_models_by_uid ON oidc_models (model, uid) WHERE uid IS NOT NULL;
  CREATE INDEX oidc_models_by_expiry ON oidc_models (expires_at);

  -- An external provider's session (issuer, 'sid:…' or 'sub:…') -> the idp sessions it started.
  CREATE TABLE external_sessions (
    issuer     TEXT NOT NULL,
    key        TEXT NOT NULL,
    idp_handle TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, key, idp_handle)
  ) STRICT;
  CREATE INDEX external_sessions_by_expiry ON external_sessions (expires_at);
`;
