// The PostgreSQL schema, versioned in code. The table `tessera_migrations` lists the versions a
// database has had; opening a store (and `tessera migrate`) applies the missing ones in order,
// all in one transaction with their rows in that table (PostgreSQL's DDL is transactional: a
// failing migration leaves the database as it was). A migration is frozen once released: a later
// change is a new migration, never an edit of an old one.
//
// Two processes starting at once: the run holds a transaction-level advisory lock
// (MIGRATION_LOCK), so the second waits for the first and then finds nothing left to apply.

import { StoreUnavailable } from '../../domain/errors.ts';
import type { PgDriver, Sql } from './driver.ts';

export interface Migration {
  /** 1-based; equal to the migration's position in `migrations` plus one. */
  version: number;
  description: string;
  sql: string;
}

/** pg_advisory_lock key of the migration run (any constant that no other lock here uses). */
export const MIGRATION_LOCK = 7_370_001;

/** The channels of NOTIFY (see the triggers below). */
export const SESSION_ENDS_CHANNEL = 'tessera_session_ends';
export const AUDIT_CHANNEL = 'tessera_audit';
/** Between the Tessera processes on the database (Coordination.publishToPeers): no trigger, no table. */
export const PEERS_CHANNEL = 'tessera_peers';

export const migrations: readonly Migration[] = [
  {
    version: 1,
    description: 'sessions, refresh tokens, users, tenants, meta, counters; NOTIFY of session ends',
    sql: `
      CREATE TABLE sessions (
        -- Handles, emails and consent ids sort and compare byte-wise (COLLATE "C"), as in SQLite
        -- and Redis, whatever the database's default collation: listings and their cursors agree.
        handle              text COLLATE "C" PRIMARY KEY,
        secret_hash         text NOT NULL UNIQUE,
        tenant_id           text NOT NULL,
        user_id             text,
        kind                text NOT NULL CHECK (kind IN ('idp', 'app', 'flow', 'redirect')),
        parent_handle       text REFERENCES sessions (handle),
        status              text NOT NULL CHECK (status IN ('active', 'revoked', 'expired')),
        created_at          bigint NOT NULL,
        last_seen_at        bigint NOT NULL,
        idle_expires_at     bigint,
        absolute_expires_at bigint NOT NULL,
        -- least(idle_expires_at, absolute_expires_at): when the session stops being valid.
        expires_at          bigint NOT NULL,
        auth_method         text NOT NULL,
        client_id           text,
        device              text NOT NULL, -- JSON
        ended_at            bigint,
        revoke_reason       text,
        successor_handle    text,
        data                text NOT NULL  -- JSON, kept as written (no jsonb normalisation)
      );
      CREATE INDEX sessions_by_user   ON sessions (tenant_id, user_id, created_at, handle);
      CREATE INDEX sessions_by_tenant ON sessions (tenant_id, created_at, handle);
      CREATE INDEX sessions_by_parent ON sessions (parent_handle) WHERE parent_handle IS NOT NULL;
      CREATE INDEX sessions_active_by_expiry ON sessions (expires_at) WHERE status = 'active';
      CREATE INDEX sessions_ended_by_absolute ON sessions (absolute_expires_at) WHERE status <> 'active';

      CREATE TABLE refresh_tokens (
        token_hash     text PRIMARY KEY,
        session_handle text NOT NULL REFERENCES sessions (handle),
        tenant_id      text NOT NULL,
        user_id        text NOT NULL,
        created_at     bigint NOT NULL,
        rotated_at     bigint,
        successor_hash text
      );
      CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_handle);

      CREATE TABLE users (
        tenant_id      text NOT NULL,
        id             text COLLATE "C" NOT NULL,
        email          text COLLATE "C" NOT NULL,
        password_hash  text,
        roles          text NOT NULL, -- JSON array
        email_verified boolean,
        disabled       boolean NOT NULL DEFAULT false,
        created_at     bigint NOT NULL,
        updated_at     bigint NOT NULL,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, email)
      );

      CREATE TABLE tenants (
        id   text COLLATE "C" PRIMARY KEY,
        body text NOT NULL -- JSON of the effective Tenant
      );

      CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL -- JSON
      );

      CREATE TABLE counters (
        key      text PRIMARY KEY,
        count    bigint NOT NULL,
        reset_at bigint NOT NULL
      );
      CREATE INDEX counters_by_reset ON counters (reset_at);

      -- The feed of session ends: a trigger, so that no code path that ends a session can forget
      -- to publish it. NOTIFY is delivered after the commit, in commit order, to every process
      -- that LISTENs on this database.
      CREATE FUNCTION tessera_notify_session_end() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_notify('${SESSION_ENDS_CHANNEL}', NEW.handle);
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER sessions_notify_end AFTER UPDATE OF status ON sessions
        FOR EACH ROW WHEN (OLD.status = 'active' AND NEW.status <> 'active')
        EXECUTE FUNCTION tessera_notify_session_end();
    `,
  },
  {
    version: 2,
    description: 'consents of users (AIS/PIS)',
    sql: `
      CREATE TABLE consents (
        id              text COLLATE "C" PRIMARY KEY,
        tenant_id       text NOT NULL,
        user_id         text NOT NULL,
        type            text NOT NULL CHECK (type IN ('ais', 'pis')),
        bank_id         text NOT NULL,
        status          text NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected', 'superseded')),
        created_at      bigint NOT NULL,
        expires_at      bigint NOT NULL,
        confirmed_at    bigint,
        ended_at        bigint,
        redirect_handle text,
        started_by      text,
        superseded_by   text,
        payment         text -- JSON, PIS only
      );
      CREATE INDEX consents_by_user ON consents (tenant_id, user_id, created_at, id);
      -- At most one valid AIS consent per user and bank, in the schema too.
      CREATE UNIQUE INDEX consents_one_valid_ais ON consents (tenant_id, user_id, bank_id)
        WHERE type = 'ais' AND status = 'confirmed';
    `,
  },
  {
    version: 3,
    description: 'audit log (hash chain per tenant, append-only by triggers), active-session gauge, anomaly history',
    sql: `
      CREATE TABLE audit_events (
        id         bigserial PRIMARY KEY,
        tenant_id  text NOT NULL,
        seq        bigint NOT NULL,
        time       bigint NOT NULL,
        type       text NOT NULL,
        user_id    text,
        session_id text,
        body       text NOT NULL, -- the record as hashed (src/domain/audit-chain.ts)
        prev_hash  text NOT NULL,
        hash       text NOT NULL,
        UNIQUE (tenant_id, seq)
      );
      CREATE INDEX audit_events_by_time ON audit_events (tenant_id, time, seq);
      CREATE INDEX audit_events_by_user ON audit_events (tenant_id, user_id, seq);
      CREATE INDEX audit_events_by_type ON audit_events (tenant_id, type, seq);

      CREATE TABLE audit_chains (
        tenant_id   text PRIMARY KEY,
        head_seq    bigint NOT NULL,
        head_hash   text NOT NULL,
        anchor_seq  bigint,
        anchor_hash text
      );

      -- Append-only in the database: no UPDATE at all, no TRUNCATE, and DELETE only of records
      -- behind the retention anchor (prune moves the anchor first). A role that may drop
      -- triggers can still get round this; the hash chain is what detects that.
      CREATE FUNCTION tessera_audit_no_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'P0001';
      END
      $fn$;
      CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION tessera_audit_no_update();
      CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION tessera_audit_no_update();
      CREATE FUNCTION tessera_audit_no_delete() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        IF OLD.seq > coalesce((SELECT anchor_seq FROM audit_chains WHERE tenant_id = OLD.tenant_id), 0) THEN
          RAISE EXCEPTION 'the audit log is append-only: only records behind the retention anchor may be pruned'
            USING ERRCODE = 'P0001';
        END IF;
        RETURN OLD;
      END
      $fn$;
      CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION tessera_audit_no_delete();

      -- The live feed: the id of each appended record, after the commit, to every listener.
      CREATE FUNCTION tessera_notify_audit() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM pg_notify('${AUDIT_CHANNEL}', NEW.id::text);
        RETURN NULL;
      END
      $fn$;
      CREATE TRIGGER audit_events_notify AFTER INSERT ON audit_events
        FOR EACH ROW EXECUTE FUNCTION tessera_notify_audit();

      CREATE TABLE audit_active_sessions (
        tenant_id text NOT NULL,
        kind      text NOT NULL,
        count     bigint NOT NULL,
        PRIMARY KEY (tenant_id, kind)
      );

      CREATE TABLE anomaly_history (
        tenant_id  text NOT NULL,
        user_id    text NOT NULL,
        body       text NOT NULL, -- JSON of UserHistory
        updated_at bigint NOT NULL,
        PRIMARY KEY (tenant_id, user_id)
      );
    `,
  },
  {
    version: 4,
    description: 'federation: organizations, linked identities, SSO flow sessions',
    sql: `
      CREATE TABLE organizations (
        slug      text PRIMARY KEY,
        tenant_id text NOT NULL,
        body      text NOT NULL
      );
      CREATE TABLE federated_identities (
        tenant_id  text NOT NULL,
        issuer     text NOT NULL,
        subject    text NOT NULL,
        user_id    text NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (tenant_id, issuer, subject)
      );
      CREATE INDEX federated_identities_by_user ON federated_identities (tenant_id, user_id);
      CREATE TABLE sso_flows (
        key          text PRIMARY KEY,
        binding_hash text NOT NULL,
        expires_at   bigint NOT NULL,
        body         text NOT NULL
      );
      CREATE INDEX sso_flows_by_expiry ON sso_flows (expires_at);
    `,
  },
  {
    version: 5,
    description: 'oidc: platform applications, oidc-provider records, external-session index',
    sql: `
      CREATE TABLE platform_apps (
        client_id text PRIMARY KEY,
        tenant_id text NOT NULL,
        body      text NOT NULL
      );
      CREATE TABLE oidc_models (
        model      text NOT NULL,
        id         text NOT NULL,
        payload    text NOT NULL,
        grant_id   text,
        uid        text,
        expires_at bigint NOT NULL,
        PRIMARY KEY (model, id)
      );
      CREATE INDEX oidc_models_by_grant ON oidc_models (grant_id) WHERE grant_id IS NOT NULL;
      CREATE INDEX oidc_models_by_uid ON oidc_models (model, uid) WHERE uid IS NOT NULL;
      CREATE INDEX oidc_models_by_expiry ON oidc_models (expires_at);
      CREATE TABLE external_sessions (
        issuer     text NOT NULL,
        key        text NOT NULL,
        idp_handle text NOT NULL,
        tenant_id  text NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (issuer, key, idp_handle)
      );
      CREATE INDEX external_sessions_by_expiry ON external_sessions (expires_at);
    `,
  },
  {
    version: 6,
    description: 'banks per tenant, work queued for banks; consents: bank ids, validUntil, revoked and expired stored',
    sql: `
      ALTER TABLE consents ADD COLUMN bank_consent_id text;
      ALTER TABLE consents ADD COLUMN valid_until bigint;
      ALTER TABLE consents DROP CONSTRAINT consents_status_check;
      ALTER TABLE consents ADD CONSTRAINT consents_status_check
        CHECK (status IN ('pending', 'confirmed', 'rejected', 'superseded', 'revoked', 'expired'));
      CREATE TABLE banks (
        tenant_id text NOT NULL,
        bank_id   text NOT NULL,
        record    text NOT NULL, -- JSON of domain/bank.ts Bank (the client key sealed)
        PRIMARY KEY (tenant_id, bank_id)
      );
      CREATE TABLE bank_work (
        work     text COLLATE "C" PRIMARY KEY, -- bank-port.ts workKey
        due_at   bigint NOT NULL,
        attempts integer NOT NULL DEFAULT 0
      );
      CREATE INDEX bank_work_by_due ON bank_work (due_at);
    `,
  },
];

export interface MigrationPlan {
  current: number;
  latest: number;
  pending: Migration[];
}

const LEDGER = `
  CREATE TABLE IF NOT EXISTS tessera_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
  )`;

async function currentVersion(sql: Sql): Promise<number> {
  const [ledger] = await sql.query<{ t: string | null }>("SELECT to_regclass('tessera_migrations')::text AS t");
  if (!ledger?.t) return 0;
  const [row] = await sql.query<{ v: number | null }>('SELECT coalesce(max(version), 0) AS v FROM tessera_migrations');
  return Number(row?.v ?? 0);
}

/** What `migrate` would apply, without changing anything (`tessera migrate --dry-run`). */
export async function planMigrations(driver: PgDriver): Promise<MigrationPlan> {
  const current = await currentVersion(driver);
  return plan(current);
}

function plan(current: number): MigrationPlan {
  const latest = migrations.length;
  if (current > latest) {
    throw new StoreUnavailable(
      `The database schema is version ${current}, newer than this Tessera knows (${latest}); upgrade Tessera.`,
    );
  }
  return { current, latest, pending: migrations.slice(current) };
}

/**
 * Applies the missing migrations in one transaction with their ledger rows, under the
 * migration lock. Resolves to what was applied.
 */
export async function migrate(driver: PgDriver): Promise<MigrationPlan> {
  return driver.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.execute(LEDGER);
    const p = plan(await currentVersion(tx));
    for (const m of p.pending) {
      await tx.execute(m.sql);
      await tx.execute('INSERT INTO tessera_migrations (version, description) VALUES ($1, $2)', [m.version, m.description]);
    }
    return p;
  });
}
