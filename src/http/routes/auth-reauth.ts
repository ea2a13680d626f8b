// POST /api/v1/auth/reauth: step-up after an anomaly (docs/monitoring.md §4, tenant anomalyPolicy
// `reauth`).
// A session marked for re-authentication answers 401 `reauth_required` everywhere else; here the
// user proves their password again and the mark goes (src/flows/password.ts: throttled like login,
// a wrong password is a `login.failed` event with reason `reauth_failed`).

import { Type } from 'typebox';
import { MAX_PASSWORD_LENGTH } from '../../auth/password.ts';
import { reauthenticate } from '../../flows/password.ts';
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
      await reauthenticate(deps, request.auth!.session, request.body.password, deps.clock.now(), originOf(request));
      return reply.code(204).send(null);
    },
  );
}
