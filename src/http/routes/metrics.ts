// GET /metrics: Prometheus text format (docs/monitoring.md §3). See src/audit/metrics.ts for what
// is counted and how the active-session gauge stays right across processes. Like /healthz it needs
// no credential; expose it to the scraper's network only.

import type { App, Deps } from '../deps.ts';

export async function metricsRoutes(app: App, deps: Deps): Promise<void> {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        produces: ['text/plain'],
      },
    },
    async (_request, reply) => {
      const text = await deps.monitor.metrics.text();
      return reply.type(deps.monitor.metrics.contentType).send(text);
    },
  );
}
