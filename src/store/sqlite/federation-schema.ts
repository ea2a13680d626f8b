// The SQLite schema of the federation store (src/store/sqlite/federation.ts), applied as one
// migration in migrations.ts.

export const FEDERATION_SCHEMA = `
  -- Organizations and their identity providers (docs/api.md §Single sign-on). The body is the
  -- Organization as JSON; its client secret is sealed (AES-256-GCM) before it gets here.
  CREATE TABLE organizations (
    slug      TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    body      TEXT NOT NULL
  ) STRICT;

  -- An account at an external provider, linked to one user. The primary key is what makes a
  -- first login race-free: one (tenant, issuer, subject), one user.
  CREATE TABLE federated_identities (
    tenant_id  TEXT NOT NULL,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, issuer, subject)
  ) STRICT;
  CREATE INDEX federated_identities_by_user ON federated_identities (tenant_id, user_id);

  -- Pre-login flow sessions, keyed as in Redis: 'oidc-session:' or 'oauth-session:' followed by
  -- the SHA-256 of the flow's state. Single use: consuming deletes the row.
  CREATE TABLE sso_flows (
    key          TEXT PRIMARY KEY,
    binding_hash TEXT NOT NULL, -- SHA-256 of the browser's flow-cookie secret
    expires_at   INTEGER NOT NULL,
    body         TEXT NOT NULL  -- JSON of the FlowRecord
  ) STRICT;
  CREATE INDEX sso_flows_by_expiry ON sso_flows (expires_at);
`;
