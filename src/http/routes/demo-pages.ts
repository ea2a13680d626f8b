// The demo pages (TESSERA_DEMO=1): a small fintech app at /demo/ and the stub bank's consent UI
// at /demo/bank/, static files from web/demo (plain HTML and JavaScript, no build step). They are
// read once at start; a strict Content-Security-Policy allows only these files themselves.

import { readFileSync } from 'node:fs';
import { DEMO_EMAIL, DEMO_PASSWORD, DEMO_TENANT, ensureDemoAccount } from '../../flows/demo.ts';
import { availableBanks } from '../../flows/banks.ts';
import type { App, Deps } from '../deps.ts';

const WEB = new URL('../../../web/demo/', import.meta.url);

const PAGES: Record<string, { file: string; type: string }> = {
  '/demo/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/demo/fintech.js': { file: 'fintech.js', type: 'text/javascript; charset=utf-8' },
  '/demo/bank/': { file: 'bank.html', type: 'text/html; charset=utf-8' },
  '/demo/bank.js': { file: 'bank.js', type: 'text/javascript; charset=utf-8' },
  '/demo/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export async function demoPageRoutes(app: App, deps: Deps): Promise<void> {
  await ensureDemoAccount(deps, deps.clock.now());

  for (const [path, page] of Object.entries(PAGES)) {
    const body = readFileSync(new URL(page.file, WEB));
    app.get(path, { schema: { hide: true } }, async (_request, reply) =>
      reply
        .header('content-type', page.type)
        .header('content-security-policy', CSP)
        .header('x-frame-options', 'DENY')
        // The bank page's URL carries the consent's details: keep them off other sites' logs.
        .header('referrer-policy', 'same-origin')
        .header('cache-control', 'no-cache')
        .send(body),
    );
  }
  for (const [from, to] of [
    ['/demo', '/demo/'],
    ['/demo/bank', '/demo/bank/'],
  ] as const) {
    app.get(from, { schema: { hide: true } }, async (request, reply) => {
      const query = request.url.indexOf('?');
      return reply.redirect(to + (query === -1 ? '' : request.url.slice(query)), 308);
    });
  }

  // What the pages need to know about this server: where the API is (the bank page only returns
  // the browser there), which banks exist, and the demo account's login.
  app.get('/demo/config.json', { schema: { hide: true } }, async () => ({
    publicUrl: deps.config.publicUrl,
    banks: availableBanks(deps.config).map((b) => ({ id: b.id, name: b.name })),
    demoAccount: { tenantId: DEMO_TENANT, email: DEMO_EMAIL, password: DEMO_PASSWORD },
  }));
}
