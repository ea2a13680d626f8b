// The Redis adapter of the accounts aggregate (accounts-port.ts): tenants and users.

import { Conflict, NotFound } from '../../domain/errors.ts';
import { userTag } from '../../domain/secrets.ts';
import type { Tenant } from '../../domain/tenant.ts';
import type { User } from '../../domain/user.ts';
import { USER_LIST_MAX, type AccountsStore, type ListUsersQuery } from '../accounts-port.ts';
import { checkLimit, invalidCursor, isFirstPage, type Page } from '../page.ts';
import type { RedisContext } from './context.ts';

export class RedisAccounts implements AccountsStore {
  private readonly ctx: RedisContext;

  constructor(ctx: RedisContext) {
    this.ctx = ctx;
  }

  async createUser(user: User): Promise<User> {
    return this.ctx.guard(async () => {
      const emailKey = this.ctx.keys.email(user.tenantId, user.email);
      const claimed = await this.ctx.send(emailKey, ['SET', emailKey, user.id, 'NX']);
      if (claimed === null) throw new Conflict('user_exists', `A user with the email ${user.email} already exists in this tenant.`);
      const listKey = this.ctx.keys.tenantUsers(user.tenantId);
      const member = userMember(user);
      const userKey = this.ctx.keys.user(userTag(user.tenantId, user.id), user.id);
      let stored: unknown;
      try {
        await this.ctx.send(listKey, ['ZADD', listKey, '0', member]);
        stored = await this.ctx.send(userKey, ['SET', userKey, JSON.stringify(user), 'NX']);
      } catch (err) {
        await this.ctx.send(emailKey, ['DEL', emailKey]).catch(() => undefined);
        throw err;
      }
      if (stored === null) {
        await this.ctx.send(emailKey, ['DEL', emailKey]);
        throw new Conflict('user_exists', `A user with the id ${user.id} already exists in this tenant.`);
      }
      return user;
    });
  }

  async getUser(tenantId: string, userId: string): Promise<User | null> {
    return this.ctx.guard(async () => {
      const key = this.ctx.keys.user(userTag(tenantId, userId), userId);
      const raw = (await this.ctx.send(key, ['GET', key], true)) as string | null;
      if (raw === null) return null;
      const u = JSON.parse(raw) as User;
      return u.tenantId === tenantId && u.id === userId ? u : null;
    });
  }

  async findUserByEmail(tenantId: string, normalisedEmail: string): Promise<User | null> {
    return this.ctx.guard(async () => {
      const emailKey = this.ctx.keys.email(tenantId, normalisedEmail);
      const id = (await this.ctx.send(emailKey, ['GET', emailKey], true)) as string | null;
      if (id === null) return null;
      const u = await this.getUser(tenantId, id);
      return u !== null && u.email === normalisedEmail ? u : null;
    });
  }

  async updateUser(user: User): Promise<User> {
    return this.ctx.guard(async () => {
      const key = this.ctx.keys.user(userTag(user.tenantId, user.id), user.id);
      const raw = (await this.ctx.send(key, ['GET', key])) as string | null;
      if (raw === null) throw new NotFound('user_not_found', `No user ${user.id} in this tenant.`);
      const before = JSON.parse(raw) as User;
      if (before.email === user.email) {
        await this.ctx.send(key, ['SET', key, JSON.stringify(user), 'XX']);
        return user;
      }
      // A new email: claim it first (SET NX decides between racing claimants), list it, write the
      // record, then release the old claim if it is still this user's.
      const newEmailKey = this.ctx.keys.email(user.tenantId, user.email);
      const claimed = await this.ctx.send(newEmailKey, ['SET', newEmailKey, user.id, 'NX']);
      if (claimed === null) throw new Conflict('user_exists', `A user with the email ${user.email} already exists in this tenant.`);
      const listKey = this.ctx.keys.tenantUsers(user.tenantId);
      await this.ctx.send(listKey, ['ZADD', listKey, '0', userMember(user)]);
      const written = await this.ctx.send(key, ['SET', key, JSON.stringify(user), 'XX']);
      if (written === null) {
        await this.ctx.send(newEmailKey, ['DEL', newEmailKey]);
        throw new NotFound('user_not_found', `No user ${user.id} in this tenant.`);
      }
      const oldEmailKey = this.ctx.keys.email(user.tenantId, before.email);
      await this.ctx.send(oldEmailKey, ['EVAL', DEL_IF_EQUALS, '1', oldEmailKey, user.id]);
      await this.ctx.send(listKey, ['ZREM', listKey, userMember(before)]);
      return user;
    });
  }

  async listUsers(query: ListUsersQuery): Promise<Page<User>> {
    return this.ctx.guard(async () => {
      checkLimit(query.limit, USER_LIST_MAX);
      const listKey = this.ctx.keys.tenantUsers(query.tenantId);
      const prefix = query.emailPrefix ?? '';
      let from = prefix === '' ? '-' : `[${prefix}`;
      if (!isFirstPage(query.cursor)) from = `(${decodeUserCursor(query.cursor)}`;
      const to = prefix === '' ? '+' : `[${prefix}\u{10FFFF}`;
      const items: User[] = [];
      let more = false;
      // Members whose record is gone or changed email are skipped; read on until the page is full.
      for (;;) {
        const batch = (await this.ctx.send(listKey, ['ZRANGEBYLEX', listKey, from, to, 'LIMIT', '0', String(query.limit + 1)], true)) as string[];
        for (const member of batch) {
          if (items.length === query.limit) {
            more = true;
            break;
          }
          const cut = member.lastIndexOf(' ');
          const email = member.slice(0, cut);
          if (prefix !== '' && !email.startsWith(prefix)) continue;
          const u = await this.getUser(query.tenantId, member.slice(cut + 1));
          if (u !== null && u.email === email) items.push(u);
        }
        if (more || batch.length <= query.limit) break;
        from = `(${batch.at(-1)!}`;
      }
      const last = items.at(-1);
      return { items, nextCursor: more && last ? encodeUserCursor(userMember(last)) : null };
    });
  }

  async deleteUser(tenantId: string, userId: string): Promise<boolean> {
    return this.ctx.guard(async () => {
      const key = this.ctx.keys.user(userTag(tenantId, userId), userId);
      const raw = (await this.ctx.send(key, ['GET', key])) as string | null;
      if (raw === null) return false;
      const u = JSON.parse(raw) as User;
      if (u.tenantId !== tenantId) return false;
      const removed = (await this.ctx.send(key, ['DEL', key])) as number;
      const emailKey = this.ctx.keys.email(tenantId, u.email);
      await this.ctx.send(emailKey, ['EVAL', DEL_IF_EQUALS, '1', emailKey, userId]);
      const listKey = this.ctx.keys.tenantUsers(tenantId);
      await this.ctx.send(listKey, ['ZREM', listKey, userMember(u)]);
      return removed > 0;
    });
  }

  async putTenant(tenant: Tenant): Promise<Tenant> {
    return this.ctx.guard(async () => {
      const listKey = this.ctx.keys.tenants();
      await this.ctx.send(listKey, ['ZADD', listKey, '0', tenant.id]);
      const key = this.ctx.keys.tenant(tenant.id);
      await this.ctx.send(key, ['SET', key, JSON.stringify(tenant)]);
      return tenant;
    });
  }

  async getTenant(tenantId: string): Promise<Tenant | null> {
    return this.ctx.guard(async () => {
      const key = this.ctx.keys.tenant(tenantId);
      const raw = (await this.ctx.send(key, ['GET', key], true)) as string | null;
      return raw === null ? null : (JSON.parse(raw) as Tenant);
    });
  }

  async listTenants(): Promise<Tenant[]> {
    return this.ctx.guard(async () => {
      const listKey = this.ctx.keys.tenants();
      const ids = (await this.ctx.send(listKey, ['ZRANGE', listKey, '0', '-1'], true)) as string[];
      const out: Tenant[] = [];
      for (const id of ids) {
        const t = await this.getTenant(id);
        if (t !== null) out.push(t);
      }
      return out;
    });
  }

  async deleteTenant(tenantId: string): Promise<boolean> {
    return this.ctx.guard(async () => {
      const key = this.ctx.keys.tenant(tenantId);
      const removed = (await this.ctx.send(key, ['DEL', key])) as number;
      const listKey = this.ctx.keys.tenants();
      await this.ctx.send(listKey, ['ZREM', listKey, tenantId]);
      return removed > 0;
    });
  }
}

/** The user listing's member: email and id, split at the last space (ids contain none). */
function userMember(u: { email: string; id: string }): string {
  return `${u.email} ${u.id}`;
}

function encodeUserCursor(member: string): string {
  return Buffer.from(member, 'utf8').toString('base64url');
}

function decodeUserCursor(cursor: string): string {
  const member = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!/^\S[^\n]* [^ ]+$/.test(member)) throw invalidCursor();
  return member;
}

const DEL_IF_EQUALS = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
