// FederationStore over Redis. Keys (P is the store's prefix):
//
//   P org:<slug>                              STRING  the organization (JSON)
//   P fid:<tenant>:<sha256(issuer, subject)>  STRING  the linked identity (JSON); SET NX
//   P torg:<tenant>, P tfid:<tenant>           SET     the tenant's slugs / identity digests (listings)
//   P oidc-session:<sha256(state)>            HASH    one OIDC flow: binding, exp, body (JSON)
//   P oauth-session:<sha256(state)>           HASH    one OAuth 2.0 flow, same fields
//
// Each operation touches one key (plus a listing written before it: a hint, checked by readers),
// so it is atomic on its own and routes to one node of a Cluster. Flow keys expire with the flow (PEXPIRE relative to the `now` passed in, as in the
// session store, so an injected clock cannot make Redis drop a record early): at most the flow
// lifetime, 10 minutes by default. Consuming a flow is one script — read, compare the browser
// binding, delete — so two callbacks with one state cannot both get it.

import { createHash } from 'node:crypto';
import { Conflict, StoreUnavailable } from '../../domain/errors.ts';
import type { FederatedIdentity, FederationProtocol, Organization } from '../../domain/organization.ts';
import { FLOW_KEY_PREFIX, type ConsumeFlowResult, type FederationStore, type FlowRecord } from '../federation-port.ts';
import { num } from './codec.ts';
import { toStoreError, type RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';
import { evalScript, luaScript, type LuaScript } from './lua.ts';

function script(name: string, body: string): LuaScript {
  return luaScript(`-- tessera:${name}\n${body}`);
}

/**
 * put flow. Race closed: two logins that drew the same state (never in practice: 256 random
 * bits) overwriting each other's flow; the existence check and the write are one step.
 * KEYS[1] flow key; ARGV[1] binding hash, ARGV[2] expiresAt, ARGV[3] body, ARGV[4] TTL ms.
 * Reply: 1 written | 0 exists
 */
/** Compare-and-set of a slug's owner: closes the race of two tenants claiming one new slug. */
const PUT_ORG = script(
  'put-org',
  `
local v = redis.call('GET', KEYS[1])
local owner = ''
if v then owner = cjson.decode(v).tenantId end
if owner ~= ARGV[1] then return 'changed' end
redis.call('SET', KEYS[1], ARGV[2])
return 'ok'
`,
);

/** Delete only while the slug still belongs to the tenant (KEYS[1] org key; ARGV[1] tenant). */
const DELETE_ORG = script(
  'delete-org',
  `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v).tenantId ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`,
);

const PUT_FLOW = script(
  'flow-put',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'binding', ARGV[1], 'exp', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`,
);

/**
 * consume flow. Race closed: two callbacks with one state (a replayed return from the provider,
 * a double-submitted tab) each finding the flow and each logging in; read, binding check and
 * delete are one step, so exactly one caller gets it. Another browser's binding leaves the flow
 * in place for its owner.
 * KEYS[1] flow key; ARGV[1] binding hash, ARGV[2] now.
 * Reply: {'missing'} | {'foreign', body} | {'expired', body} | {'consumed', body}
 */
const CONSUME_FLOW = script(
  'flow-consume',
  `
local v = redis.call('HMGET', KEYS[1], 'binding', 'exp', 'body')
if not v[1] or not v[3] then return { 'missing' } end
if v[1] ~= ARGV[1] then return { 'foreign', v[3] } end
redis.call('DEL', KEYS[1])
if tonumber(v[2]) <= tonumber(ARGV[2]) then return { 'expired', v[3] } end
return { 'consumed', v[3] }
`,
);

export class RedisFederationStore implements FederationStore {
  readonly #conn: RedisConnection;
  readonly #prefix: string;
  readonly #keys: RedisKeys;

  constructor(conn: RedisConnection, keys: RedisKeys) {
    this.#conn = conn;
    this.#prefix = keys.prefix;
    this.#keys = keys;
  }

  async putOrganization(org: Organization, expectedTenantId: string | null): Promise<Organization> {
    return this.#guard(async () => {
      const key = this.#orgKey(org.slug);
      const listing = this.#keys.tenantOrganizations(org.tenantId);
      await this.#conn.send(listing, ['SADD', listing, org.slug]);
      const reply = await this.#eval(PUT_ORG, key, [expectedTenantId ?? '', JSON.stringify(org)]);
      if (reply !== 'ok') throw new Conflict('org_changed', `The organization "${org.slug}" changed meanwhile; read it again.`);
      return org;
    });
  }

  async getOrganization(slug: string): Promise<Organization | null> {
    return this.#guard(async () => {
      const key = this.#orgKey(slug);
      const raw = (await this.#conn.send(key, ['GET', key], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as Organization);
    });
  }

  async listOrganizations(tenantId: string): Promise<Organization[]> {
    return this.#guard(async () => {
      const listing = this.#keys.tenantOrganizations(tenantId);
      const slugs = ((await this.#conn.send(listing, ['SMEMBERS', listing], true)) as string[]).sort();
      const out: Organization[] = [];
      for (const slug of slugs) {
        const org = await this.getOrganization(slug);
        if (org !== null && org.tenantId === tenantId) out.push(org);
      }
      return out;
    });
  }

  async deleteOrganization(slug: string, tenantId: string): Promise<boolean> {
    return this.#guard(async () => {
      const removed = Number(await this.#eval(DELETE_ORG, this.#orgKey(slug), [tenantId]));
      const listing = this.#keys.tenantOrganizations(tenantId);
      await this.#conn.send(listing, ['SREM', listing, slug]);
      return removed > 0;
    });
  }

  async listIdentities(tenantId: string): Promise<FederatedIdentity[]> {
    return this.#guard(async () => {
      const listing = this.#keys.tenantIdentities(tenantId);
      const digests = (await this.#conn.send(listing, ['SMEMBERS', listing], true)) as string[];
      const out: FederatedIdentity[] = [];
      for (const digest of digests) {
        const key = this.#keys.identity(tenantId, digest);
        const raw = (await this.#conn.send(key, ['GET', key], true)) as string | null;
        if (raw !== null) out.push(JSON.parse(raw) as FederatedIdentity);
      }
      return out.sort((a, b) => (a.issuer === b.issuer ? cmp(a.subject, b.subject) : cmp(a.issuer, b.issuer)));
    });
  }

  async deleteIdentities(tenantId: string): Promise<number> {
    return this.#guard(async () => {
      const listing = this.#keys.tenantIdentities(tenantId);
      const digests = (await this.#conn.send(listing, ['SMEMBERS', listing])) as string[];
      let removed = 0;
      for (const digest of digests) {
        const key = this.#keys.identity(tenantId, digest);
        removed += Number(await this.#conn.send(key, ['DEL', key]));
        await this.#conn.send(listing, ['SREM', listing, digest]);
      }
      return removed;
    });
  }

  async findIdentity(tenantId: string, issuer: string, subject: string): Promise<FederatedIdentity | null> {
    return this.#guard(async () => {
      const key = this.#identityKey(tenantId, issuer, subject);
      const raw = (await this.#conn.send(key, ['GET', key], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as FederatedIdentity);
    });
  }

  async linkIdentity(identity: FederatedIdentity): Promise<FederatedIdentity> {
    // SET NX closes the race of two first logins linking one account to two users; GET on the
    // same key then reads whichever link won.
    return this.#guard(async () => {
      const digest = identityDigest(identity.issuer, identity.subject);
      const key = this.#keys.identity(identity.tenantId, digest);
      const listing = this.#keys.tenantIdentities(identity.tenantId);
      await this.#conn.send(listing, ['SADD', listing, digest]);
      const set = await this.#conn.send(key, ['SET', key, JSON.stringify(identity), 'NX']);
      if (set !== null) return identity;
      const raw = (await this.#conn.send(key, ['GET', key])) as string | null;
      if (raw === null) throw new StoreUnavailable('The identity link vanished while it was being read.');
      return JSON.parse(raw) as FederatedIdentity;
    });
  }

  async putFlow(flow: FlowRecord, now: number): Promise<void> {
    return this.#guard(async () => {
      const key = this.#flowKey(flow.protocol, flow.session.secretHash);
      const ttl = Math.max(1, Math.ceil(flow.session.absoluteExpiresAt - now));
      const written = await this.#eval(PUT_FLOW, key, [flow.bindingHash, num(flow.session.absoluteExpiresAt), JSON.stringify(flow), String(ttl)]);
      if (Number(written) !== 1) throw new Conflict('flow_exists', 'A sign-in flow with this state already exists.');
    });
  }

  async consumeFlow(protocol: FederationProtocol, stateHash: string, bindingHash: string, now: number): Promise<ConsumeFlowResult> {
    return this.#guard(async () => {
      const reply = (await this.#eval(CONSUME_FLOW, this.#flowKey(protocol, stateHash), [bindingHash, num(now)])) as string[];
      switch (reply[0]) {
        case 'consumed':
          return { outcome: 'consumed', flow: JSON.parse(reply[1] as string) as FlowRecord };
        case 'expired':
          return { outcome: 'expired', flow: JSON.parse(reply[1] as string) as FlowRecord };
        case 'foreign': {
          const flow = JSON.parse(reply[1] as string) as FlowRecord;
          return { outcome: 'foreign', tenantId: flow.session.tenantId, handle: flow.session.handle };
        }
        case 'missing':
          return { outcome: 'missing' };
        default:
          throw new Error(`unexpected reply from the flow script: ${String(reply[0])}`);
      }
    });
  }

  #orgKey(slug: string): string {
    return this.#keys.organization(slug);
  }

  #identityKey(tenantId: string, issuer: string, subject: string): string {
    return this.#keys.identity(tenantId, identityDigest(issuer, subject));
  }

  #flowKey(protocol: FederationProtocol, stateHash: string): string {
    return this.#prefix + FLOW_KEY_PREFIX[protocol] + stateHash;
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }

  /** EVALSHA, and EVAL when the server does not know the script yet. One key: it routes the call. */
  #eval(s: LuaScript, key: string, args: string[]): Promise<unknown> {
    return evalScript(this.#conn, s, key, args);
  }
}

function identityDigest(issuer: string, subject: string): string {
  return createHash('sha256').update(`${issuer}\u0000${subject}`, 'utf8').digest('base64url');
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
