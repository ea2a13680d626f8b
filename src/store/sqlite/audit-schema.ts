// The SQLite schema of the audit log (migration 4 in migrations.ts). Like every migration it is
// frozen once released: a later change is a new migration, never an edit here.

export const AUDIT_SCHEMA = `
  -- One row per audit record. \`id\` is the global append order (the live feed reads it);
  -- (tenant_id, seq) is the record's place in its tenant's hash chain. \`body\` is the record as
  -- hashed (src/domain/audit-chain.ts); the other columns are copies for filtering, and the
  -- verifier checks that they agree with the body.
  CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    time       INTEGER NOT NULL,
    type       TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    body       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    UNIQUE (tenant_id, seq)
  ) STRICT;
  CREATE INDEX audit_events_by_time ON audit_events (tenant_id, time, seq);
  CREATE INDEX audit_events_by_user ON audit_events (tenant_id, user_id, seq);
  CREATE INDEX audit_events_by_type ON audit_events (tenant_id, type, seq);

  -- Each tenant's chain: its head (newest record) and, once retention pruned its start, the
  -- anchor (the last pruned record) from which the remaining records verify.
  CREATE TABLE audit_chains (
    tenant_id   TEXT PRIMARY KEY,
    head_seq    INTEGER NOT NULL,
    head_hash   TEXT NOT NULL,
    anchor_seq  INTEGER,
    anchor_hash TEXT
  ) STRICT;

  -- Append-only in the schema too: no code path of Tessera updates a record, and only records
  -- behind the retention anchor may be deleted. (Whoever can write the file can drop these
  -- triggers; the hash chain is what detects that.)
  CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
  END;
  CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN OLD.seq > coalesce((SELECT anchor_seq FROM audit_chains WHERE tenant_id = OLD.tenant_id), 0)
  BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: only records behind the retention anchor may be pruned');
  END;

  -- Active sessions per tenant and kind, moved by the appended events in the same transaction.
  CREATE TABLE audit_active_sessions (
    tenant_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, kind)
  ) STRICT;

  -- What the anomaly rules learned of each user's logins (JSON of UserHistory).
  CREATE TABLE anomaly_history (
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
  ) STRICT;
`;
