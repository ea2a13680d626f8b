// The SSO token exchange's plan (src/flows/sso/redeem-token.ts planFor): a token-mode exchange
// goes as one store call (lookUpAndRedeem) for the tenants this process exchanged for last, the
// request's X-Tenant-ID when it names one, and otherwise as the look-up and the redeem. Run on
// SQLite (in-process): the outcomes are the port's; what is checked here is which tenants a plan
// names and that the exchange answers the same either way.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { systemClock } from '../../src/domain/clock.ts';
import type { Organization } from '../../src/domain/organization.ts';
import { hashSecret } from '../../src/domain/secrets.ts';
import { buildTenant } from '../../src/domain/tenant.ts';
import { redeemSsoToken } from '../../src/flows/sso/redeem-token.ts';
import { createSsoSessions } from '../../src/flows/sso/sessions.ts';
import { createRuntime } from '../../src/runtime.ts';
import { cachedTenant, forgetTenant } from '../../src/sessions/tenant-cache.ts';
import { openStore } from '../../src/store/open.ts';
import type { LookUpAndRedeemResult, RedeemPlan } from '../../src/store/sessions-port.ts';

const VERIFIER = 'plan-test-verifier-' + 'v'.repeat(40);
const origin = { headers: { requestId: 't', correlationId: 't', activityId: null, tenantId: null, sessionId: null }, ip: '127.0.0.1', userAgent: null, location: null };

describe('the SSO exchange plan', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-sso-plan-'));
  let runtime: Awaited<ReturnType<typeof createRuntime>>;
  const calls: Array<{ tenants: string[]; outcome: LookUpAndRedeemResult['outcome'] }> = [];

  beforeAll(async () => {
    const cookieKey = 'k'.repeat(43);
    const config = loadConfig({ TESSERA_STORE: `sqlite:${join(dir, 't.db')}`, COOKIE_SECRET_SIGN_KEY: cookieKey, TESSERA_LOG_LEVEL: 'warn' });
    const store = await openStore(config);
    runtime = await createRuntime({ ...config, cookieSecret: cookieKey }, store, systemClock, { adminTokenHash: null });
    const now = Date.now();
    for (const id of ['plan-a', 'plan-b', 'plan-c', 'plan-d', 'plan-e', 'plan-f']) await store.putTenant(buildTenant(id, { profile: 'integration' }, now));
    const inner = store.lookUpAndRedeem.bind(store);
    store.lookUpAndRedeem = async (hash: string, plan: RedeemPlan, at: number) => {
      const r = await inner(hash, plan, at);
      calls.push({ tenants: plan.tenants.map((t) => t.tenantId), outcome: r.outcome });
      return r;
    };
  });
  afterAll(async () => {
    await runtime.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  let n = 0;
  async function login(tenantId: string): Promise<string> {
    const deps = runtime.deps;
    const tenant = await deps.store.getTenant(tenantId);
    const now = Date.now();
    const user = await deps.store.createUser({ id: `u-${n++}`, tenantId, email: `u${n}@example.com`, passwordHash: null, roles: [], emailVerified: true, createdAt: now, updatedAt: now });
    const org = { slug: 'idp', protocol: 'oidc', tenantId } as unknown as Organization;
    const made = await createSsoSessions(
      deps,
      { tenant: tenant!, user, org, profile: { issuer: 'https://idp.invalid', subject: user.id, email: user.email, emailVerified: true }, device: { userAgent: 'test', ip: '127.0.0.1' }, adminLogin: false, binding: { flowBindingHash: 'b', codeChallenge: hashSecret(VERIFIER) } },
      now,
      origin,
    );
    return made.token;
  }
  async function exchange(tenantId: string, header: string | null = null) {
    const token = await login(tenantId);
    calls.length = 0;
    const r = await redeemSsoToken(runtime.deps, { token, codeVerifier: VERIFIER, binding: null }, 'token', header, Date.now(), origin);
    expect(r.mode).toBe('token');
    expect(r.session.tenantId).toBe(tenantId);
    return [...calls];
  }

  it('plans for the tenants of the last exchanges (at most four, most recent first), or the X-Tenant-ID alone', async () => {
    // The first exchange of a process has nothing to guess: the look-up, then the redeem.
    expect(await exchange('plan-a')).toStrictEqual([]);
    expect(await exchange('plan-a')).toStrictEqual([{ tenants: ['plan-a'], outcome: 'redeemed' }]);
    // Another tenant: the plan does not hold (the look-up's answer), then the steps as before.
    expect(await exchange('plan-b')).toStrictEqual([{ tenants: ['plan-a'], outcome: 'looked' }]);
    expect(await exchange('plan-a')).toStrictEqual([{ tenants: ['plan-b', 'plan-a'], outcome: 'redeemed' }]);
    expect(await exchange('plan-b')).toStrictEqual([{ tenants: ['plan-a', 'plan-b'], outcome: 'redeemed' }]);
    for (const t of ['plan-c', 'plan-d', 'plan-e']) await exchange(t);
    expect(await exchange('plan-f')).toStrictEqual([{ tenants: ['plan-e', 'plan-d', 'plan-c', 'plan-b'], outcome: 'looked' }]);
    // The request names its tenant: that one alone.
    expect(await exchange('plan-a', 'plan-a')).toStrictEqual([{ tenants: ['plan-a'], outcome: 'redeemed' }]);
  });

  it('reads a guessed tenant again when its cache entry ran out, and still goes as one call', async () => {
    // (The guesses so far: plan-a, then the other tenants of the test above.)
    const redeemedFirst = (calls: Array<{ tenants: string[]; outcome: string }>) => {
      expect(calls).toHaveLength(1);
      expect(calls[0]?.outcome).toBe('redeemed');
      expect(calls[0]?.tenants[0]).toBe('plan-a');
    };
    redeemedFirst(await exchange('plan-a'));
    // The entry runs out (as every TENANT_CACHE_MS): read again before the plan, not the two steps.
    forgetTenant(runtime.deps, 'plan-a');
    redeemedFirst(await exchange('plan-a'));
    forgetTenant(runtime.deps, 'plan-a');
    expect(await exchange('plan-a', 'plan-a')).toStrictEqual([{ tenants: ['plan-a'], outcome: 'redeemed' }]);
  });

  it('never reads a tenant only named by X-Tenant-ID before the token is known, and drops a gone tenant from its guesses', async () => {
    await exchange('plan-c');
    // plan-e is not a tenant this process exchanged for lately (nor cached): no read, no plan.
    forgetTenant(runtime.deps, 'plan-e');
    for (const t of ['plan-a', 'plan-b', 'plan-c', 'plan-d']) await exchange(t);
    forgetTenant(runtime.deps, 'plan-e');
    expect(await exchange('plan-e', 'plan-e')).toStrictEqual([]);
    // A guessed tenant deleted: its read finds nothing, the plan names the others, and the
    // exchanges after it read it no more.
    await exchange('plan-f');
    await runtime.deps.store.deleteTenant('plan-d');
    forgetTenant(runtime.deps, 'plan-d');
    expect(await exchange('plan-f')).toStrictEqual([{ tenants: ['plan-f', 'plan-e', 'plan-c'], outcome: 'redeemed' }]);
    expect(cachedTenant(runtime.deps, 'plan-d', Date.now())).toBeUndefined();
  });
});
