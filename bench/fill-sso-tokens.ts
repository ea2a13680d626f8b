// Stores N finished SSO logins, each as the callback of a real one leaves it (docs/api.md §Single
// sign-on, step 2: an `idp` session, a `pending` app session below it, the one-time token),
// through Tessera's own createSsoSessions on the same store and cookie key as the server under
// test — so that bench/run.ts can measure the exchange (POST /api/v1/sso/token) without an
// identity provider. Each login is a different user's (made here through the store port, as an
// SSO login's first visit makes one), as on a real site: N people signing in once each, not one
// person signing in N times — on Redis all of a user's sessions are one value, so N logins of
// one user would make every exchange read and write a value of 3N records.
// The tokens live 60 s: make them right before the measurement.
// argv[2]: JSON { store: "redis://…" | "sqlite:<path>", prefix, cookieKey, tenantId, count, budgetS, out }:
// at most `count` logins, and none started after `budgetS` seconds (the first tokens must still be
// valid when the last are used).
// Writes the raw tokens, one per line, to `out`; prints one JSON line { stored, failed, seconds }.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../src/config/config.ts';
import { systemClock } from '../src/domain/clock.ts';
import type { Organization } from '../src/domain/organization.ts';
import { createSsoSessions } from '../src/flows/sso/sessions.ts';
import type { User } from '../src/domain/user.ts';
import { hashSecret } from '../src/domain/secrets.ts';
import { createRuntime } from '../src/runtime.ts';
import { openStore } from '../src/store/open.ts';

/** The verifier of every bench login's challenge (bench/load-sso.ts sends it). */
const SSO_BENCH_VERIFIER = 'bench-verifier-' + 'v'.repeat(40);

const o = JSON.parse(process.argv[2] ?? '{}') as { store: string; prefix: string; cookieKey: string; tenantId: string; count: number; budgetS?: number; out: string };
const config = loadConfig({ TESSERA_STORE: o.store, TESSERA_REDIS_PREFIX: o.prefix, COOKIE_SECRET_SIGN_KEY: o.cookieKey, TESSERA_LOG_LEVEL: 'warn' });
const store = await openStore(config);
// Not started: this process only writes sessions (no feeds, sweeper or bank worker needed).
const runtime = await createRuntime({ ...config, cookieSecret: o.cookieKey }, store, systemClock, { adminTokenHash: null });
const deps = runtime.deps;
const started = performance.now();
const tenant = await store.getTenant(o.tenantId);
if (!tenant) throw new Error(`no tenant ${o.tenantId}`);
const org = { slug: 'bench-idp', protocol: 'oidc', tenantId: o.tenantId } as unknown as Organization;
const device = { userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench', ip: '127.0.0.1' };
const origin = { headers: { requestId: 'bench', correlationId: 'bench', activityId: null, tenantId: o.tenantId, sessionId: null }, ip: '127.0.0.1', userAgent: null, location: null };
/** Users of this fill (another fill on the same store makes others). */
const fillId = randomBytes(4).toString('hex');
/** Logins in flight at once: enough to keep the store busy, each one a few round trips. */
const CONCURRENCY = 100;

/** A store too busy to answer in time (a loaded machine): the step is made again, a few times. */
async function retried<T>(f: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (err) {
      if (i >= 4 || (err as { code?: string }).code !== 'store_unavailable') throw err;
    }
  }
}

/** An SSO-created account (no password), as a first SSO login makes one. */
async function userFor(i: number, now: number): Promise<User> {
  const user: User = { id: `sso-bench-${fillId}-${i}`, tenantId: o.tenantId, email: `sso-${fillId}-${i}@example.com`, passwordHash: null, roles: [], emailVerified: true, createdAt: now, updatedAt: now };
  try {
    return await retried(() => store.createUser(user));
  } catch (err) {
    // A retried create whose first attempt had been applied.
    const existing = (err as { code?: string }).code === 'user_exists' ? await store.getUser(o.tenantId, user.id) : null;
    if (existing === null) throw err;
    return existing;
  }
}

const budgetMs = (o.budgetS ?? 20) * 1000;
const tokens: string[] = [];
/** Logins that failed even when retried (a store too busy): left out, counted, the first one named. */
let failed = 0;
let next = 0;
async function worker(): Promise<void> {
  while (next < o.count && performance.now() - started < budgetMs) {
    const i = next++;
    try {
      tokens.push(await login(i));
    } catch (err) {
      if (failed++ === 0) process.stderr.write(`an SSO login of the fill failed: ${(err as Error).message}\n`);
    }
  }
}

async function login(i: number): Promise<string> {
  const user = await userFor(i, Date.now());
  const made = await retried(() =>
    createSsoSessions(
      deps,
      {
        tenant: tenant!,
        user,
        org,
        profile: { issuer: 'https://idp.bench.invalid', subject: user.id, email: user.email, emailVerified: true },
        device,
        adminLogin: false,
        // A command-line login's (its S256 challenge; bench/load-sso.ts sends the verifier):
        // a browser login's token is redeemed only with that browser's flow cookie.
        binding: { flowBindingHash: 'bench', codeChallenge: hashSecret(SSO_BENCH_VERIFIER) },
      },
      Date.now(),
      origin,
    ),
  );
  return made.token;
}
await Promise.all(Array.from({ length: CONCURRENCY }, worker));
if (tokens.length === 0) throw new Error(`no SSO login of the fill succeeded (${failed} failed)`);
const seconds = (performance.now() - started) / 1000;
writeFileSync(o.out, tokens.join('\n') + '\n');
await runtime.stop(); // the audit queue written out, then the store closed
process.stdout.write(JSON.stringify({ stored: tokens.length, failed, seconds }) + '\n');
