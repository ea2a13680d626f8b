// GET /healthz (the process is alive) and GET /readyz (the store answers).

import { Type } from 'typebox';
import { ShuttingDown, StoreUnavailable } from '../../domain/errors.ts';
import type { App, Deps } from '../deps.ts';
import { problems } from '../schemas.ts';

export async function healthRoutes(app: App, deps: Deps): Promise<void> {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process is up',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: the store answers and the server is not shutting down',
        response: {
          200: Type.Object({
            status: Type.Literal('ready'),
            store: Type.String(),
            checks: Type.Record(Type.String(), Type.String()),
          }),
          ...problems(503),
        },
      },
    },
    async () => {
      // A draining server says so first, so that load balancers stop sending it requests while
      // it still serves them (docs/reliability.md, "Stopping").
      if (deps.lifecycle.draining) throw new ShuttingDown();
      try {
        await deps.store.ping();
      } catch (err) {
        throw err instanceof StoreUnavailable ? err : new StoreUnavailable('The session store does not answer.', err);
      }
      return { status: 'ready' as const, store: deps.store.kind, checks: { store: 'ok', ...deps.monitor.readiness() } };
    },
  );
}
