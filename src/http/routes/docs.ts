// GET /docs: the OpenAPI 3.1 document, generated from the route schemas.

import type { App } from '../deps.ts';

export async function docsRoutes(app: App): Promise<void> {
  app.get('/docs', { schema: { hide: true } }, async (_request, reply) => {
    void reply.header('cache-control', 'no-cache');
    return app.swagger();
  });
}
