// Shaping the generated OpenAPI document for code generators and people: an operationId on every
// operation, and each schema that carries a `title` moved to components.schemas under that name
// (referenced with $ref) instead of being repeated inline wherever it is used.

/** `GET /api/v1/admin/users/:id` → `getAdminUsersById`: for routes without an operationId of their own. */
export function operationIdOf(method: string, url: string): string {
  const words = url
    .replace(/^\/api\/v1\//, '/')
    .split('/')
    .filter((p) => p !== '')
    .map((p) => (p.startsWith(':') || p.startsWith('{') ? `by-${p.replace(/^[:{]|}$/g, '')}` : p))
    .join('-')
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '');
  return [method.toLowerCase(), ...words.map((w) => w[0]!.toUpperCase() + w.slice(1))].join('');
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON Schema object (not, say, a `properties` map that happens to have a `title` member). */
const isNamedSchema = (v: Json): boolean => typeof v.title === 'string' && /^[A-Z][A-Za-z0-9]*$/.test(v.title);

export function nameComponentSchemas<T>(doc: T): T {
  const root = doc as Json;
  const components = (isObject(root.components) ? root.components : (root.components = {}));
  const schemas = (isObject(components.schemas) ? components.schemas : (components.schemas = {}));
  const seen = new Map<string, string>();

  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (!isObject(node)) return node;
    const out: Json = {};
    for (const [k, v] of Object.entries(node)) out[k] = visit(v);
    if (!isNamedSchema(out)) return out;
    const name = out.title as string;
    const body = JSON.stringify(out);
    const earlier = seen.get(name);
    if (earlier !== undefined && earlier !== body) throw new Error(`Two different schemas are titled "${name}"`);
    seen.set(name, body);
    schemas[name] = out;
    return { $ref: `#/components/schemas/${name}` };
  };

  root.paths = visit(root.paths);
  for (const [name, schema] of Object.entries(schemas)) {
    if (!isObject(schema)) continue;
    // Named schemas inside named schemas (Tenant → TenantLifetimes) become references too.
    const inner: Json = {};
    for (const [k, v] of Object.entries(schema)) inner[k] = visit(v);
    schemas[name] = inner;
  }
  return doc;
}
