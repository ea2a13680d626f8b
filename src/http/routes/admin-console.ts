// GET /admin: the admin console (web/admin, React built by Vite into web/admin/dist by
// `npm install`'s prepare step), served as static files under a strict Content-Security-Policy:
// scripts and styles from this origin only, no inline code, no eval.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { NotFound, TesseraError } from '../../domain/errors.ts';
import type { App } from '../deps.ts';

const DIST = fileURLToPath(new URL('../../../web/admin/dist/', import.meta.url));

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  woff2: 'font/woff2',
};

export async function adminConsoleRoutes(app: App): Promise<void> {
  app.get('/admin', { schema: { hide: true } }, async (_request, reply) => reply.redirect('/admin/', 301));

  app.get('/admin/', { schema: { hide: true } }, async (_request, reply) => {
    let html: Buffer;
    try {
      html = await readFile(`${DIST}index.html`);
    } catch {
      throw new TesseraError(503, 'console_not_built', 'The admin console is not built; run `npm install` (its prepare step builds web/admin).');
    }
    void reply
      .header('content-security-policy', CONSOLE_CSP)
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .type('text/html; charset=utf-8');
    return html;
  });

  app.get<{ Params: { file: string } }>('/admin/assets/:file', { schema: { hide: true } }, async (request, reply) => {
    const file = request.params.file;
    const m = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.([a-z0-9]+)$/.exec(file);
    const type = m ? TYPES[m[1] as string] : undefined;
    if (type === undefined) throw new NotFound('not_found', 'No such file.');
    let body: Buffer;
    try {
      body = await readFile(`${DIST}assets/${file}`);
    } catch {
      throw new NotFound('not_found', 'No such file.');
    }
    // File names carry a content hash: they never change.
    void reply.header('content-security-policy', CONSOLE_CSP).header('cache-control', 'public, max-age=31536000, immutable').type(type);
    return body;
  });
}
