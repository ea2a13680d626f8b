// The Redis store's cap on one user's live sessions (docs/api.md, 409 session_capacity_reached;
// src/store/redis/slot-lua.ts): a login refused by it is audited as `login.failed` with that
// reason, so that an account making sessions without end shows in the audit trail.

import { TesseraError } from '../domain/errors.ts';
import { emit, type EventBus, type Origin } from '../events/bus.ts';

/** Runs `write` (a session create or renewal for the user); a refusal at the cap is audited, then thrown on. */
export async function auditedAtCapacity<T>(
  deps: { bus: EventBus },
  who: { tenantId: string; userId: string | null },
  now: number,
  origin: Origin | undefined,
  write: () => Promise<T>,
): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if (err instanceof TesseraError && err.code === 'session_capacity_reached') {
      emit(
        deps,
        { type: 'login.failed', time: now, tenantId: who.tenantId, userId: who.userId, sessionHandle: null, details: { reason: 'session_capacity_reached' } },
        origin,
      );
    }
    throw err;
  }
}
