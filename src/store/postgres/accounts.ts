// Tenants and users on PostgreSQL (accounts-port.ts).

import { Conflict, NotFound } from '../../domain/errors.ts';
import type { Tenant } from '../../domain/tenant.ts';
import type { User } from '../../domain/user.ts';
import { USER_LIST_MAX, type AccountsStore, type ListUsersQuery } from '../accounts-port.ts';
import { checkLimit, invalidCursor, isFirstPage, type Page } from '../page.ts';
import type { PgDriver } from './driver.ts';
import { sqlState, UNIQUE_VIOLATION, userFromRow, userValues } from './rows.ts';
import type { UserRow } from './rows.ts';

export class PostgresAccounts implements AccountsStore {
  private readonly driver: PgDriver;

  constructor(driver: PgDriver) {
    this.driver = driver;
  }

  // ---- users ----------------------------------------------------------------------------------

  async createUser(user: User): Promise<User> {
    // The UNIQUE (tenant_id, email) constraint closes the race of two sign-ups with one email.
    try {
      const [row] = await this.driver.query<UserRow>(
        `INSERT INTO users (tenant_id, id, email, password_hash, roles, email_verified, disabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
        userValues(user),
      );
      return userFromRow(row!);
    } catch (err) {
      if (sqlState(err) === UNIQUE_VIOLATION) throw new Conflict('user_exists', 'A user with this email already exists in this tenant.');
      throw err;
    }
  }

  async getUser(tenantId: string, userId: string): Promise<User | null> {
    const [row] = await this.driver.query<UserRow>('SELECT * FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, userId]);
    return row ? userFromRow(row) : null;
  }

  async findUserByEmail(tenantId: string, normalisedEmail: string): Promise<User | null> {
    const [row] = await this.driver.query<UserRow>('SELECT * FROM users WHERE tenant_id = $1 AND email = $2', [tenantId, normalisedEmail]);
    return row ? userFromRow(row) : null;
  }

  async updateUser(user: User): Promise<User> {
    // One UPDATE; a changed email is claimed by the UNIQUE (tenant_id, email) constraint, which
    // refuses another user's email (a concurrent claim of the same email waits for the first).
    let row: UserRow | undefined;
    try {
      [row] = await this.driver.query<UserRow>(
        `UPDATE users SET email = $3, password_hash = $4, roles = $5, email_verified = $6, disabled = $7, created_at = $8, updated_at = $9
         WHERE tenant_id = $1 AND id = $2 RETURNING *`,
        userValues(user),
      );
    } catch (err) {
      if (sqlState(err) === UNIQUE_VIOLATION) throw new Conflict('user_exists', 'A user with this email already exists in this tenant.');
      throw err;
    }
    if (!row) throw new NotFound('user_not_found', `No user ${user.id} in tenant ${user.tenantId}.`);
    return userFromRow(row);
  }

  async listUsers(query: ListUsersQuery): Promise<Page<User>> {
    checkLimit(query.limit, USER_LIST_MAX);
    const after = query.cursor ? decodeUserCursor(query.cursor) : null;
    const prefix = query.emailPrefix ?? '';
    // A range over the prefix instead of LIKE (no wildcards to escape); byte order (COLLATE "C").
    const rows = await this.driver.query<UserRow>(
      `SELECT * FROM users
       WHERE tenant_id = $1 AND email >= $2 AND email < $3
         AND ($4::text IS NULL OR email > $4 OR (email = $4 AND id > $5))
       ORDER BY email, id
       LIMIT $6`,
      [query.tenantId, prefix, prefix + '\u{10FFFF}', after?.email ?? null, after?.id ?? '', query.limit + 1],
    );
    const items = rows.slice(0, query.limit).map(userFromRow);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > query.limit && last ? encodeUserCursor(last) : null };
  }

  async deleteUser(tenantId: string, userId: string): Promise<boolean> {
    return (await this.driver.execute('DELETE FROM users WHERE tenant_id = $1 AND id = $2', [tenantId, userId])) > 0;
  }

  // ---- tenants and metadata -------------------------------------------------------------------

  async putTenant(tenant: Tenant): Promise<Tenant> {
    await this.driver.execute('INSERT INTO tenants (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = excluded.body', [
      tenant.id,
      JSON.stringify(tenant),
    ]);
    return tenant;
  }

  async getTenant(tenantId: string): Promise<Tenant | null> {
    const [row] = await this.driver.query<{ body: string }>('SELECT body FROM tenants WHERE id = $1', [tenantId]);
    return row ? (JSON.parse(row.body) as Tenant) : null;
  }

  async listTenants(): Promise<Tenant[]> {
    return (await this.driver.query<{ body: string }>('SELECT body FROM tenants ORDER BY id')).map((r) => JSON.parse(r.body) as Tenant);
  }

  async deleteTenant(tenantId: string): Promise<boolean> {
    return (await this.driver.execute('DELETE FROM tenants WHERE id = $1', [tenantId])) > 0;
  }
}

/** A user listing position: the (email, id) of the last user of the previous page (as SQLite's). */
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
