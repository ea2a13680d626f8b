// The OpenAPI document is fit for code generation and for people: an operationId and a summary on
// every operation, named component schemas, a locally served reference page, and
// openapi-typescript turns it into named operations.

import openapiTS, { astToString } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/harness.ts';

let s: TestServer;
let doc: { paths: Record<string, Record<string, { operationId?: string; summary?: string }>>; components: { schemas: Record<string, unknown> } };

beforeAll(async () => {
  s = await startTestServer();
  const r = await s.app.inject({ url: '/docs' });
  expect(r.statusCode).toBe(200);
  doc = r.json() as typeof doc;
});
afterAll(async () => {
  await s.close();
});

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'options', 'head']);

describe('OpenAPI document', () => {
  it('names every operation uniquely and summarises it', () => {
    const ids: string[] = [];
    const missing: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if (!METHODS.has(method)) continue;
        if (!op.operationId || !/^[a-z][A-Za-z0-9]*$/.test(op.operationId)) missing.push(`${method} ${path}: operationId`);
        if (!op.summary) missing.push(`${method} ${path}: summary`);
        if (op.operationId) ids.push(op.operationId);
      }
    }
    expect(missing).toEqual([]);
    expect(ids.length).toBeGreaterThan(40);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ['createUser', 'listUsers', 'getUser', 'updateUser', 'deleteUser', 'listTenants', 'deleteTenant', 'listSessions', 'login']) {
      expect(ids).toContain(id);
    }
  });

  it('references named component schemas instead of inline copies', () => {
    for (const name of ['User', 'UserPage', 'Tenant', 'TenantLifetimes', 'Session', 'SessionDevice', 'SessionPage', 'Problem']) {
      expect(Object.keys(doc.components.schemas)).toContain(name);
    }
    const listUsers = doc.paths['/api/v1/admin/users']!.get as unknown as { responses: Record<string, { content: Record<string, { schema: unknown }> }> };
    expect(listUsers.responses['200']!.content['application/json']!.schema).toEqual({ $ref: '#/components/schemas/UserPage' });
    const text = JSON.stringify(doc.paths);
    // The user object appears once, in components, and is referenced everywhere else.
    expect(text).not.toContain('"title":"User"');
    expect(JSON.stringify(doc.components.schemas.Tenant)).toContain('#/components/schemas/TenantLifetimes');
  });

  it('openapi-typescript yields named operations and schemas', async () => {
    const ts = astToString(await openapiTS(doc as never));
    const operations = ts.slice(ts.indexOf('export interface operations'));
    for (const id of ['createUser', 'listUsers', 'updateUser', 'deleteTenant', 'listSessions']) {
      expect(operations).toMatch(new RegExp(`\\n    ${id}: \\{`));
    }
    expect(ts).toMatch(/operations\["listUsers"\]/);
    expect(ts).toContain('User: {');
    expect(ts).toContain('components["schemas"]["User"]');
  });

  it('the reference page is served from here with a strict script policy', async () => {
    const page = await s.app.inject({ url: '/docs/reference' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self';");
    expect(csp).not.toMatch(/script-src[^;]*unsafe/);
    const scripts = [...page.body.matchAll(/<script src="([^"]+)"/g)].map((m) => m[1] as string);
    expect(scripts.length).toBe(2);
    expect(page.body).not.toMatch(/<script>(?!<)/);
    for (const src of scripts) {
      expect(src.startsWith('/docs/reference/')).toBe(true);
      const js = await s.app.inject({ url: src });
      expect(js.statusCode, src).toBe(200);
      expect(js.headers['content-type']).toContain('javascript');
    }
    expect((await s.app.inject({ url: '/docs/reference/swagger-ui.css' })).statusCode).toBe(200);
    expect((await s.app.inject({ url: '/docs/reference/..%2Fpackage.json' })).statusCode).toBe(404);
  });
});
