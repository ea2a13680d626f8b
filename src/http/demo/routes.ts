// Demo mode's routes (TESSERA_DEMO=1; src/http/app.ts registers them only then): the demo account
// (./account.ts) is made sure of, and a small fintech app is served at /demo/ (the bank is the
// bank simulator, `npx tessera bank-simulator`, registered as the demo tenant's bank) — static
// files from web/demo (plain HTML and JavaScript, no build step), read once at start; a strict
// Content-Security-Policy allows only these files themselves.

import { readFileSync } from 'node:fs';
import { DEMO_BANK_ID, DEMO_EMAIL, DEMO_PASSWORD, DEMO_TENANT, ensureDemoAccount } from './account.ts';
import type { App, Deps } from '../deps.ts';

const WEB = new URL('../../../web/demo/', import.meta.url);

const PAGES: Record<string, { file: string; type: string }> = {
  '/demo/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/demo/fintech.js': { file: 'fintech.js', type: 'text/javascript; charset=utf-8' },
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

export async function demoRoutes(app: App, deps: Deps): Promise<void> {
  await ensureDemoAccount(deps, deps.clock.now());

  for (const [path, page] of Object.entries(PAGES)) {
    const body = readFileSync(new URL(page.file, WEB));
    app.get(path, { schema: { hide: true } }, async (_request, reply) =>
      reply
        .header('content-type', page.type)
        .header('content-security-policy', CSP)
        .header('x-frame-options', 'DENY')
        .header('referrer-policy', 'same-origin')
        .header('cache-control', 'no-cache')
        .send(body),
    );
  }
  for (const [from, to] of [['/demo', '/demo/']] as const) {
    app.get(from, { schema: { hide: true } }, async (request, reply) => {
      const query = request.url.indexOf('?');
      return reply.redirect(to + (query === -1 ? '' : request.url.slice(query)), 308);
    });
  }

  // What the pages need to know about this server: where the API is, the demo bank's id (other
  // tenants register a bank of that id to use the page), and the demo account's login.
  app.get('/demo/config.json', { schema: { hide: true } }, async () => ({
    publicUrl: deps.config.publicUrl,
    bankId: DEMO_BANK_ID,
    demoAccount: { tenantId: DEMO_TENANT, email: DEMO_EMAIL, password: DEMO_PASSWORD },
  }));
}
