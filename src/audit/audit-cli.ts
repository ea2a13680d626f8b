// `tessera audit verify [--tenant <id>]` and `tessera audit export --tenant <id> [--from] [--to]`
// (docs/monitoring.md §2): the same checks as GET /api/v1/admin/audit/verify, against the
// configured store.

import { parseArgs } from 'node:util';
import type { AuditStore } from '../store/audit-port.ts';
import { exportRecords, verifyAudit } from './verify.ts';

export const AUDIT_USAGE = `  audit verify [--tenant <id>]   Check the audit log's hash chains (every tenant by default);
                                 exit 1 when a record was edited or deleted
  audit export --tenant <id> [--from <RFC 3339>] [--to <RFC 3339>]
                                 Print the tenant's audit records as JSON lines, oldest first`;

export interface AuditCliOutput {
  out(line: string): void;
  err(line: string): void;
}

/** Runs an `audit` subcommand; resolves to the exit code (2: usage). */
export async function auditCommand(args: string[], audit: AuditStore, io: AuditCliOutput): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'verify') {
    const { values } = parseArgs({ args: rest, options: { tenant: { type: 'string' } } });
    const report = await verifyAudit(audit, values.tenant);
    for (const t of report.tenants) io.out(JSON.stringify(t));
    for (const t of report.tenants.filter((x) => !x.ok)) {
      for (const p of t.problems) io.err(`tessera: audit chain of tenant ${t.tenantId}: record ${p.seq}: ${p.problem} (${p.detail})`);
    }
    io.err(
      report.ok
        ? `tessera: audit log intact (${report.tenants.length} tenant chain${report.tenants.length === 1 ? '' : 's'}, ${report.tenants.reduce((n, t) => n + t.records, 0)} records)`
        : `tessera: audit log TAMPERED: ${report.tenants.filter((t) => !t.ok).length} of ${report.tenants.length} tenant chains fail`,
    );
    return report.ok ? 0 : 1;
  }
  if (sub === 'export') {
    const { values } = parseArgs({ args: rest, options: { tenant: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } } });
    if (!values.tenant) {
      io.err('tessera: audit export needs --tenant <id>');
      return 2;
    }
    const from = values.from === undefined ? undefined : Date.parse(values.from);
    const to = values.to === undefined ? undefined : Date.parse(values.to);
    if ((from !== undefined && Number.isNaN(from)) || (to !== undefined && Number.isNaN(to))) {
      io.err('tessera: --from and --to take RFC 3339 date-times, e.g. 2026-03-01T00:00:00Z');
      return 2;
    }
    for await (const r of exportRecords(audit, {
      tenantId: values.tenant,
      ...(from !== undefined ? { from } : {}),
      ...(to !== undefined ? { to } : {}),
    })) {
      io.out(JSON.stringify(r));
    }
    return 0;
  }
  io.err(`tessera: expected: tessera audit verify | export\n${AUDIT_USAGE}`);
  return 2;
}
