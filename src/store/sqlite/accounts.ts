// The SQLite adapter of the accounts aggregate (accounts-port.ts): tenants and users.

import type { DatabaseSync } from 'node:sqlite';
import { Conflict, NotFound } from '../../domain/errors.ts';
import type { Tenant } from '../../domain/tenant.ts';
import type { User } from '../../domain/user.ts';
import { USER_LIST_MAX, type AccountsStore, type ListUsersQuery } from '../accounts-port.ts';
import { checkLimit, invalidCursor, isFirstPage, type Page } from '../page.ts';
import { userFromRow, userParams } from './rows.ts';
import type { UserRow } from './rows.ts';
import { isUniqueViolation, type SqliteContext } from './transactions.ts';

export class SqliteAccounts implements AccountsStore {
  private readonly ctx: SqliteContext;
  private readonly stmt: ReturnType<typeof prepareStatements>;

  constructor(ctx: SqliteContext) {
    this.ctx = ctx;
    this.stmt = prepareStatements(ctx.db);
  }

  // ---- users ----------------------------------------------------------------------------------

  createUser(user: User): Promise<User> {
    // The UNIQUE (tenant_id, email) index closes the race of two sign-ups with one email.
    return this.ctx.write(() => {
      try {
        return userFromRow(this.ctx.one<UserRow>(this.stmt.insertUser, userParams(user))!);
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new Conflict('user_exists', 'A user with this email already exists in this tenant.');
        }
        throw err;
      }
    });
  }

  getUser(tenantId: string, userId: string): Promise<User | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<UserRow>(this.stmt.userById, { tenant_id: tenantId, id: userId });
      return row ? userFromRow(row) : null;
    });
  }

  findUserByEmail(tenantId: string, normalisedEmail: string): Promise<User | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<UserRow>(this.stmt.userByEmail, { tenant_id: tenantId, email: normalisedEmail });
      return row ? userFromRow(row) : null;
    });
  }

  updateUser(user: User): Promise<User> {
    return this.ctx.write(() => {
      const current = this.ctx.one<UserRow>(this.stmt.userById, { tenant_id: user.tenantId, id: user.id });
      if (!current) throw new NotFound('user_not_found', `No user ${user.id} in tenant ${user.tenantId}.`);
      try {
        return userFromRow(this.ctx.one<UserRow>(this.stmt.updateUser, userParams(user))!);
      } catch (err) {
        // The UNIQUE (tenant_id, email) index refuses another user's email.
        if (isUniqueViolation(err)) throw new Conflict('user_exists', 'A user with this email already exists in this tenant.');
        throw err;
      }
    });
  }

  listUsers(query: ListUsersQuery): Promise<Page<User>> {
    return this.ctx.run(() => {
      checkLimit(query.limit, USER_LIST_MAX);
      const after = decodeUserCursor(query.cursor);
      const prefix = query.emailPrefix ?? '';
      const rows = this.ctx.all<UserRow>(this.stmt.listUsers, {
        tenant_id: query.tenantId,
        // Range over the prefix instead of LIKE: no wildcard characters to escape.
        from: prefix,
        to: prefix + '\u{10FFFF}',
        after_email: after?.email ?? null,
        after_id: after?.id ?? '',
        limit: query.limit + 1,
      });
      const items = rows.slice(0, query.limit).map(userFromRow);
      const last = items.at(-1);
      return { items, nextCursor: rows.length > query.limit && last ? encodeUserCursor(last) : null };
    });
  }

  deleteUser(tenantId: string, userId: string): Promise<boolean> {
    return this.ctx.write(() => this.stmt.deleteUser.run({ tenant_id: tenantId, id: userId }).changes > 0);
  }

  // ---- tenants ---------------------------------------------------------------------------------

  putTenant(tenant: Tenant): Promise<Tenant> {
    return this.ctx.write(() => {
      this.stmt.putTenant.run({ id: tenant.id, body: JSON.stringify(tenant) });
      return tenant;
    });
  }

  getTenant(tenantId: string): Promise<Tenant | null> {
    return this.ctx.run(() => {
      const row = this.ctx.one<{ body: string }>(this.stmt.tenantById, { id: tenantId });
      return row ? (JSON.parse(row.body) as Tenant) : null;
    });
  }

  listTenants(): Promise<Tenant[]> {
    return this.ctx.run(() => this.ctx.all<{ body: string }>(this.stmt.listTenants, {}).map((r) => JSON.parse(r.body) as Tenant));
  }

  deleteTenant(tenantId: string): Promise<boolean> {
    return this.ctx.write(() => this.stmt.deleteTenant.run({ id: tenantId }).changes > 0);
  }
}

function prepareStatements(db: DatabaseSync) {
  return {
    insertUser: db.prepare(`
      INSERT INTO users (tenant_id, id, email, password_hash, roles, email_verified, disabled, created_at, updated_at)
      VALUES ($tenant_id, $id, $email, $password_hash, $roles, $email_verified, $disabled, $created_at, $updated_at)
      RETURNING *`),
    updateUser: db.prepare(`
      UPDATE users SET email = $email, password_hash = $password_hash, roles = $roles, email_verified = $email_verified,
        disabled = $disabled, created_at = $created_at, updated_at = $updated_at
      WHERE tenant_id = $tenant_id AND id = $id
      RETURNING *`),
    userById: db.prepare('SELECT * FROM users WHERE tenant_id = $tenant_id AND id = $id'),
    userByEmail: db.prepare('SELECT * FROM users WHERE tenant_id = $tenant_id AND email = $email'),
    putTenant: db.prepare('INSERT INTO tenants (id, body) VALUES ($id, $body) ON CONFLICT (id) DO UPDATE SET body = excluded.body'),
    tenantById: db.prepare('SELECT body FROM tenants WHERE id = $id'),
    listTenants: db.prepare('SELECT body FROM tenants ORDER BY id'),
    deleteTenant: db.prepare('DELETE FROM tenants WHERE id = $id'),
    listUsers: db.prepare(`
      SELECT * FROM users
      WHERE tenant_id = $tenant_id AND email >= $from AND email < $to
        AND ($after_email IS NULL OR email > $after_email OR (email = $after_email AND id > $after_id))
      ORDER BY email, id
      LIMIT $limit`),
    deleteUser: db.prepare('DELETE FROM users WHERE tenant_id = $tenant_id AND id = $id'),
  };
}

/** A user listing position: the (email, id) of the last user of the previous page. */
function encodeUserCursor(u: { email: string; id: string }): string {
  return Buffer.from(JSON.stringify([u.email, u.id]), 'utf8').toString('base64url');
}

/** The first page (null) for an absent or empty cursor, as page.ts; BadRequest('invalid_cursor') for a foreign one. */
function decodeUserCursor(cursor: string | null | undefined): { email: string; id: string } | null {
  if (isFirstPage(cursor)) return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string') return { email: v[0], id: v[1] };
  } catch {
    // fall through to the refusal
  }
  throw invalidCursor();
}
