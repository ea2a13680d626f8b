// `tessera import` is audited (src/store/transfer.ts, docs/reliability.md "Export and import"):
// every tenant that gets records has one `tenant.imported` record in its own hash chain — the
// counts written and unchanged, the file's source and export time, never a record's content — and
// the chain verifies, also where the tenant already had a chain. An import that writes nothing
// to a tenant, or is refused, audits nothing. On every store.

import { afterEach, describe, expect, it } from 'vitest';
import { verifyAudit } from '../../src/audit/verify.ts';
import type { AuditEventInput } from '../../src/domain/audit-chain.ts';
import { buildTenant } from '../../src/domain/tenant.ts';
import type { User } from '../../src/domain/user.ts';
import type { Store } from '../../src/store/open.ts';
import { importStore, TransferConflict, TRANSFER_FORMAT, TRANSFER_VERSION, type TransferFile } from '../../src/store/transfer.ts';
import { openTestStore, type StoreChoice } from '../support/harness.ts';
import { storeChoices } from '../support/store-choices.ts';

const NOW = Date.UTC(2026, 11, 7, 4, 0, 0);
const KEY_CHECK = 'key-check-of-this-test';
const HASH = '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDE';

function user(tenantId: string, id: string, email: string): User {
  return { id, tenantId, email, passwordHash: HASH, roles: [], emailVerified: true, createdAt: NOW - 1000, updatedAt: NOW - 1000 };
}

function exportFile(): TransferFile {
  return {
    format: TRANSFER_FORMAT,
    version: TRANSFER_VERSION,
    exportedAt: '2026-12-07T03:00:00.000Z',
    source: 'sqlite',
    keyCheck: KEY_CHECK,
    tenants: [buildTenant('t-new', { profile: 'integration' }, NOW - 5000), buildTenant('t-had', { profile: 'integration' }, NOW - 5000)],
    users: [user('t-new', 'u-1', 'ada@example.com'), user('t-new', 'u-2', 'bob@example.com'), user('t-had', 'u-3', 'eve@example.com')],
    organizations: [],
    apps: [],
    banks: [
      {
        tenantId: 't-new',
        bankId: 'acme',
        name: 'Acme',
        protocol: 'berlin-group',
        baseUrl: 'https://xs2a.acme-bank.example/psd2',
        timeoutMs: 10_000,
        tls: null,
        createdAt: NOW - 1000,
        updatedAt: NOW - 1000,
      },
    ],
    identities: [],
  };
}

const earlier: AuditEventInput = {
  time: NOW - 60_000,
  tenantId: 't-had',
  type: 'user.updated',
  userId: null,
  sessionId: null,
  kind: null,
  headers: { requestId: null, correlationId: null, activityId: null, tenantId: null, sessionId: null },
  ip: null,
  userAgent: null,
  location: null,
  details: { fields: ['roles'] },
};

const zero = { tenants: 0, users: 0, organizations: 0, apps: 0, banks: 0, identities: 0 };

describe.each(storeChoices())('tenant.imported on %s', (choice: StoreChoice) => {
  let opened: { store: Store; cleanup(): Promise<void> } | null = null;
  afterEach(async () => {
    await opened?.store.close();
    await opened?.cleanup();
    opened = null;
  });

  async function target(): Promise<Store> {
    opened = await openTestStore(choice);
    return opened.store;
  }

  const recordsOf = async (store: Store, tenantId: string) => (await store.audit.list({ tenantId, order: 'asc', limit: 100 })).items;

  it('one record per tenant that got records, in its chain, counts only; a repeat and a refusal audit nothing', async () => {
    const store = await target();
    const file = exportFile();
    // `t-had` is already there, with the same settings and a chain of its own.
    await store.putTenant(file.tenants[1]!);
    await store.audit.append(earlier);

    const result = await importStore(store, file, KEY_CHECK, NOW);
    expect(result.written).toEqual({ ...zero, tenants: 1, users: 3, banks: 1 });

    const fresh = await recordsOf(store, 't-new');
    expect(fresh.map((r) => [r.seq, r.type, r.time])).toEqual([[1, 'tenant.imported', NOW]]);
    expect(fresh[0]!.details).toEqual({
      by: 'tessera import',
      source: 'sqlite',
      exportedAt: '2026-12-07T03:00:00.000Z',
      written: { ...zero, tenants: 1, users: 2, banks: 1 },
      unchanged: zero,
    });
    const had = await recordsOf(store, 't-had');
    expect(had.map((r) => [r.seq, r.type])).toEqual([
      [1, 'user.updated'],
      [2, 'tenant.imported'],
    ]);
    expect(had[1]!.details).toMatchObject({ written: { ...zero, users: 1 }, unchanged: { ...zero, tenants: 1 } });
    // Counts, never content: no password hash, no email, no bank address.
    const text = JSON.stringify([...fresh, ...had]);
    for (const secretish of [HASH, 'ada@example.com', 'eve@example.com', 'xs2a.acme-bank.example']) expect(text).not.toContain(secretish);
    // `tessera audit verify`'s check.
    const verified = await verifyAudit(store.audit);
    expect(verified.ok, JSON.stringify(verified)).toBe(true);
    expect(verified.tenants.map((t) => t.tenantId).sort()).toEqual(['t-had', 't-new']);

    // The same file again writes nothing, so it audits nothing.
    const again = await importStore(store, file, KEY_CHECK, NOW + 1000);
    expect(again.written).toEqual(zero);
    expect(await recordsOf(store, 't-new')).toHaveLength(1);
    expect(await recordsOf(store, 't-had')).toHaveLength(2);

    // A refused import (a conflict) writes nothing, and audits nothing.
    const clash = exportFile();
    clash.users.push(user('t-new', 'u-9', 'new@example.com'));
    clash.users[0] = { ...clash.users[0]!, roles: ['admin'] };
    await expect(importStore(store, clash, KEY_CHECK, NOW + 2000)).rejects.toBeInstanceOf(TransferConflict);
    expect(await recordsOf(store, 't-new')).toHaveLength(1);
    expect((await verifyAudit(store.audit)).ok).toBe(true);
  });
});
