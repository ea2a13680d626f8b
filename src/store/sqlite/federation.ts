// FederationStore over SQLite (tables `organizations`, `federated_identities`, `sso_flows`; see
// the "federation" migration). Same discipline as sqlite-store.ts: every write is one
// BEGIN IMMEDIATE transaction without an `await`, so a read-decide-write cannot interleave with
// another connection or process on the file.
//
// Flows are keyed like their Redis counterparts (`oidc-session:<sha256(state)>`). SQLite has no
// key expiry: a flow past its expiry reads as expired, and each new flow deletes the expired
// ones (the index on expires_at keeps that cheap).

import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { Conflict } from '../../domain/errors.ts';
import type { FederatedIdentity, FederationProtocol, Organization } from '../../domain/organization.ts';
import { FLOW_KEY_PREFIX, type ConsumeFlowResult, type FederationStore, type FlowRecord } from '../federation-port.ts';
import { inWriteTransaction, settle } from './transactions.ts';

interface IdentityRow {
  tenant_id: string;
  issuer: string;
  subject: string;
  user_id: string;
  created_at: number;
}

interface FlowRow {
  key: string;
  binding_hash: string;
  expires_at: number;
  body: string;
}

function identityFromRow(r: IdentityRow): FederatedIdentity {
  return { tenantId: r.tenant_id, issuer: r.issuer, subject: r.subject, userId: r.user_id, createdAt: r.created_at };
}

function prepare(db: DatabaseSync) {
  return {
    putOrg: db.prepare(`
      INSERT INTO organizations (slug, tenant_id, body) VALUES ($slug, $tenant_id, $body)
      ON CONFLICT (slug) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body`),
    orgBySlug: db.prepare('SELECT body FROM organizations WHERE slug = $slug'),
    orgOwner: db.prepare('SELECT tenant_id FROM organizations WHERE slug = $slug'),
    orgsOfTenant: db.prepare('SELECT body FROM organizations WHERE tenant_id = $tenant_id ORDER BY slug'),
    deleteOrg: db.prepare('DELETE FROM organizations WHERE slug = $slug AND tenant_id = $tenant_id'),
    identitiesOfTenant: db.prepare('SELECT * FROM federated_identities WHERE tenant_id = $tenant_id ORDER BY issuer, subject'),
    deleteIdentities: db.prepare('DELETE FROM federated_identities WHERE tenant_id = $tenant_id'),
    identity: db.prepare('SELECT * FROM federated_identities WHERE tenant_id = $tenant_id AND issuer = $issuer AND subject = $subject'),
    linkIdentity: db.prepare(`
      INSERT INTO federated_identities (tenant_id, issuer, subject, user_id, created_at)
      VALUES ($tenant_id, $issuer, $subject, $user_id, $created_at)
      ON CONFLICT (tenant_id, issuer, subject) DO NOTHING`),
    insertFlow: db.prepare(`
      INSERT INTO sso_flows (key, binding_hash, expires_at, body) VALUES ($key, $binding_hash, $expires_at, $body)
      ON CONFLICT (key) DO NOTHING`),
    flowByKey: db.prepare('SELECT * FROM sso_flows WHERE key = $key'),
    deleteFlow: db.prepare('DELETE FROM sso_flows WHERE key = $key'),
    pruneFlows: db.prepare('DELETE FROM sso_flows WHERE expires_at <= $now'),
  };
}

export class SqliteFederationStore implements FederationStore {
  private readonly db: DatabaseSync;
  private readonly stmt: ReturnType<typeof prepare>;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.stmt = prepare(db);
  }

  putOrganization(org: Organization, expectedTenantId: string | null): Promise<Organization> {
    // Read and write under one write lock: the compare-and-set of the slug's owner.
    return this.write(() => {
      const current = this.one<{ tenant_id: string }>(this.stmt.orgOwner, { slug: org.slug });
      if ((current?.tenant_id ?? null) !== expectedTenantId) {
        throw new Conflict('org_changed', `The organization "${org.slug}" changed meanwhile; read it again.`);
      }
      this.stmt.putOrg.run({ slug: org.slug, tenant_id: org.tenantId, body: JSON.stringify(org) });
      return org;
    });
  }

  getOrganization(slug: string): Promise<Organization | null> {
    return this.run(() => {
      const row = this.one<{ body: string }>(this.stmt.orgBySlug, { slug });
      return row ? (JSON.parse(row.body) as Organization) : null;
    });
  }

  listOrganizations(tenantId: string): Promise<Organization[]> {
    return this.run(() => (this.stmt.orgsOfTenant.all({ tenant_id: tenantId }) as unknown as { body: string }[]).map((r) => JSON.parse(r.body) as Organization));
  }

  deleteOrganization(slug: string, tenantId: string): Promise<boolean> {
    return this.write(() => Number(this.stmt.deleteOrg.run({ slug, tenant_id: tenantId }).changes) > 0);
  }

  listIdentities(tenantId: string): Promise<FederatedIdentity[]> {
    return this.run(() => (this.stmt.identitiesOfTenant.all({ tenant_id: tenantId }) as unknown as IdentityRow[]).map(identityFromRow));
  }

  deleteIdentities(tenantId: string): Promise<number> {
    return this.write(() => Number(this.stmt.deleteIdentities.run({ tenant_id: tenantId }).changes));
  }

  findIdentity(tenantId: string, issuer: string, subject: string): Promise<FederatedIdentity | null> {
    return this.run(() => {
      const row = this.one<IdentityRow>(this.stmt.identity, { tenant_id: tenantId, issuer, subject });
      return row ? identityFromRow(row) : null;
    });
  }

  linkIdentity(identity: FederatedIdentity): Promise<FederatedIdentity> {
    // The primary key (tenant, issuer, subject) and DO NOTHING close the race of two first
    // logins linking one external account to two users: the first insert wins, both read it.
    return this.write(() => {
      const key = { tenant_id: identity.tenantId, issuer: identity.issuer, subject: identity.subject };
      this.stmt.linkIdentity.run({ ...key, user_id: identity.userId, created_at: identity.createdAt });
      return identityFromRow(this.one<IdentityRow>(this.stmt.identity, key)!);
    });
  }

  putFlow(flow: FlowRecord, now: number): Promise<void> {
    return this.write(() => {
      this.stmt.pruneFlows.run({ now });
      const r = this.stmt.insertFlow.run({
        key: flowKey(flow.protocol, flow.session.secretHash),
        binding_hash: flow.bindingHash,
        expires_at: flow.session.absoluteExpiresAt,
        body: JSON.stringify(flow),
      });
      if (Number(r.changes) !== 1) throw new Conflict('flow_exists', 'A sign-in flow with this state already exists.');
    });
  }

  consumeFlow(protocol: FederationProtocol, stateHash: string, bindingHash: string, now: number): Promise<ConsumeFlowResult> {
    // Closes the race of two callbacks with one state (a replayed or double-submitted return
    // from the provider): the read, the binding check and the delete are one transaction under
    // the write lock, so exactly one caller gets the flow.
    return this.write((): ConsumeFlowResult => {
      const key = flowKey(protocol, stateHash);
      const row = this.one<FlowRow>(this.stmt.flowByKey, { key });
      if (!row) return { outcome: 'missing' };
      const flow = JSON.parse(row.body) as FlowRecord;
      if (row.binding_hash !== bindingHash) return { outcome: 'foreign', tenantId: flow.session.tenantId, handle: flow.session.handle };
      this.stmt.deleteFlow.run({ key });
      return row.expires_at <= now ? { outcome: 'expired', flow } : { outcome: 'consumed', flow };
    });
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

function flowKey(protocol: FederationProtocol, stateHash: string): string {
  return FLOW_KEY_PREFIX[protocol] + stateHash;
}
