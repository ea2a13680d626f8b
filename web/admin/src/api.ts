// The console's API client: the cookie session of POST /api/v1/auth/login (X-Auth-Mode: cookie),
// X-XSRF-TOKEN on every call that changes something, and the request headers (docs/api.md §Request
// headers) that a production tenant requires on every authenticated call.

export interface Problem {
  status: number;
  code: string;
  detail: string;
  field?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;
  constructor(p: Problem) {
    super(p.detail || p.code);
    this.status = p.status;
    this.code = p.code;
    this.field = p.field;
  }
}

export interface Me {
  tenantId: string;
  sessionId: string;
  xsrfToken: string;
  email: string;
  /** A platform administrator (tenant `platform`) acts on every tenant. */
  platform: boolean;
}

const STORAGE_KEY = 'tessera-admin';
let me: Me | null = null;
let onSignedOut: () => void = () => undefined;

export function current(): Me | null {
  return me;
}

export function whenSignedOut(fn: () => void): void {
  onSignedOut = fn;
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = {
    'x-request-id': crypto.randomUUID(),
    'x-correlation-id': 'admin-console',
    'x-activity-id': crypto.randomUUID(),
    ...extra,
  };
  if (me) {
    h['x-tenant-id'] = me.tenantId;
    h['x-session-id'] = me.sessionId;
    h['x-xsrf-token'] = me.xsrfToken;
  }
  return h;
}

async function problemOf(r: Response): Promise<ApiError> {
  try {
    const p = (await r.json()) as Partial<Problem>;
    return new ApiError({ status: r.status, code: p.code ?? 'error', detail: p.detail ?? r.statusText, ...(p.field ? { field: p.field } : {}) });
  } catch {
    return new ApiError({ status: r.status, code: 'error', detail: `The server answered ${r.status}.` });
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  let r: Response;
  try {
    r = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: headers(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError({ status: 0, code: 'network', detail: 'Tessera cannot be reached. Check the connection and try again.' });
  }
  if (r.status === 401 && me) {
    forget();
    onSignedOut();
  }
  if (!r.ok) throw await problemOf(r);
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

export async function signIn(tenantId: string, email: string, password: string): Promise<Me> {
  forget();
  const r = await fetch('/api/v1/auth/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { ...headers(), 'content-type': 'application/json', 'x-tenant-id': tenantId, 'x-auth-mode': 'cookie' },
    body: JSON.stringify({ email, password }),
  });
  if (!r.ok) throw await problemOf(r);
  const login = (await r.json()) as { sessionId: string; xsrfToken: string; tenantId: string };
  me = { tenantId: login.tenantId, sessionId: login.sessionId, xsrfToken: login.xsrfToken, email, platform: login.tenantId === 'platform' };
  // Only the ids: the session itself is the HttpOnly cookie.
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(me));
  return me;
}

/** After a reload: the ids from this tab's storage, confirmed by the server. */
export async function restore(): Promise<Me | null> {
  const raw = sessionStorage.getItem(STORAGE_KEY);
  if (!raw) return null;
  me = JSON.parse(raw) as Me;
  try {
    await api('GET', '/api/v1/session');
    return me;
  } catch {
    forget();
    return null;
  }
}

export async function signOut(): Promise<void> {
  try {
    await api('POST', '/api/v1/auth/logout');
  } finally {
    forget();
  }
}

function forget(): void {
  me = null;
  sessionStorage.removeItem(STORAGE_KEY);
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Server-Sent Events through fetch, so the request headers go along (EventSource cannot send
 * headers). Calls `onEvent` for each event until `signal` aborts; resolves when the stream ends.
 */
export async function streamEvents(path: string, signal: AbortSignal, onEvent: (type: string, data: unknown) => void): Promise<void> {
  const r = await fetch(path, { credentials: 'same-origin', headers: headers({ accept: 'text/event-stream' }), signal });
  if (!r.ok || !r.body) throw await problemOf(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length > 0) {
        try {
          onEvent(type, JSON.parse(data.join('\n')));
        } catch {
          // not JSON: ignore
        }
      }
    }
  }
}
