// POST /api/v1/auth/reauth: step-up after an anomaly (SPEC 9, tenant anomalyPolicy `reauth`).
// A session marked for re-authentication answers 401 `reauth_required` everywhere else; here the
// user proves their password again and the mark goes. Throttled like login (per account and per
// IP), and a wrong password is a `login.failed` event with reason `reauth_failed`.

import { Type } from 'typebox';
import { verifyPassword, MAX_PASSWORD_LENGTH } from '../../auth/password.ts';
import { accountKey, ipKey, throttledAttempt } from '../../auth/throttle.ts';
import { TooManyRequests, Unauthorized } from '../../domain/errors.ts';
import { sessionEvent, emit } from '../../events/bus.ts';
import { reauthMarkOf } from '../../sessions/monitoring.ts';
import { authenticate, originOf } from '../authenticate.ts';
import type { App, Deps } from '../deps.ts';
import { BearerSecurity, problems } from '../schemas.ts';

export async function authReauthRoutes(app: App, deps: Deps): Promise<void> {
  app.post(
    '/api/v1/auth/reauth',
    {
      preHandler: authenticate(deps, { strict: true, allowReauth: true }),
      schema: {
        tags: ['auth'],
        summary: 'Prove the password again for the current session (step-up)',
        description:
          'Clears the re-authentication mark that an anomaly finding put on the session (tenant policy `reauth`); until then every other call of the session answers 401 `reauth_required`. Works on unmarked sessions too (a fresh proof). Cookie mode needs `X-XSRF-TOKEN`.',
        security: BearerSecurity,
        body: Type.Object({ password: Type.String({ minLength: 1, maxLength: MAX_PASSWORD_LENGTH }) }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...problems(400, 401, 403, 429) },
      },
    },
    async (request, reply) => {
      const { session } = request.auth!;
      const now = deps.clock.now();
      const origin = originOf(request);
      const user = session.userId === null ? null : await deps.store.getUser(session.tenantId, session.userId);
      const acct = accountKey(session.tenantId, user?.email ?? session.handle);
      const ip = ipKey(request.ip);
      const attempt = await throttledAttempt(deps.store, deps.throttle, acct, ip, now, () =>
        verifyPassword(user?.passwordHash ?? null, request.body.password),
      );
      if (attempt.kind === 'throttled') {
        emit(deps, sessionEvent('login.throttled', session, now, { retryAfter: attempt.retryAfter, reason: attempt.reason, step: 'reauth' }), origin);
        throw new TooManyRequests(attempt.retryAfter, 'login_throttled', 'Too many failed attempts; try again later.');
      }
      if (!user || attempt.kind !== 'ok') {
        emit(deps, sessionEvent('login.failed', session, now, { reason: 'reauth_failed' }), origin);
        throw new Unauthorized('invalid_credentials', 'The password is wrong.');
      }
      const marked = reauthMarkOf(session) !== null;
      if (marked) {
        const cleared = await deps.store.updateSessionData(session.handle, { reauth: null }, now);
        if (!cleared) throw new Unauthorized('session_ended', 'The session has ended.');
        deps.sessionCache.remember(cleared);
      }
      emit(deps, sessionEvent('session.reauthenticated', session, now, { cleared: marked }), origin);
      return reply.code(204).send(null);
    },
  );
}
