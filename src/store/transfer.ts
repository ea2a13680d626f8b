// Export and import of the durable configuration of a store — tenants, users, organizations,
// applications, banks and identity links — between stores of any kind (SQLite, Redis,
// PostgreSQL), through the storage port only: `tessera export --out <file>` / `tessera import
// <file>` (src/cli.ts; runbook in docs/reliability.md).
//
// What moves as it is stored: users' password hashes (argon2id PHC strings), sealed secrets
// (organizations' and applications' client secrets, banks' TLS client keys — AES-256-GCM under
// keys derived from COOKIE_SECRET_SIGN_KEY). The file carries `keyCheck`, a keyed hash (HMAC) of
// a fixed label under a key derived from that secret, computed by the caller; an import whose
// own check differs is refused before anything is read or written (the sealed secrets would be
// unreadable there). What does not move: sessions and refresh tokens (users sign in again),
// consents, the audit log (it stays verifiable at the source; archive it with `tessera audit
// export`), signing keys and other server metadata (the target keeps its own).
//
// Import is all-or-nothing against conflicts and idempotent: every record is first compared with
// what the target holds under its key. Equal records are skipped; a record that exists with other
// content (a user id or email taken by another record, a slug or client id of another tenant, a
// tenant with other settings) is a conflict, and any conflict refuses the whole import before the
// first write (`TransferConflict`). Only then are the missing records written, one tenant at a
// time (the tenant first: everything else names it). A store failure in the middle of the writes
// leaves a prefix of them; running the import again completes it (what was written is now equal
// and skipped).
//
// Every tenant that got at least one record appends `tenant.imported` to its own audit chain
// (through the port's append, so the chain still verifies), once its records are written: the
// counts written and unchanged, the file's source and export time — never a record's content.

import type { AuditEventInput } from '../domain/audit-chain.ts';
import type { Bank } from '../domain/bank.ts';
import type { FederatedIdentity, Organization } from '../domain/organization.ts';
import { degradationOf, type Tenant } from '../domain/tenant.ts';
import type { User } from '../domain/user.ts';
import type { PlatformApp } from './oidc-port.ts';
import type { SessionStore } from './port.ts';

export const TRANSFER_FORMAT = 'tessera-export';
export const TRANSFER_VERSION = 1;

export interface TransferFile {
  format: typeof TRANSFER_FORMAT;
  version: typeof TRANSFER_VERSION;
  exportedAt: string;
  /** The kind of store it came from (`sqlite`, `redis`, `postgres`, …): for people. */
  source: string;
  /** HMAC of a fixed label under a key derived from COOKIE_SECRET_SIGN_KEY (base64url). */
  keyCheck: string;
  tenants: Tenant[];
  users: User[];
  organizations: Organization[];
  apps: PlatformApp[];
  banks: Bank[];
  identities: FederatedIdentity[];
}

export interface TransferCounts {
  tenants: number;
  users: number;
  organizations: number;
  apps: number;
  banks: number;
  identities: number;
}

/** The file is not an export this version reads. */
export class InvalidTransferFile extends Error {
  override name = 'InvalidTransferFile';
}

/** The export was made under another COOKIE_SECRET_SIGN_KEY than the one configured here. */
export class TransferKeyMismatch extends Error {
  override name = 'TransferKeyMismatch';
  constructor() {
    super(
      'COOKIE_SECRET_SIGN_KEY: the export was made under another key; its sealed secrets (client secrets, bank keys) would be unreadable here. Set the key the source uses.',
    );
  }
}

/** Records of the file that exist in the target with other content; nothing was written. */
export class TransferConflict extends Error {
  override name = 'TransferConflict';
  readonly conflicts: string[];
  constructor(conflicts: string[]) {
    super(`${conflicts.length} record(s) exist in the target with other content, nothing was imported; first: ${conflicts[0]}`);
    this.conflicts = conflicts;
  }
}

const USER_PAGE = 500;

/** Every tenant (or those named) with its users, organizations, applications, banks and identity links. */
export async function exportStore(store: SessionStore, keyCheck: string, onlyTenants?: readonly string[]): Promise<TransferFile> {
  const all = await store.listTenants();
  const tenants = onlyTenants ? all.filter((t) => onlyTenants.includes(t.id)) : all;
  if (onlyTenants) {
    const missing = onlyTenants.filter((id) => !tenants.some((t) => t.id === id));
    if (missing.length > 0) throw new InvalidTransferFile(`no tenant ${missing.map((m) => `"${m}"`).join(', ')} in this store`);
  }
  const out: TransferFile = {
    format: TRANSFER_FORMAT,
    version: TRANSFER_VERSION,
    exportedAt: new Date().toISOString(),
    source: store.kind,
    keyCheck,
    tenants,
    users: [],
    organizations: [],
    apps: [],
    banks: [],
    identities: [],
  };
  for (const t of tenants) {
    let cursor: string | null = null;
    do {
      const page = await store.listUsers({ tenantId: t.id, cursor, limit: USER_PAGE });
      out.users.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    out.organizations.push(...(await store.federation.listOrganizations(t.id)));
    out.apps.push(...(await store.oidc.listApps(t.id)));
    out.banks.push(...(await store.banks.listBanks(t.id)));
    out.identities.push(...(await store.federation.listIdentities(t.id)));
  }
  return out;
}

export function countsOf(f: Pick<TransferFile, keyof TransferCounts>): TransferCounts {
  return {
    tenants: f.tenants.length,
    users: f.users.length,
    organizations: f.organizations.length,
    apps: f.apps.length,
    banks: f.banks.length,
    identities: f.identities.length,
  };
}

/** Parses and checks the shape of an export file (not its content's validity as domain objects). */
export function parseTransferFile(text: string): TransferFile {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new InvalidTransferFile('the file is not JSON');
  }
  const o = v as Partial<TransferFile> | null;
  if (o === null || typeof o !== 'object' || o.format !== TRANSFER_FORMAT) throw new InvalidTransferFile(`the file is not a Tessera export (format "${TRANSFER_FORMAT}")`);
  if (o.version !== TRANSFER_VERSION) throw new InvalidTransferFile(`export format version ${String(o.version)} is not read by this version (it reads ${TRANSFER_VERSION})`);
  if (typeof o.keyCheck !== 'string') throw new InvalidTransferFile('keyCheck is missing');
  const str = (x: unknown, k: string) => typeof (x as Record<string, unknown>)[k] === 'string';
  const list = <T>(name: keyof TransferCounts, ok: (x: unknown) => boolean): T[] => {
    const a = o[name] as unknown;
    if (!Array.isArray(a)) throw new InvalidTransferFile(`${name} must be a list`);
    a.forEach((x, i) => {
      if (x === null || typeof x !== 'object' || !ok(x)) throw new InvalidTransferFile(`${name}[${i}] is not a valid record`);
    });
    return a as T[];
  };
  const tenants = list<Tenant>('tenants', (x) => str(x, 'id'));
  const users = list<User>('users', (x) => str(x, 'id') && str(x, 'tenantId') && str(x, 'email'));
  const organizations = list<Organization>('organizations', (x) => str(x, 'slug') && str(x, 'tenantId'));
  const apps = list<PlatformApp>('apps', (x) => str(x, 'clientId') && str(x, 'tenantId'));
  const banks = list<Bank>('banks', (x) => str(x, 'bankId') && str(x, 'tenantId'));
  const identities = list<FederatedIdentity>('identities', (x) => str(x, 'tenantId') && str(x, 'issuer') && str(x, 'subject') && str(x, 'userId'));
  const known = new Set(tenants.map((t) => t.id));
  for (const [name, items] of [
    ['users', users],
    ['organizations', organizations],
    ['apps', apps],
    ['banks', banks],
    ['identities', identities],
  ] as const) {
    const orphan = (items as Array<{ tenantId: string }>).find((x) => !known.has(x.tenantId));
    if (orphan) throw new InvalidTransferFile(`${name} names tenant "${orphan.tenantId}", which the file does not hold`);
  }
  return {
    format: TRANSFER_FORMAT,
    version: TRANSFER_VERSION,
    exportedAt: String(o.exportedAt ?? ''),
    source: String(o.source ?? ''),
    keyCheck: o.keyCheck,
    tenants,
    users,
    organizations,
    apps,
    banks,
    identities,
  };
}

/** JSON with object keys sorted: equal records compare equal whatever the store's key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : x,
  );
}

/** A tenant's settings without its timestamps: the reserved `platform`, made at each first start, compares equal. */
function tenantSettings(t: Tenant): string {
  const { createdAt: _c, updatedAt: _u, ...rest } = t;
  return canonical({ ...rest, degradation: degradationOf(t) });
}

/** Optional fields at their meaning (absent = enabled, RS256), as the stores differ in writing them. */
function userRecord(u: User): string {
  return canonical({ ...u, disabled: u.disabled === true });
}
function appRecord(a: PlatformApp): string {
  return canonical({ ...a, idTokenSignedResponseAlg: a.idTokenSignedResponseAlg ?? 'RS256' });
}

export interface ImportResult {
  written: TransferCounts;
  /** Records already in the target with the same content. */
  unchanged: TransferCounts;
}

/** The audit event of an import, per tenant that got records (docs/reliability.md); in EventType (src/events/bus.ts). */
export const TENANT_IMPORTED = 'tenant.imported';

/** Records by kind, as a file holds them. */
type Records = Pick<TransferFile, keyof TransferCounts>;

const noRecords = (): Records => ({ tenants: [], users: [], organizations: [], apps: [], banks: [], identities: [] });

/** The records of one tenant. */
function recordsOf(r: Records, tenantId: string): Records {
  const mine = <T extends { tenantId: string }>(xs: T[]) => xs.filter((x) => x.tenantId === tenantId);
  return {
    tenants: r.tenants.filter((t) => t.id === tenantId),
    users: mine(r.users),
    organizations: mine(r.organizations),
    apps: mine(r.apps),
    banks: mine(r.banks),
    identities: mine(r.identities),
  };
}

/** `tenant.imported`: what one import wrote into (and found already in) one tenant. Counts only. */
function importedEvent(tenantId: string, file: TransferFile, written: Records, unchanged: Records, now: number): AuditEventInput {
  return {
    time: now,
    tenantId,
    type: TENANT_IMPORTED,
    userId: null,
    sessionId: null,
    kind: null,
    headers: { requestId: null, correlationId: null, activityId: null, tenantId: null, sessionId: null },
    ip: null,
    userAgent: null,
    location: null,
    details: {
      by: 'tessera import',
      // As the exporting Tessera wrote them into the file: bounded, for people.
      source: file.source.slice(0, 64),
      exportedAt: file.exportedAt.slice(0, 64),
      written: countsOf(written),
      unchanged: countsOf(unchanged),
    },
  };
}

/**
 * Writes the file's records that the target lacks, and per tenant that got any, its
 * `tenant.imported` audit record (at `now`). Throws TransferKeyMismatch when `keyCheck` (the
 * target's, computed by the caller) is not the file's, TransferConflict when any record exists
 * with other content — both before the first write.
 */
export async function importStore(store: SessionStore, file: TransferFile, keyCheck: string, now: number): Promise<ImportResult> {
  if (file.keyCheck !== keyCheck) {
    throw new TransferKeyMismatch();
  }
  const conflicts: string[] = [];
  /** Missing in the target: to write. */
  const todo = noRecords();
  /** In the target with the same content: skipped. */
  const kept = noRecords();

  // 1. Compare everything; write nothing.
  for (const t of file.tenants) {
    const have = await store.getTenant(t.id);
    if (have === null) todo.tenants.push(t);
    else if (tenantSettings(have) === tenantSettings(t)) kept.tenants.push(t);
    else conflicts.push(`tenant "${t.id}" exists with other settings`);
  }
  const emails = new Set<string>();
  for (const u of file.users) {
    const key = `${u.tenantId} ${u.email}`;
    if (emails.has(key)) conflicts.push(`the file holds two users with the email ${u.email} in tenant "${u.tenantId}"`);
    emails.add(key);
    const have = await store.getUser(u.tenantId, u.id);
    const byEmail = await store.findUserByEmail(u.tenantId, u.email);
    if (have === null && byEmail === null) todo.users.push(u);
    else if (have !== null && userRecord(have) === userRecord(u)) kept.users.push(u);
    else if (byEmail !== null && byEmail.id !== u.id) conflicts.push(`user ${u.email} of tenant "${u.tenantId}" exists with another id`);
    else conflicts.push(`user ${u.id} of tenant "${u.tenantId}" exists with other content`);
  }
  for (const o of file.organizations) {
    const have = await store.federation.getOrganization(o.slug);
    if (have === null) todo.organizations.push(o);
    else if (canonical(have) === canonical(o)) kept.organizations.push(o);
    else conflicts.push(`organization "${o.slug}" exists ${have.tenantId === o.tenantId ? 'with other content' : `in tenant "${have.tenantId}"`}`);
  }
  for (const a of file.apps) {
    const have = await store.oidc.getApp(a.clientId);
    if (have === null) todo.apps.push(a);
    else if (appRecord(have) === appRecord(a)) kept.apps.push(a);
    else conflicts.push(`application "${a.clientId}" exists ${have.tenantId === a.tenantId ? 'with other content' : `in tenant "${have.tenantId}"`}`);
  }
  for (const b of file.banks) {
    const have = await store.banks.getBank(b.tenantId, b.bankId);
    if (have === null) todo.banks.push(b);
    else if (canonical(have) === canonical(b)) kept.banks.push(b);
    else conflicts.push(`bank "${b.bankId}" of tenant "${b.tenantId}" exists with other content`);
  }
  for (const i of file.identities) {
    const have = await store.federation.findIdentity(i.tenantId, i.issuer, i.subject);
    if (have === null) todo.identities.push(i);
    else if (have.userId === i.userId) kept.identities.push(i);
    else conflicts.push(`the identity ${i.subject} of ${i.issuer} in tenant "${i.tenantId}" is linked to another user`);
  }
  if (conflicts.length > 0) throw new TransferConflict(conflicts);

  // 2. Write what is missing, tenant by tenant: the tenant first (everything else names it), the
  // identity links after the users they name; then that tenant's audit record.
  for (const t of file.tenants) {
    const w = recordsOf(todo, t.id);
    for (const x of w.tenants) await store.putTenant(x);
    for (const u of w.users) await store.createUser(u);
    for (const o of w.organizations) await store.federation.putOrganization(o, null);
    for (const a of w.apps) await store.oidc.putApp(a);
    for (const b of w.banks) await store.banks.putBank(b);
    for (const i of w.identities) await store.federation.linkIdentity(i);
    if (Object.values(countsOf(w)).some((n) => n > 0)) await store.audit.append(importedEvent(t.id, file, w, recordsOf(kept, t.id), now));
  }
  return { written: countsOf(todo), unchanged: countsOf(kept) };
}
