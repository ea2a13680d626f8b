// Session levels (docs/sessions.md, docs/api.md §Sessions): Tessera's `idp` session, held in
// its own cookie (`__Host-idp`, SameSite=Lax so that an application's top-level redirect to
// /oidc/auth carries it), decides whether credentials are asked again; each application that
// signs in through /oidc gets an `app` session below it (clientId = the application). An `app`
// session that has expired under a valid `idp` session is simply created again, without asking
// anything. Ending the `idp` session ends every `app` session under it (the store revokes the
// subtree) and tells each application by back-channel logout (backchannel.ts).

import { createHash } from 'node:crypto';
import { Conflict, Unauthorized } from '../../domain/errors.ts';
import { hashSecret } from '../../domain/secrets.ts';
import { issueSession, isValid, slideIdleExpiry, type RevokeReason, type Session } from '../../domain/session.ts';
import { lifetimeOf } from '../../domain/tenant.ts';
import { sessionEvent, emit, type Origin } from '../../events/bus.ts';
import { CookieSigner, cookieName } from '../../tokens/cookies.ts';
import type { Config } from '../../config/config.ts';
import { announceEnded, endSession, type SessionDeps } from '../../sessions/app-sessions.ts';
import { deriveKey } from '../../tokens/sealing.ts';

/** What the session levels use, declared here (src/runtime.ts's `Deps` has all of it). */
export interface OidcLevelsDeps extends SessionDeps {
  config: Pick<Config, 'publicUrl' | 'insecureCookies'> & { cookieSecret: string };
}

type Deps = OidcLevelsDeps;

const signers = new WeakMap<object, CookieSigner>();

function signerOf(deps: Pick<Deps, 'config'>): CookieSigner {
  let s = signers.get(deps.config);
  if (!s) {
    s = new CookieSigner(deriveKey(deps.config.cookieSecret, 'cookie-signing'));
    signers.set(deps.config, s);
  }
  return s;
}

/** The verified value of the idp cookie in a raw Cookie header (oidc-provider's Koa requests have no @fastify/cookie). */
export function idpSecretFromHeader(deps: Pick<Deps, 'config'>, header: string | undefined): string | null {
  if (!header) return null;
  const name = cookieName(deps.config, 'idp');
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    let raw: string;
    try {
      raw = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      return null; // a malformed cookie is no cookie
    }
    if (raw.length > 512) return null;
    const r = signerOf(deps).unsign(raw);
    return r.valid && /^[A-Za-z0-9_-]{43}$/.test(r.value) ? r.value : null;
  }
  return null;
}

/** The cookie value of a new idp session (signed as @fastify/cookie would). */
export function signedIdpCookie(deps: Pick<Deps, 'config'>, secret: string): string {
  return signerOf(deps).sign(secret);
}

/** The `idp` session named by the cookie header, if it is valid (and of `tenantId`, when given). */
export async function validIdpSession(deps: Deps, cookieHeader: string | undefined, now: number, tenantId?: string): Promise<Session | null> {
  const secret = idpSecretFromHeader(deps, cookieHeader);
  if (secret === null) return null;
  const s = await deps.store.getSessionBySecretHash(hashSecret(secret));
  if (!s || s.kind !== 'idp' || !isValid(s, now)) return null;
  if (tenantId !== undefined && s.tenantId !== tenantId) return null;
  return s;
}

/** Activity at the identity provider slides the idp session's idle expiry. */
export async function touchIdpSession(deps: Deps, idp: Session, now: number): Promise<Session | null> {
  const tenant = await deps.store.getTenant(idp.tenantId);
  if (!tenant) return null;
  if (now - idp.lastSeenAt < 60_000) return idp;
  return deps.store.touchSession(idp.handle, now, slideIdleExpiry(idp, lifetimeOf(tenant, 'idp').idle, now));
}

/**
 * The application's `app` session under `idp`: the valid one with the same oidc-provider `sid`,
 * or a new one (first sign-in to this application, or the previous one expired: re-created
 * silently, docs/api.md §Sessions).
 */
export async function ensureAppSession(deps: Deps, idp: Session, clientId: string, oidcSid: string, now: number, origin?: Origin): Promise<{ session: Session; created: boolean }> {
  const existing = await deps.store.listSessions({ tenantId: idp.tenantId, userId: idp.userId as string, kind: 'app', status: 'active', now, limit: 500 });
  const same = existing.items.find((s) => s.parentHandle === idp.handle && s.clientId === clientId && s.data.oidcSid === oidcSid && isValid(s, now));
  const tenant = await deps.store.getTenant(idp.tenantId);
  if (!tenant) throw new Conflict('tenant_not_found', 'The tenant of this session no longer exists.');
  const life = lifetimeOf(tenant, 'app');
  if (same) {
    const touched = await deps.store.touchSession(same.handle, now, slideIdleExpiry(same, life.idle, now));
    if (touched) return { session: touched, created: false };
  }
  const { session } = issueSession(
    {
      tenantId: idp.tenantId,
      userId: idp.userId,
      kind: 'app',
      parentHandle: idp.handle,
      lifetime: life,
      authMethod: 'oidc',
      clientId,
      device: idp.device,
      data: { mode: 'oidc', oidcSid },
      notAfter: idp.absoluteExpiresAt,
    },
    now,
  );
  const limit = tenant.sessionLimit.max === null ? undefined : { kind: 'app' as const, max: tenant.sessionLimit.max, policy: tenant.sessionLimit.policy };
  const r = await deps.store.createSession(session, now, limit);
  if (!r.ok) throw new Conflict('session_limit_reached', `This account already has ${r.active} active sessions, the most the tenant allows; end one first.`);
  announceEnded(deps, r.evicted, now, origin);
  emit(deps, sessionEvent('session.created', r.session, now, { authMethod: 'oidc', clientId, renewed: existing.items.some((s) => s.clientId === clientId && s.parentHandle === idp.handle) }), origin);
  // The anomaly rules and the tenant's policy, as for every other new app session.
  const screened = await deps.monitor.screenNewSession(r.session, tenant, now, origin);
  if (screened === null) throw new Unauthorized('anomaly_detected', 'This sign-in was refused: it does not match how this account is normally used.');
  return { session: screened, created: true };
}

/**
 * Ends a session and its subtree. The applications hear of their ended `app` sessions through
 * the event bus (backchannel.ts `followSessionEnds`), as for every other way a session ends.
 */
export async function endSessionsAndNotify(deps: Deps, handle: string, reason: RevokeReason, now: number, origin?: Origin): Promise<{ ended: Session[] }> {
  return { ended: await endSession(deps, handle, reason, now, origin) };
}

/** The external provider's session keys an ID token names: its `sid`, and always its subject. */
export function externalSessionKeys(subject: string, sid: string | null): string[] {
  return sid === null ? [`sub:${subject}`] : [`sid:${sid}`, `sub:${subject}`];
}

/** A short, non-secret digest for logs and events. */
export function shortDigest(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 12);
}
