// GET /docs: the OpenAPI 3.1 document, generated from the route schemas; GET /docs/reference:
// a browsable reference (Swagger UI, served from the swagger-ui-dist package, nothing from a CDN).

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { NotFound } from '../../domain/errors.ts';
import type { App } from '../deps.ts';

const SWAGGER_UI_DIR = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** Swagger UI sets style attributes, so styles may be inline; scripts come from here only. */
const REFERENCE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tessera API reference</title>
<link rel="stylesheet" href="/docs/reference/swagger-ui.css">
</head>
<body>
<div id="reference"></div>
<script src="/docs/reference/swagger-ui-bundle.js"></script>
<script src="/docs/reference/init.js"></script>
</body>
</html>
`;

const INIT = `window.ui = SwaggerUIBundle({ url: '/docs', dom_id: '#reference', deepLinking: true, displayOperationId: true });\n`;

const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
};

export async function docsRoutes(app: App): Promise<void> {
  app.get('/docs', { schema: { hide: true } }, async (_request, reply) => {
    void reply.header('cache-control', 'no-cache');
    return app.swagger();
  });

  app.get('/docs/reference', { schema: { hide: true } }, async (_request, reply) => {
    void reply.header('content-security-policy', REFERENCE_CSP).header('cache-control', 'no-cache').type('text/html; charset=utf-8');
    return PAGE;
  });

  app.get('/docs/reference/init.js', { schema: { hide: true } }, async (_request, reply) => {
    void reply.header('cache-control', 'no-cache').type('text/javascript; charset=utf-8');
    return INIT;
  });

  app.get<{ Params: { file: string } }>('/docs/reference/:file', { schema: { hide: true } }, async (request, reply) => {
    const type = ASSETS[request.params.file];
    if (type === undefined) throw new NotFound('not_found', 'No such file.');
    void reply.header('cache-control', 'public, max-age=3600').type(type);
    return readFile(join(SWAGGER_UI_DIR, request.params.file));
  });
}
