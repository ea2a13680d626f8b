// The accounts aggregate of the storage port: tenants and their users. Conventions as in
// sessions-port.ts; refusals: user_exists, user_not_found, invalid_cursor, invalid_limit.

import type { Tenant } from '../domain/tenant.ts';
import type { User } from '../domain/user.ts';
import type { Page } from './page.ts';

export interface ListUsersQuery {
  tenantId: string;
  /** Normalised (lower-case) prefix of the email. */
  emailPrefix?: string;
  cursor?: string | null;
  /** 1..USER_LIST_MAX; anything else is BadRequest('invalid_limit'), on every store. */
  limit: number;
}

/** Maximum `limit` of the users listing (as SESSION_LIST_MAX of the sessions listing). */
export const USER_LIST_MAX = 500;

export interface AccountsStore {
  /** Throws Conflict('user_exists') when (tenantId, email) is taken. */
  createUser(user: User): Promise<User>;
  getUser(tenantId: string, userId: string): Promise<User | null>;
  findUserByEmail(tenantId: string, normalisedEmail: string): Promise<User | null>;
  /**
   * Replaces the stored user (same id and tenant). A changed email is claimed atomically:
   * Conflict('user_exists') when another user of the tenant has it (nothing changes then).
   */
  updateUser(user: User): Promise<User>;
  /**
   * A tenant's users ordered by email (then id); with `emailPrefix`, those whose normalised email
   * starts with it. `cursor` continues after the last item of the previous page. Throws
   * BadRequest('invalid_limit') for a limit outside 1..USER_LIST_MAX, before reading anything.
   */
  listUsers(query: ListUsersQuery): Promise<Page<User>>;
  /** Removes the user record (its password hash with it) and its email claim; false when absent. */
  deleteUser(tenantId: string, userId: string): Promise<boolean>;

  putTenant(tenant: Tenant): Promise<Tenant>;
  getTenant(tenantId: string): Promise<Tenant | null>;
  /** Every tenant, ordered by id. */
  listTenants(): Promise<Tenant[]>;
  /** Removes the tenant record only (the caller ends its sessions and deletes its users first). */
  deleteTenant(tenantId: string): Promise<boolean>;
}

/** Every operation of AccountsStore, for composites and proxies that forward them. */
export const ACCOUNTS_OPERATIONS = [
  'createUser',
  'getUser',
  'findUserByEmail',
  'updateUser',
  'listUsers',
  'deleteUser',
  'putTenant',
  'getTenant',
  'listTenants',
  'deleteTenant',
] as const satisfies readonly (keyof AccountsStore)[];
