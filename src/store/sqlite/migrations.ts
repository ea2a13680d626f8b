// The SQLite schema, versioned in code. `PRAGMA user_version` holds how many migrations the file
// has had; opening a store applies the missing ones in order, in one transaction.

import type { DatabaseSync } from 'node:sqlite';
import { StoreUnavailable } from '../../domain/errors.ts';
import { AUDIT_SCHEMA } from './audit-schema.ts';
import { FEDERATION_SCHEMA } from './federation-schema.ts';
import { OIDC_SCHEMA } from './oidc-schema.ts';

export interface Migration {
  /** 1-based; equal to the migration's position in `migrations` plus one. */
  version: number;
  description: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'sessions, refresh tokens, users, tenants, meta',
    sql: `
      CREATE TABLE sessions (
        handle              TEXT PRIMARY KEY,
        secret_hash         TEXT NOT NULL UNIQUE,
        tenant_id           TEXT NOT NULL,
        user_id             TEXT,
        kind                TEXT NOT NULL CHECK (kind IN ('idp', 'app', 'flow', 'redirect')),
        parent_handle       TEXT REFERENCES sessions (handle),
        status              TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'expired')),
        created_at          INTEGER NOT NULL,
        last_seen_at        INTEGER NOT NULL,
        idle_expires_at     INTEGER,
        absolute_expires_at INTEGER NOT NULL,
        -- min(idle_expires_at, absolute_expires_at): the moment the session stops being valid.
        -- Kept in its own column so that validity, sweeps and status filters use one index.
        expires_at          INTEGER NOT NULL,
        auth_method         TEXT NOT NULL,
        client_id           TEXT,
        device              TEXT NOT NULL, -- JSON
        ended_at            INTEGER,
        revoke_reason       TEXT,
        successor_handle    TEXT,
        data                TEXT NOT NULL  -- JSON
      ) STRICT;
      CREATE INDEX sessions_by_user   ON sessions (tenant_id, user_id, created_at, handle);
      CREATE INDEX sessions_by_tenant ON sessions (tenant_id, created_at, handle);
      CREATE INDEX sessions_by_parent ON sessions (parent_handle) WHERE parent_handle IS NOT NULL;
      CREATE INDEX sessions_active_by_expiry ON sessions (expires_at) WHERE status = 'active';

      CREATE TABLE refresh_tokens (
        token_hash     TEXT PRIMARY KEY,
        session_handle TEXT NOT NULL REFERENCES sessions (handle),
        tenant_id      TEXT NOT NULL,
        user_id        TEXT NOT NULL,
        created_at     INTEGER NOT NULL,
        rotated_at     INTEGER,
        successor_hash TEXT
      ) STRICT;
      CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_handle);

      CREATE TABLE users (
        tenant_id     TEXT NOT NULL,
        id            TEXT NOT NULL,
        email         TEXT NOT NULL,
        password_hash TEXT,
        roles         TEXT NOT NULL, -- JSON array
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, email)
      ) STRICT;

      CREATE TABLE tenants (
        id   TEXT PRIMARY KEY,
        body TEXT NOT NULL -- JSON of the effective Tenant
      ) STRICT;

      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL -- JSON
      ) STRICT;
    `,
  },
  {
    version: 2,
    description: 'coordination: shared counters and the log of session ends',
    sql: `
      -- Fixed-window counters shared by every process on the file (login throttling).
      CREATE TABLE counters (
        key      TEXT PRIMARY KEY,
        count    INTEGER NOT NULL,
        reset_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX counters_by_reset ON counters (reset_at);

      -- Every session that stops being active, in commit order: each process's session cache
      -- reads it from its last seq on, so an end written by any process reaches all of them.
      -- AUTOINCREMENT keeps seqs contiguous and never reused, so a subscriber that finds a gap
      -- knows that pruning removed ends it never saw.
      CREATE TABLE session_ends (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        handle      TEXT NOT NULL,
        recorded_at INTEGER NOT NULL -- wall clock, only for pruning
      ) STRICT;
      CREATE INDEX session_ends_by_time ON session_ends (recorded_at);

      -- A trigger, so that no code path that ends a session can forget to log it.
      CREATE TRIGGER sessions_log_end AFTER UPDATE OF status ON sessions
        WHEN OLD.status = 'active' AND NEW.status <> 'active'
      BEGIN
        INSERT INTO session_ends (handle, recorded_at) VALUES (NEW.handle, CAST(unixepoch('subsec') * 1000 AS INTEGER));
      END;
    `,
  },
  {
    version: 3,
    description: 'consents of users (AIS/PIS)',
    sql: `
      CREATE TABLE consents (
        id              TEXT PRIMARY KEY,
        tenant_id       TEXT NOT NULL,
        user_id         TEXT NOT NULL,
        type            TEXT NOT NULL CHECK (type IN ('ais', 'pis')),
        bank_id         TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'superseded')),
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL, -- until when a pending consent may be settled
        confirmed_at    INTEGER,
        ended_at        INTEGER,
        redirect_handle TEXT,
        started_by      TEXT,
        superseded_by   TEXT,
        payment         TEXT -- JSON, PIS only
      ) STRICT;
      CREATE INDEX consents_by_user ON consents (tenant_id, user_id, created_at, id);
      -- At most one valid AIS consent per user and bank, in the schema (docs/api.md §Consent
      -- redirects).
      CREATE UNIQUE INDEX consents_one_valid_ais ON consents (tenant_id, user_id, bank_id)
        WHERE type = 'ais' AND status = 'confirmed';
    `,
  },
  {
    version: 4,
    description: 'audit log (hash chain per tenant), active-session gauge, anomaly history',
    sql: AUDIT_SCHEMA,
  },
  {
    version: 5,
    description: 'federation: organizations, linked identities, SSO flow sessions',
    sql: FEDERATION_SCHEMA,
  },
  {
    version: 6,
    description: 'oidc: platform applications, oidc-provider records, external-session index',
    sql: OIDC_SCHEMA,
  },
  {
    version: 7,
    description: 'users: whether the email came from a verified source (NULL: written before, see emailFromVerifiedSource)',
    sql: 'ALTER TABLE users ADD COLUMN email_verified INTEGER;',
  },
  {
    version: 8,
    description: 'sessions: ended ones by absolute expiry, for the retention purge',
    sql: "CREATE INDEX sessions_ended_by_absolute ON sessions (absolute_expires_at) WHERE status != 'active';",
  },
  {
    version: 9,
    description: 'users: disabled by an administrator',
    sql: 'ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;',
  },
  {
    version: 10,
    description: 'banks per tenant, work queued for banks; consents: bank ids, validUntil, revoked and expired stored',
    sql: `
      CREATE TABLE consents_new (
        id              TEXT PRIMARY KEY,
        tenant_id       TEXT NOT NULL,
        user_id         TEXT NOT NULL,
        type            TEXT NOT NULL CHECK (type IN ('ais', 'pis')),
        bank_id         TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'superseded', 'revoked', 'expired')),
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL, -- until when a pending consent may be settled
        confirmed_at    INTEGER,
        ended_at        INTEGER,
        redirect_handle TEXT,
        started_by      TEXT,
        superseded_by   TEXT,
        payment         TEXT, -- JSON, PIS only
        bank_consent_id TEXT, -- the bank's consentId / paymentId
        valid_until     INTEGER -- AIS: end of the agreed validUntil day
      ) STRICT;
      INSERT INTO consents_new (id, tenant_id, user_id, type, bank_id, status, created_at, expires_at, confirmed_at, ended_at,
        redirect_handle, started_by, superseded_by, payment)
        SELECT id, tenant_id, user_id, type, bank_id, status, created_at, expires_at, confirmed_at, ended_at,
          redirect_handle, started_by, superseded_by, payment FROM consents;
      DROP TABLE consents;
      ALTER TABLE consents_new RENAME TO consents;
      CREATE INDEX consents_by_user ON consents (tenant_id, user_id, created_at, id);
      CREATE UNIQUE INDEX consents_one_valid_ais ON consents (tenant_id, user_id, bank_id)
        WHERE type = 'ais' AND status = 'confirmed';

      CREATE TABLE banks (
        tenant_id  TEXT NOT NULL,
        bank_id    TEXT NOT NULL,
        record     TEXT NOT NULL, -- JSON of domain/bank.ts Bank (the client key sealed)
        PRIMARY KEY (tenant_id, bank_id)
      ) STRICT;

      CREATE TABLE bank_work (
        work     TEXT PRIMARY KEY, -- bank-port.ts workKey
        due_at   INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
      ) STRICT;
      CREATE INDEX bank_work_by_due ON bank_work (due_at);
    `,
  },
  {
    version: 11,
    description: 'coordination: the log of messages between the processes on the file (presence, acknowledgements)',
    sql: `
      -- Coordination.publishToPeers: every process reads it from its last seq on, with the log of
      -- session ends. Fire-and-forget, so only recent rows matter; the expiry sweep prunes it.
      CREATE TABLE peer_messages (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        message     TEXT NOT NULL,
        recorded_at INTEGER NOT NULL -- wall clock, only for pruning
      ) STRICT;
      CREATE INDEX peer_messages_by_time ON peer_messages (recorded_at);
    `,
  },
];

/**
 * Brings the file up to the newest schema. Runs under BEGIN IMMEDIATE and reads the version
 * inside the transaction: closes the race of two processes opening a fresh file at once (the
 * second waits for the first, then sees its version and applies nothing).
 */
export function migrate(db: DatabaseSync): number {
  db.exec('BEGIN IMMEDIATE');
  try {
    const current = userVersion(db);
    const latest = migrations.length;
    if (current > latest) {
      throw new StoreUnavailable(
        `The database schema is version ${current}, newer than this Tessera knows (${latest}); upgrade Tessera.`,
      );
    }
    for (const m of migrations.slice(current)) {
      db.exec(m.sql);
      // PRAGMA takes no bound parameters; the version is an integer from this file.
      db.exec(`PRAGMA user_version = ${m.version}`);
    }
    db.exec('COMMIT');
    return latest;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

export function userVersion(db: DatabaseSync): number {
  const row = db.prepare('PRAGMA user_version').get() as { user_version: number } | undefined;
  return row?.user_version ?? 0;
}
