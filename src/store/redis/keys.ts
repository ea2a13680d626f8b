// The Redis key layout of the session store. `P` is the configurable prefix (opts.prefix, e.g.
// `tessera:`); `T` is a routing tag of 12 base64url characters.
//
// Layout 3 (this one: layout 2 with the live/ended split; `P meta:layout` = 3, see migrate.ts for
// the upgrade from layouts 1 and 2 and the refusal of a higher mark).
//
// Per-user keys — all in the Cluster hash slot of `{T}`, T = userTag(tenantId, userId), so every
// script over one user's data runs atomically on one node:
//
//   P{T}:s                STRING the slot's live sessions (active, or expired and still renewable)
//                                with their current refresh tokens, children and secret hash: one
//                                MessagePack value (slot-lua.ts has the layout), at most the
//                                per-user cap of records (RedisContext.liveMax).
//                                TTL: that of its longest-living record (absoluteExpiresAt - now
//                                + 2 × retention, never shortened); records are taken out one by
//                                one by the sweeper when their own time is up.
//   P{T}:e                HASH   the slot's ended records (revoked, or expired past the absolute
//                                expiry), moved there by the script that ended them: 'r'<r> → the
//                                record, 'h'<hash> → r for its secret and refresh-token hashes,
//                                so each is read alone; and the spent refresh tokens of live and
//                                ended records, 'h'<hash> → {r, times, successor, previous spent}
//                                (slot-lua.ts, shed), so reuse is still recognised. TTL: at least
//                                the live key's; emptied field by field by the sweeper's purge.
//   P{T}:u:<userId>       STRING the user record (JSON)
//
// A handle is `<T>.<random>`, so an operation by handle goes straight to the slot. A flow
// session (no user yet) carries a random T of its own.
//
// Global indexes — lookups that start from something other than a handle, and listings. They
// are hints, never the truth: each is written BEFORE the record it leads to, and readers verify
// what they find.
//
//   P r:<h[0..2]>         HASH   routes: field h[2..18] of a secret or refresh-token hash h →
//                                T of its session (HSETNX: immutable; 4,096 small hashes, so
//                                each stays a compact listpack up to ~250,000 sessions with the
//                                default hash-max-listpack-entries). Removed by the sweeper when
//                                the record is purged. The slot script then finds the session
//                                holding that full hash.
//   P ue:<tenant>:<email> STRING userId: (tenant, email) uniqueness by SET NX, then the record.
//   P tu:<tenant>         ZSET   user listing: members `<email> <userId>`, all score 0 (lexical
//                                order, so an email prefix is a ZRANGEBYLEX range). Added before
//                                the record is written, removed after it is deleted; readers keep
//                                only members whose record has that email.
//   P tenants             ZSET   tenant ids, score 0; added before the record, removed after it.
//   P t:<tenant>:s        ZSET   tenant listing: handles by createdAt. Added before the create
//                                script, removed if the create is refused or when the sweeper
//                                purges the record; readers skip handles whose record is gone.
//   P{due}                ZSET   due index, directory: bucket id → the earliest score in it.
//   P{due}:<b>            ZSET   due index, bucket b (from the first two characters of the
//                                handle's random part, 2,048 buckets): handle → when the sweeper
//                                must look at it next — its expiry while it is active, then its
//                                purge time (absolute expiry + retention), when its record and
//                                global entries go. Small buckets stay listpacks; all in the slot
//                                {due}, so small scripts keep the directory exact (due-index.ts).
//
// Layout 1 (read only by migrate.ts): P{T}:s:<handle> HASH, P{T}:us ZSET, P{T}:c:<handle> SET,
// P{T}:sh:<secretHash>, P{T}:rt:<tokenHash> HASH, P sh:<secretHash>, P th:<tokenHash>, P exp,
// P gc.
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

  /** endsChannel's name, made once (every rotation sends it). */
  readonly #ends: string;

  constructor(prefix: string) {
    if (/[{}]/.test(prefix)) throw new Error(`Redis key prefix "${prefix}" must not contain "{" or "}" (they define Cluster hash tags)`);
    this.prefix = prefix;
    this.#ends = `${prefix}ends`;
  }

  /** The common start of every key in a user's slot; scripts build their keys from it. */
  slotBase(tag: string): string {
    return `${this.prefix}{${tag}}:`;
  }
  /** The slot's sessions (layout 2). */
  slotSessions(tag: string): string {
    return `${this.slotBase(tag)}s`;
  }
  user(tag: string, userId: string): string {
    return `${this.slotBase(tag)}u:${userId}`;
  }
  /** The route bucket of a secret or refresh-token hash; routeField names its entry there. */
  route(hash: string): string {
    return `${this.prefix}r:${hash.slice(0, 2)}`;
  }
  routeField(hash: string): string {
    return hash.slice(2, 18);
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
  /** The due index's directory; its buckets are `<directory>:<bucket>` (same slot, due-index.ts). */
  dueDirectory(): string {
    return `${this.prefix}{due}`;
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
    return this.#ends;
  }
  /** The pub/sub channel between the Tessera processes on this prefix (Coordination.publishToPeers). */
  peersChannel(): string {
    return `${this.prefix}peers`;
  }
}
