// FederationStore over PostgreSQL (tables `organizations`, `federated_identities`, `sso_flows`;
// migration 4). Flows are keyed like their Redis counterparts (`oidc-session:<sha256(state)>`);
// PostgreSQL has no key expiry, so a flow past its expiry reads as expired and each new flow
// deletes the expired ones.

import { Conflict } from '../../domain/errors.ts';
import type { FederatedIdentity, FederationProtocol, Organization } from '../../domain/organization.ts';
import { FLOW_KEY_PREFIX, type ConsumeFlowResult, type FederationStore, type FlowRecord } from '../federation-port.ts';
import type { PgDriver } from './driver.ts';
import { lockNamed } from './locks.ts';

interface IdentityRow {
  tenant_id: string;
  issuer: string;
  subject: string;
  user_id: string;
  created_at: number;
}

function identityFromRow(r: IdentityRow): FederatedIdentity {
  return { tenantId: r.tenant_id, issuer: r.issuer, subject: r.subject, userId: r.user_id, createdAt: r.created_at };
}

export class PostgresFederationStore implements FederationStore {
  readonly #driver: PgDriver;

  constructor(driver: PgDriver) {
    this.#driver = driver;
  }

  putOrganization(org: Organization, expectedTenantId: string | null): Promise<Organization> {
    // Race: two tenant administrators claim one new slug. A row lock cannot hold a row that does
    // not exist yet, so the compare-and-set holds an advisory lock on the slug.
    return this.#driver.transaction(async (tx) => {
      await lockNamed(tx, `organization\u001f${org.slug}`);
      const [current] = await tx.query<{ tenant_id: string }>('SELECT tenant_id FROM organizations WHERE slug = $1', [org.slug]);
      if ((current?.tenant_id ?? null) !== expectedTenantId) {
        throw new Conflict('org_changed', `The organization "${org.slug}" changed meanwhile; read it again.`);
      }
      await tx.execute(
        `INSERT INTO organizations (slug, tenant_id, body) VALUES ($1, $2, $3)
         ON CONFLICT (slug) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body`,
        [org.slug, org.tenantId, JSON.stringify(org)],
      );
      return org;
    });
  }

  async getOrganization(slug: string): Promise<Organization | null> {
    const [row] = await this.#driver.query<{ body: string }>('SELECT body FROM organizations WHERE slug = $1', [slug]);
    return row ? (JSON.parse(row.body) as Organization) : null;
  }

  async listOrganizations(tenantId: string): Promise<Organization[]> {
    const rows = await this.#driver.query<{ body: string }>('SELECT body FROM organizations WHERE tenant_id = $1 ORDER BY slug', [tenantId]);
    return rows.map((r) => JSON.parse(r.body) as Organization);
  }

  async deleteOrganization(slug: string, tenantId: string): Promise<boolean> {
    const [row] = await this.#driver.query<{ slug: string }>('DELETE FROM organizations WHERE slug = $1 AND tenant_id = $2 RETURNING slug', [slug, tenantId]);
    return row !== undefined;
  }

  async listIdentities(tenantId: string): Promise<FederatedIdentity[]> {
    const rows = await this.#driver.query<IdentityRow>('SELECT * FROM federated_identities WHERE tenant_id = $1 ORDER BY issuer, subject', [tenantId]);
    return rows.map(identityFromRow);
  }

  async deleteIdentities(tenantId: string): Promise<number> {
    const rows = await this.#driver.query<{ subject: string }>('DELETE FROM federated_identities WHERE tenant_id = $1 RETURNING subject', [tenantId]);
    return rows.length;
  }

  async findIdentity(tenantId: string, issuer: string, subject: string): Promise<FederatedIdentity | null> {
    const [row] = await this.#driver.query<IdentityRow>(
      'SELECT * FROM federated_identities WHERE tenant_id = $1 AND issuer = $2 AND subject = $3',
      [tenantId, issuer, subject],
    );
    return row ? identityFromRow(row) : null;
  }

  async linkIdentity(identity: FederatedIdentity): Promise<FederatedIdentity> {
    // Race: two first logins link one external account to two users. The primary key and
    // ON CONFLICT DO NOTHING (which waits for a concurrent insert of the key) let the first win;
    // the next statement reads the winner.
    await this.#driver.execute(
      `INSERT INTO federated_identities (tenant_id, issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id, issuer, subject) DO NOTHING`,
      [identity.tenantId, identity.issuer, identity.subject, identity.userId, identity.createdAt],
    );
    return (await this.findIdentity(identity.tenantId, identity.issuer, identity.subject))!;
  }

  async putFlow(flow: FlowRecord, now: number): Promise<void> {
    await this.#driver.execute(
      'DELETE FROM sso_flows WHERE key IN (SELECT key FROM sso_flows WHERE expires_at <= $1 LIMIT 100 FOR UPDATE SKIP LOCKED)',
      [now],
    );
    const inserted = await this.#driver.execute(
      'INSERT INTO sso_flows (key, binding_hash, expires_at, body) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING',
      [flowKey(flow.protocol, flow.session.secretHash), flow.bindingHash, flow.session.absoluteExpiresAt, JSON.stringify(flow)],
    );
    if (inserted !== 1) throw new Conflict('flow_exists', 'A sign-in flow with this state already exists.');
  }

  async consumeFlow(protocol: FederationProtocol, stateHash: string, bindingHash: string, now: number): Promise<ConsumeFlowResult> {
    // Race: two callbacks with one state. The binding check and the delete are one DELETE …
    // RETURNING: the second caller waits for the first's row lock and then finds no row.
    const key = flowKey(protocol, stateHash);
    const [taken] = await this.#driver.query<{ body: string; expires_at: number }>(
      'DELETE FROM sso_flows WHERE key = $1 AND binding_hash = $2 RETURNING body, expires_at',
      [key, bindingHash],
    );
    if (taken) {
      const flow = JSON.parse(taken.body) as FlowRecord;
      return taken.expires_at <= now ? { outcome: 'expired', flow } : { outcome: 'consumed', flow };
    }
    const [other] = await this.#driver.query<{ body: string }>('SELECT body FROM sso_flows WHERE key = $1', [key]);
    if (!other) return { outcome: 'missing' };
    const flow = JSON.parse(other.body) as FlowRecord;
    return { outcome: 'foreign', tenantId: flow.session.tenantId, handle: flow.session.handle };
  }
}

function flowKey(protocol: FederationProtocol, stateHash: string): string {
  return FLOW_KEY_PREFIX[protocol] + stateHash;
}
