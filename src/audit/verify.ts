// Checking and exporting the audit log: used by GET /api/v1/admin/audit/verify,
// GET /api/v1/admin/audit/export and `tessera audit verify | export`.

import { ChainVerifier, type AuditRecord, type ChainReport } from '../domain/audit-chain.ts';
import type { AuditQuery, AuditStore } from '../store/audit-port.ts';

const PAGE = 1000;

/** Reads one tenant's chain oldest first and checks every link (see ChainVerifier). */
export async function verifyChain(audit: AuditStore, tenantId: string): Promise<ChainReport> {
  // The state is read first: records appended while the check runs extend past the head read
  // here, and are then reported as running past it; so the scan stops at that head.
  const state = await audit.chainState(tenantId);
  const verifier = new ChainVerifier(tenantId, state.anchor, state.head);
  const stopAt = state.head?.seq ?? 0;
  let cursor: string | null = null;
  outer: do {
    const page = await audit.list({ tenantId, order: 'asc', cursor, limit: PAGE });
    for (const r of page.items) {
      if (state.head !== null && r.seq > stopAt) break outer;
      verifier.add(r);
    }
    cursor = page.nextCursor;
  } while (cursor !== null);
  return verifier.finish();
}

export interface VerifyAllReport {
  ok: boolean;
  tenants: ChainReport[];
}

/** Checks one tenant's chain, or every tenant's. */
export async function verifyAudit(audit: AuditStore, tenantId?: string): Promise<VerifyAllReport> {
  const ids = tenantId !== undefined ? [tenantId] : await audit.tenants();
  const tenants: ChainReport[] = [];
  for (const id of ids) tenants.push(await verifyChain(audit, id));
  return { ok: tenants.every((t) => t.ok), tenants };
}

/** Every record a query selects, oldest first, page by page (for JSON-lines export). */
export async function* exportRecords(
  audit: AuditStore,
  query: Omit<AuditQuery, 'order' | 'cursor' | 'limit'>,
): AsyncGenerator<AuditRecord> {
  let cursor: string | null = null;
  do {
    const page = await audit.list({ ...query, order: 'asc', cursor, limit: PAGE });
    yield* page.items;
    cursor = page.nextCursor;
  } while (cursor !== null);
}
