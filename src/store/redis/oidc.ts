// OidcStore over Redis. Keys (P is the store's prefix):
//
//   P app:<clientId>                         STRING  the application (JSON)
//   P tapp:<tenant>                          SET     the tenant's client ids (listing; a hint)
//   P oidc:<model>:<id>                      STRING  one oidc-provider record (JSON), PEXPIRE
//   P oidc-uid:<model>:<uid>                 STRING  id of the record with that uid (hint)
//   P oidc-grant:<grantId>                   SET     `<model>:<id>` of the grant's records
//   P xs:<sha256(issuer, key)>               ZSET    `<tenant> <idp handle>` by expiry
//
// Every operation touches one key at a time (any slot of a Cluster). The uid and grant keys are
// hints: a found id is read back and checked. Consuming is one script (read, mark, write with
// the same TTL), so two consumers cannot both find the record unconsumed and overwrite it.

import { createHash } from 'node:crypto';
import { StoreUnavailable } from '../../domain/errors.ts';
import type { ExternalSessionLink, OidcStore, PlatformApp } from '../oidc-port.ts';
import { toStoreError, type RedisConnection } from './connection.ts';
import type { RedisKeys } from './keys.ts';
import { evalScript, luaScript, type LuaScript } from './lua.ts';

function script(name: string, body: string): LuaScript {
  return luaScript(`-- tessera:${name}\n${body}`);
}

/** KEYS[1] record; ARGV[1] consumed (epoch s). Reply: 1 marked | 0 absent. */
const CONSUME = script(
  'oidc-consume',
  `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local p = cjson.decode(raw)
p['consumed'] = tonumber(ARGV[1])
redis.call('SET', KEYS[1], cjson.encode(p), 'KEEPTTL')
return 1
`,
);

/** Delete only while the application still belongs to the tenant (KEYS[1] app key; ARGV[1] tenant). */
const DELETE_APP = script(
  'delete-app',
  `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if cjson.decode(v).tenantId ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`,
);

export class RedisOidcStore implements OidcStore {
  readonly #conn: RedisConnection;
  readonly #prefix: string;
  readonly #keys: RedisKeys;

  constructor(conn: RedisConnection, keys: RedisKeys) {
    this.#conn = conn;
    this.#prefix = keys.prefix;
    this.#keys = keys;
  }

  async putApp(app: PlatformApp): Promise<PlatformApp> {
    return this.#guard(async () => {
      const key = this.#keys.app(app.clientId);
      const listing = this.#keys.tenantApps(app.tenantId);
      await this.#conn.send(listing, ['SADD', listing, app.clientId]);
      await this.#conn.send(key, ['SET', key, JSON.stringify(app)]);
      return app;
    });
  }

  async getApp(clientId: string): Promise<PlatformApp | null> {
    return this.#guard(async () => {
      const key = this.#keys.app(clientId);
      const raw = (await this.#conn.send(key, ['GET', key], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as PlatformApp);
    });
  }

  async listApps(tenantId: string): Promise<PlatformApp[]> {
    return this.#guard(async () => {
      const listing = this.#keys.tenantApps(tenantId);
      const ids = ((await this.#conn.send(listing, ['SMEMBERS', listing], true)) as string[]).sort();
      const out: PlatformApp[] = [];
      for (const id of ids) {
        const app = await this.getApp(id);
        if (app !== null && app.tenantId === tenantId) out.push(app);
      }
      return out;
    });
  }

  async deleteApp(clientId: string, tenantId: string): Promise<boolean> {
    return this.#guard(async () => {
      const removed = Number(await evalScript(this.#conn, DELETE_APP, this.#keys.app(clientId), [tenantId]));
      const listing = this.#keys.tenantApps(tenantId);
      await this.#conn.send(listing, ['SREM', listing, clientId]);
      return removed > 0;
    });
  }

  async upsertModel(model: string, id: string, payload: Record<string, unknown>, expiresAt: number, now: number): Promise<void> {
    return this.#guard(async () => {
      const ttl = String(Math.max(1, Math.ceil(expiresAt - now)));
      const key = this.#modelKey(model, id);
      if (typeof payload.uid === 'string') {
        const u = this.#uidKey(model, payload.uid);
        await this.#conn.send(u, ['SET', u, id, 'PX', ttl]);
      }
      if (typeof payload.grantId === 'string') {
        const g = `${this.#prefix}oidc-grant:${payload.grantId}`;
        await this.#conn.send(g, ['SADD', g, `${model}:${id}`]);
        // Only ever lengthened: the set must outlive every record of the grant.
        await this.#conn.send(g, ['PEXPIRE', g, ttl, 'GT']);
        await this.#conn.send(g, ['PEXPIRE', g, ttl, 'NX']);
      }
      await this.#conn.send(key, ['SET', key, JSON.stringify(payload), 'PX', ttl]);
    });
  }

  async findModel(model: string, id: string): Promise<Record<string, unknown> | null> {
    return this.#guard(async () => {
      const key = this.#modelKey(model, id);
      const raw = (await this.#conn.send(key, ['GET', key], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as Record<string, unknown>);
    });
  }

  async findModelByUid(model: string, uid: string): Promise<Record<string, unknown> | null> {
    return this.#guard(async () => {
      const u = this.#uidKey(model, uid);
      const id = (await this.#conn.send(u, ['GET', u], true)) as string | null;
      if (id === null) return null;
      const payload = await this.findModel(model, id);
      return payload !== null && payload.uid === uid ? payload : null;
    });
  }

  async consumeModel(model: string, id: string, now: number): Promise<void> {
    return this.#guard(async () => {
      await this.#eval(CONSUME, this.#modelKey(model, id), [String(Math.floor(now / 1000))]);
    });
  }

  async destroyModel(model: string, id: string): Promise<void> {
    return this.#guard(async () => {
      const key = this.#modelKey(model, id);
      await this.#conn.send(key, ['DEL', key]);
    });
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    return this.#guard(async () => {
      const g = `${this.#prefix}oidc-grant:${grantId}`;
      const members = (await this.#conn.send(g, ['SMEMBERS', g])) as string[];
      for (const m of members) {
        const key = `${this.#prefix}oidc:${m}`;
        await this.#conn.send(key, ['DEL', key]);
      }
      await this.#conn.send(g, ['DEL', g]);
    });
  }

  async linkExternalSession(link: ExternalSessionLink, now: number): Promise<void> {
    return this.#guard(async () => {
      const key = this.#linkKey(link.issuer, link.key);
      await this.#conn.send(key, ['ZREMRANGEBYSCORE', key, '-inf', String(now)]);
      await this.#conn.send(key, ['ZADD', key, String(link.expiresAt), `${link.tenantId} ${link.idpHandle}`]);
      const ttl = String(Math.max(1, Math.ceil(link.expiresAt - now)));
      await this.#conn.send(key, ['PEXPIRE', key, ttl, 'GT']);
      await this.#conn.send(key, ['PEXPIRE', key, ttl, 'NX']);
    });
  }

  async findExternalSessions(issuer: string, key: string, now: number): Promise<ExternalSessionLink[]> {
    return this.#guard(async () => {
      const k = this.#linkKey(issuer, key);
      const reply = (await this.#conn.send(k, ['ZRANGE', k, `(${now}`, '+inf', 'BYSCORE', 'WITHSCORES'], true)) as string[];
      const out: ExternalSessionLink[] = [];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        const [tenantId, idpHandle] = (reply[i] as string).split(' ') as [string, string];
        out.push({ issuer, key, tenantId, idpHandle, expiresAt: Number(reply[i + 1]) });
      }
      return out;
    });
  }

  #modelKey(model: string, id: string): string {
    return `${this.#prefix}oidc:${model}:${id}`;
  }

  #uidKey(model: string, uid: string): string {
    return `${this.#prefix}oidc-uid:${model}:${uid}`;
  }

  #linkKey(issuer: string, key: string): string {
    return `${this.#prefix}xs:${createHash('sha256').update(`${issuer}\u0000${key}`, 'utf8').digest('base64url')}`;
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoreUnavailable) throw err;
      throw toStoreError(err);
    }
  }

  #eval(s: LuaScript, key: string, args: string[]): Promise<unknown> {
    return evalScript(this.#conn, s, key, args);
  }
}
