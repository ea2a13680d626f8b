// The Redis key layout of the session store. `P` is the configurable prefix (opts.prefix, e.g.
// `tessera:`); `T` is a routing tag of 12 base64url characters.
//
// Per-user keys — all in the Cluster hash slot of `{T}`, T = userTag(tenantId, userId), so every
// script over one user's data runs atomically on one node:
//
//   P{T}:s:<handle>       HASH   one session (see codec.ts for the fields)
//   P{T}:us               ZSET   the user's session handles, score createdAt (member order breaks ties)
//   P{T}:c:<handle>       SET    handles of the session's direct children
//   P{T}:sh:<secretHash>  STRING handle of the session with that secret (authoritative, in-slot)
//   P{T}:rt:<tokenHash>   HASH   one refresh token
//   P{T}:u:<userId>       STRING the user record (JSON)
//
// A handle is `<T>.<random>`, so an operation by handle goes straight to the slot. A flow
// session (no user yet) carries a random T of its own and has no `us` zset.
//
// Routing indexes — lookups that start from something other than a handle need a key in some
// other slot that says where to go. They are hints, never the truth: each is written BEFORE the
// record it leads to, and readers verify what they find.
//
//   P sh:<secretHash>     STRING T of the session with that secret. Immutable once written
//                                (SET NX); the in-slot `P{T}:sh:` key then names the handle, so
//                                concurrent renewals that agree on a secret but not on a handle
//                                still resolve to the one successor that was stored.
//   P th:<tokenHash>      STRING T of the refresh token's session (SET NX, immutable).
//   P ue:<tenant>:<email> STRING userId: (tenant, email) uniqueness by SET NX, then the record.
//   P tu:<tenant>         ZSET   user listing: members `<email> <userId>`, all score 0 (lexical
//                                order, so an email prefix is a ZRANGEBYLEX range). Added before
//                                the record is written, removed after it is deleted; readers keep
//                                only members whose record has that email.
//   P tenants             ZSET   tenant ids, score 0; added before the record, removed after it.
//   P t:<tenant>:s        ZSET   tenant listing: handles by createdAt. Added before the create
//                                script, removed if the create is refused; readers skip handles
//                                whose record is gone and prune those older than the retention.
//   P exp                 ZSET   expiry index: handle scored by its (earliest known) expiry time,
//                                read by sweepExpired.
//   P gc                  ZSET   `<tenant> <handle>` scored by absoluteExpiresAt + retention: when
//                                the record is gone, sweepExpired takes the handle out of the
//                                tenant listing (the one index without a TTL of its own).
//
// Per-tenant listings of records that live under global keys (written before the record,
// readers keep only members whose record still names the tenant; backfilled at open for data
// written before they existed — indexes.ts):
//
//   P torg:<tenant>       SET    slugs of the tenant's organizations (P org:<slug>)
//   P tapp:<tenant>       SET    client ids of the tenant's applications (P app:<clientId>)
//   P tfid:<tenant>       SET    digests of the tenant's identity links (P fid:<tenant>:<digest>)
//
// Banks (issue 15): P bank:<tenant> HASH bankId → bank record (JSON, client key sealed); the
// bank work queue in one slot of its own: P{bankwork}:q ZSET work key scored by due time,
// P{bankwork}:n HASH work key → attempts.
//
// Plain keys: P tenant:<id> (JSON), P meta:<key> (JSON), P ctr:<key> (HASH count, resetAt: a
// throttling window shared by all processes).
//
// Pub/sub channel P ends: space-separated handles of sessions that stopped being active, published
// by the very script that ended them (coordination: every process drops them from its cache).
//
// A prefix must not contain `{` or `}`: Redis Cluster hashes the first `{...}` of a key, so a
// brace in the prefix would send every key to one slot (or split a user across slots).

export class RedisKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    if (/[{}]/.test(prefix)) throw new Error(`Redis key prefix "${prefix}" must not contain "{" or "}" (they define Cluster hash tags)`);
    this.prefix = prefix;
  }

  /** The common start of every key in a user's slot; scripts build their keys from it. */
  slotBase(tag: string): string {
    return `${this.prefix}{${tag}}:`;
  }
  session(tag: string, handle: string): string {
    return `${this.slotBase(tag)}s:${handle}`;
  }
  userSessions(tag: string): string {
    return `${this.slotBase(tag)}us`;
  }
  children(tag: string, handle: string): string {
    return `${this.slotBase(tag)}c:${handle}`;
  }
  slotSecret(tag: string, secretHash: string): string {
    return `${this.slotBase(tag)}sh:${secretHash}`;
  }
  refreshToken(tag: string, tokenHash: string): string {
    return `${this.slotBase(tag)}rt:${tokenHash}`;
  }
  user(tag: string, userId: string): string {
    return `${this.slotBase(tag)}u:${userId}`;
  }
  secretRoute(secretHash: string): string {
    return `${this.prefix}sh:${secretHash}`;
  }
  tokenRoute(tokenHash: string): string {
    return `${this.prefix}th:${tokenHash}`;
  }
  email(tenantId: string, normalisedEmail: string): string {
    return `${this.prefix}ue:${tenantId}:${normalisedEmail}`;
  }
  tenantUsers(tenantId: string): string {
    return `${this.prefix}tu:${tenantId}`;
  }
  tenants(): string {
    return `${this.prefix}tenants`;
  }
  tenantSessions(tenantId: string): string {
    return `${this.prefix}t:${tenantId}:s`;
  }
  expiry(): string {
    return `${this.prefix}exp`;
  }
  listingGc(): string {
    return `${this.prefix}gc`;
  }
  tenant(tenantId: string): string {
    return `${this.prefix}tenant:${tenantId}`;
  }
  organization(slug: string): string {
    return `${this.prefix}org:${slug}`;
  }
  tenantOrganizations(tenantId: string): string {
    return `${this.prefix}torg:${tenantId}`;
  }
  app(clientId: string): string {
    return `${this.prefix}app:${clientId}`;
  }
  tenantApps(tenantId: string): string {
    return `${this.prefix}tapp:${tenantId}`;
  }
  identity(tenantId: string, digest: string): string {
    return `${this.prefix}fid:${tenantId}:${digest}`;
  }
  tenantIdentities(tenantId: string): string {
    return `${this.prefix}tfid:${tenantId}`;
  }
  banks(tenantId: string): string {
    return `${this.prefix}bank:${tenantId}`;
  }
  bankWorkQueue(): string {
    return `${this.prefix}{bankwork}:q`;
  }
  bankWorkAttempts(): string {
    return `${this.prefix}{bankwork}:n`;
  }
  meta(key: string): string {
    return `${this.prefix}meta:${key}`;
  }
  counter(key: string): string {
    return `${this.prefix}ctr:${key}`;
  }
  endsChannel(): string {
    return `${this.prefix}ends`;
  }
}
