// @tessera/client — a Tessera session in a browser or in Node, without runtime dependencies.
//
// Token mode keeps the pair (userSessionToken + rotating refreshToken) in a storage that every
// tab of a browser shares, refreshes it shortly before the token expires, and makes sure that N
// tabs produce ONE refresh request:
//
// - Within a page, refreshes are single-flight (one promise).
// - Across tabs, a refresh runs under the Web Lock `<key>:refresh`. Inside the lock the tab reads
//   the stored pair and refreshes only if the pair still needs it.
// - That read alone is not enough: a storage write (and a BroadcastChannel message) reaches other
//   tabs asynchronously, so a tab that takes the lock right after another released it can still
//   read the old pair and would refresh a second time with a rotated token (with refreshGrace 0
//   the server then ends the session). So the refreshing tab also takes a second lock named after
//   the refresh token it rotated, before it releases the refresh lock, and holds it for a while.
//   The lock manager is one ordered authority for all tabs: a tab holding the refresh lock that
//   sees (navigator.locks.query()) the "rotated" lock of the token it was about to present waits
//   for the successor pair (BroadcastChannel message, storage event or storage poll) instead.
// - Without Web Locks (old browsers, non-secure contexts) a localStorage lock with a settle delay
//   stands in; it narrows the race but does not close it, and the server's grace window covers
//   the rest. Without BroadcastChannel the `storage` event carries changes between tabs.
//
// Cookie mode leaves the session in the __Host-sid cookie (credentials: 'include') and sends
// X-XSRF-TOKEN on state-changing requests; there is no token to refresh.

export type Mode = 'token' | 'cookie';

/** Where token mode keeps its pair. Synchronous or asynchronous. */
export interface TesseraStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** The subset of the Web Locks API that the client uses (navigator.locks). */
export interface LockManagerLike {
  request(name: string, options: { ifAvailable?: boolean }, callback: (lock: unknown) => Promise<unknown>): Promise<unknown>;
  query(): Promise<{ held?: { name?: string }[] }>;
}

export interface TesseraClientOptions {
  baseUrl: string;
  tenantId: string;
  mode?: Mode;
  /** Seconds before expiry at which the token is refreshed; default 300, at most half the lifetime. */
  refreshThreshold?: number;
  storage?: TesseraStorage;
  fetch?: typeof fetch;
  /** Storage key and lock/channel prefix; default `tessera:<tenantId>`. */
  storageKey?: string;
  /** Web Locks; default navigator.locks. `null` turns cross-tab locking off (in-page only). */
  locks?: LockManagerLike | null;
  /** How long (ms) the "rotated" lock is held after a refresh; default 30000. */
  rotatedHoldMs?: number;
}

export interface Session {
  sessionId: string;
  customerId: string;
  tenantId: string;
  mode: Mode;
  scope: string | null;
  /** ms since the epoch: token expiry (token mode), idle expiry as last seen (cookie mode). */
  expiresAt: number;
}

export type TesseraEvent = 'expired' | 'refreshed' | 'loggedOut' | 'loggedIn' | 'change';

export interface Activity {
  readonly id: string;
  end(): void;
}

export interface TesseraClient {
  login(credentials: { email: string; password: string }): Promise<Session>;
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  refresh(): Promise<Session | null>;
  logout(): Promise<void>;
  getSession(): Session | null;
  on(event: TesseraEvent, listener: (session: Session | null) => void): () => void;
  startActivity(): Activity;
  /** Resolves when the stored session has been read. */
  readonly ready: Promise<void>;
  /** The userSessionToken (token mode), for callers that must set it themselves. */
  getAccessToken(): string | null;
  /** Stops timers and cross-tab listeners. */
  close(): void;
}

/** An answer of Tessera that is not what was asked for (problem+json `code` when present). */
export class TesseraError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'TesseraError';
    this.status = status;
    this.code = code;
  }
}

interface Stored {
  v: 1;
  mode: Mode;
  sessionId: string;
  customerId: string;
  tenantId: string;
  scope: string | null;
  accessToken?: string;
  refreshToken?: string;
  xsrfToken?: string;
  /** ms: when this state was obtained (the answer arrived) */
  at: number;
  /** s: the token lifetime as issued */
  lifetime: number;
  expiresAt: number;
}

type Ending = 'expired' | 'loggedOut';
type Message = { t: 'state'; state: Stored | null; ended?: string; why?: Ending };

const g = globalThis as unknown as {
  localStorage?: Storage;
  navigator?: { locks?: LockManagerLike };
  BroadcastChannel?: typeof BroadcastChannel;
  addEventListener?: (type: string, fn: (e: Event) => void) => void;
  removeEventListener?: (type: string, fn: (e: Event) => void) => void;
  document?: { visibilityState?: string; addEventListener(t: string, fn: () => void): void; removeEventListener(t: string, fn: () => void): void };
  window?: unknown;
};

const sleep = (ms: number, background = false) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    // Node: a background wait (the "rotated" lock's hold) must not keep the process alive.
    if (background) (t as { unref?: () => void }).unref?.();
  });

function uuid(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A lock name for a token that does not reveal it: two 53-bit string hashes (cyrb53). */
function tokenTag(s: string): string {
  const h = (seed: number) => {
    let a = 0xdeadbeef ^ seed;
    let b = 0x41c6ce57 ^ seed;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      a = Math.imul(a ^ c, 2654435761);
      b = Math.imul(b ^ c, 1597334677);
    }
    a = Math.imul(a ^ (a >>> 16), 2246822507) ^ Math.imul(b ^ (b >>> 13), 3266489909);
    b = Math.imul(b ^ (b >>> 16), 2246822507) ^ Math.imul(a ^ (a >>> 13), 3266489909);
    return (4294967296 * (2097151 & b) + (a >>> 0)).toString(36);
  };
  return `${h(1)}.${h(2)}`;
}

function memoryStorage(): TesseraStorage {
  const m = new Map<string, string>();
  return { get: (k) => m.get(k) ?? null, set: (k, v) => void m.set(k, v), remove: (k) => void m.delete(k) };
}

function browserStorage(): Storage | null {
  try {
    return g.window !== undefined && g.localStorage ? g.localStorage : null;
  } catch {
    return null;
  }
}

function parse(raw: string | null | undefined): Stored | null {
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as Stored;
    return s && s.v === 1 && typeof s.sessionId === 'string' && typeof s.at === 'number' ? s : null;
  } catch {
    return null;
  }
}

const same = (a: Stored | null, b: Stored | null) =>
  a === b || (a !== null && b !== null && a.sessionId === b.sessionId && a.accessToken === b.accessToken && a.xsrfToken === b.xsrfToken && a.at === b.at);

const view = (s: Stored | null): Session | null =>
  s && { sessionId: s.sessionId, customerId: s.customerId, tenantId: s.tenantId, mode: s.mode, scope: s.scope, expiresAt: s.expiresAt };

async function problemCode(res: Response): Promise<string> {
  try {
    const body = (await res.clone().json()) as { code?: unknown };
    return typeof body.code === 'string' ? body.code : '';
  } catch {
    return '';
  }
}

const UNSAFE = /^(POST|PUT|PATCH|DELETE)$/i;

export function createTesseraClient(opts: TesseraClientOptions): TesseraClient {
  const base = opts.baseUrl.replace(/\/+$/, '');
  const mode: Mode = opts.mode ?? 'token';
  const send = opts.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => globalThis.fetch(input, init));
  const local = browserStorage();
  const storage: TesseraStorage = opts.storage ?? (local ? { get: (k) => local.getItem(k), set: (k, v) => local.setItem(k, v), remove: (k) => local.removeItem(k) } : memoryStorage());
  const key = opts.storageKey ?? `tessera:${opts.tenantId}`;
  const locks = opts.locks === undefined ? (g.navigator?.locks ?? null) : opts.locks;
  const holdMs = opts.rotatedHoldMs ?? 30_000;
  const correlationId = uuid();
  const listeners = new Map<TesseraEvent, Set<(s: Session | null) => void>>();
  const activities: string[] = [];
  let state: Stored | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inflight: Promise<Stored | null> | null = null;
  let expiredFired = false;
  let closed = false;
  let chain: Promise<unknown> = Promise.resolve();

  const channel = typeof g.BroadcastChannel === 'function' ? new g.BroadcastChannel(key) : null;
  (channel as { unref?: () => void } | null)?.unref?.(); // Node: do not keep the process alive

  function emit(event: TesseraEvent, s: Session | null): void {
    for (const fn of [...(listeners.get(event) ?? [])]) {
      try {
        fn(s);
      } catch {
        // a listener's error is its own
      }
    }
  }

  const threshold = (s: Stored) => Math.min(opts.refreshThreshold ?? 300, s.lifetime / 2) * 1000;
  const due = (s: Stored) => s.mode === 'token' && Date.now() >= s.expiresAt - threshold(s);

  function schedule(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (closed || !state || state.mode !== 'token') return;
    const wait = Math.min(Math.max(0, state.expiresAt - threshold(state) - Date.now()), 2 ** 31 - 1);
    timer = setTimeout(() => void refreshWhen(due).catch(() => undefined), wait);
    (timer as { unref?: () => void }).unref?.();
  }

  /** Takes `next` as this tab's state and tells the listeners what changed. */
  function adopt(next: Stored | null, ending: Ending = 'loggedOut'): void {
    const prev = state;
    if (same(prev, next)) return;
    state = next;
    schedule();
    if (next === null) {
      if (ending === 'expired') {
        if (expiredFired) return emit('change', null);
        expiredFired = true;
      }
      emit(ending, null);
    } else if (prev === null || prev.sessionId !== next.sessionId) {
      expiredFired = false;
      emit('loggedIn', view(next));
    } else {
      emit('refreshed', view(next));
    }
    emit('change', view(next));
  }

  async function read(): Promise<Stored | null> {
    return parse(await storage.get(key));
  }

  async function persist(next: Stored | null, ended?: string, why: Ending = 'loggedOut'): Promise<void> {
    try {
      if (next) await storage.set(key, JSON.stringify(next));
      else await storage.remove(key);
    } finally {
      channel?.postMessage({ t: 'state', state: next, ...(ended ? { ended, why } : {}) } satisfies Message);
    }
  }

  /** A change from another tab (message, storage event, or a read after waking up). */
  function incoming(next: Stored | null, ended?: string, why: Ending = 'loggedOut'): void {
    if (next === null) {
      // Only an end of *our* session ends it here (a stale message about an old one does not).
      if (state && (ended === undefined || ended === state.sessionId)) adopt(null, why);
      return;
    }
    // Another session (a login elsewhere) replaces ours unless it is older; within one session
    // only a newer pair counts (messages and storage events may arrive late or twice).
    const newer = !state ? true : state.sessionId !== next.sessionId ? next.at >= state.at : next.at > state.at;
    if (newer) adopt(next);
  }

  async function resync(): Promise<void> {
    const stored = await read();
    if (stored === null) {
      if (state) adopt(null, 'loggedOut');
    } else incoming(stored);
  }

  // ---- cross-tab lock -------------------------------------------------------------------------

  async function withLock<T>(fn: () => Promise<T>): Promise<T> {
    if (locks) {
      let out!: T;
      await locks.request(`${key}:refresh`, {}, async () => {
        out = await fn();
      });
      return out;
    }
    // In-page serialisation, plus a localStorage lock between tabs when there is localStorage.
    const run = chain.then(async () => {
      const release = local ? await storageLock() : () => undefined;
      try {
        return await fn();
      } finally {
        release();
      }
    });
    chain = run.catch(() => undefined);
    return run;
  }

  async function storageLock(): Promise<() => void> {
    const name = `${key}:lock`;
    const me = uuid();
    for (;;) {
      const held = parse2(local!.getItem(name));
      if (!held || held.until < Date.now()) {
        local!.setItem(name, JSON.stringify({ owner: me, until: Date.now() + 10_000 }));
        await sleep(25);
        if (parse2(local!.getItem(name))?.owner === me) {
          return () => {
            if (parse2(local!.getItem(name))?.owner === me) local!.removeItem(name);
          };
        }
      }
      await sleep(20 + Math.floor(Math.random() * 40));
    }
  }

  function parse2(raw: string | null): { owner: string; until: number } | null {
    try {
      return raw ? (JSON.parse(raw) as { owner: string; until: number }) : null;
    } catch {
      return null;
    }
  }

  const rotatedName = (refreshToken: string) => `${key}:rotated:${tokenTag(refreshToken)}`;

  async function markRotated(refreshToken: string): Promise<void> {
    if (!locks) return;
    const name = rotatedName(refreshToken);
    await new Promise<void>((granted) => {
      void locks.request(name, { ifAvailable: true }, () => {
        granted();
        return sleep(holdMs, true);
      });
    });
  }

  async function wasRotated(refreshToken: string): Promise<boolean> {
    if (!locks) return false;
    const name = rotatedName(refreshToken);
    const snapshot = await locks.query();
    return (snapshot.held ?? []).some((l) => l.name === name);
  }

  /** Waits until a pair other than `old` is known (message, storage event or storage poll). */
  async function successorOf(old: Stored): Promise<Stored | null> {
    for (let waited = 0; waited < 10_000; waited += 20) {
      if (state !== old) return state;
      const stored = await read();
      if (!same(stored, old)) return stored;
      await sleep(20);
    }
    throw new TesseraError(0, 'refresh_pending', 'Another tab rotated the refresh token, but its successor did not arrive.');
  }

  // ---- refresh --------------------------------------------------------------------------------

  /**
   * Refreshes, under the cross-tab lock, if the newest known state still `needs` it. One call per
   * page at a time: a caller arriving while one runs joins it, and asks again if it still needs.
   */
  async function refreshWhen(needs: (s: Stored) => boolean): Promise<Stored | null> {
    await ready;
    while (inflight) {
      const s = await inflight.catch(() => state);
      if (!s || !needs(s)) return s;
    }
    inflight = withLock(async () => {
      for (;;) {
        let cur = await read();
        // Our own view may be newer than the storage (a message can overtake the storage write).
        if (cur && state && cur.sessionId === state.sessionId && state.at > cur.at) cur = state;
        if (cur === null) {
          if (state) adopt(null, 'loggedOut');
          return null;
        }
        adopt(cur);
        if (!needs(cur)) return cur;
        if (cur.mode === 'cookie') return cookieRefresh(cur);
        if (await wasRotated(cur.refreshToken!)) {
          const next = await successorOf(cur);
          adopt(next);
          if (!next || !needs(next)) return next;
          continue;
        }
        return tokenRefresh(cur);
      }
    }).finally(() => {
      inflight = null;
    });
    return inflight;
  }

  async function tokenRefresh(cur: Stored): Promise<Stored | null> {
    const res = await send(`${base}/api/v1/auth/token/refresh`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...ids(cur) },
      body: JSON.stringify({ refreshToken: cur.refreshToken }),
    });
    if (res.ok) {
      const next = fromPair((await res.json()) as PairAnswer);
      await markRotated(cur.refreshToken!);
      await persist(next);
      adopt(next);
      return next;
    }
    const code = await problemCode(res);
    if (res.status === 401 || res.status === 400) {
      // invalid_grant, refresh_token_reused, session_ended: nothing cures this. Never refresh
      // again with this token; drop the session everywhere and say so once.
      await persist(null, cur.sessionId, 'expired');
      adopt(null, 'expired');
      return null;
    }
    throw new TesseraError(res.status, code || 'refresh_failed', `Refresh failed with ${res.status}`);
  }

  async function cookieRefresh(cur: Stored): Promise<Stored | null> {
    const res = await send(`${base}/api/v1/session`, { method: 'GET', credentials: 'include', headers: ids(cur) });
    if (res.status === 401) {
      await persist(null, cur.sessionId, 'expired');
      adopt(null, 'expired');
      return null;
    }
    if (!res.ok) throw new TesseraError(res.status, await problemCode(res), `Session check failed with ${res.status}`);
    const b = (await res.json()) as { idleExpiresAt?: string | null; expiresAt?: string; xsrfToken?: string };
    const next: Stored = { ...cur, at: Date.now(), xsrfToken: b.xsrfToken ?? cur.xsrfToken, expiresAt: Date.parse(b.idleExpiresAt ?? b.expiresAt ?? '') || cur.expiresAt };
    await persist(next);
    adopt(next);
    return next;
  }

  interface PairAnswer {
    expires_in: number;
    scope?: string;
    customerId: string;
    tenantId: string;
    sessionId: string;
    userSessionToken?: string;
    refreshToken?: string;
    xsrfToken?: string;
  }

  function fromPair(p: PairAnswer): Stored {
    const at = Date.now();
    return {
      v: 1,
      mode,
      sessionId: p.sessionId,
      customerId: p.customerId,
      tenantId: p.tenantId,
      scope: p.scope ?? null,
      ...(p.userSessionToken ? { accessToken: p.userSessionToken, refreshToken: p.refreshToken } : { xsrfToken: p.xsrfToken }),
      at,
      lifetime: p.expires_in,
      expiresAt: at + p.expires_in * 1000,
    };
  }

  // ---- requests -------------------------------------------------------------------------------

  function ids(s: Stored | null): Record<string, string> {
    const h: Record<string, string> = { 'x-request-id': uuid(), 'x-correlation-id': correlationId, 'x-tenant-id': opts.tenantId };
    const act = activities[activities.length - 1];
    if (act) h['x-activity-id'] = act;
    if (s) h['x-session-id'] = s.sessionId;
    return h;
  }

  function prepare(input: RequestInfo | URL, init: RequestInit | undefined, s: Stored | null): [RequestInfo | URL, RequestInit] {
    const isRequest = typeof Request === 'function' && input instanceof Request;
    const headers = new Headers(init?.headers ?? (isRequest ? input.headers : undefined));
    for (const [k, v] of Object.entries(ids(s))) if (!headers.has(k)) headers.set(k, v);
    const method = init?.method ?? (isRequest ? input.method : 'GET');
    const out: RequestInit = { ...init, headers };
    if (s?.mode === 'token' && s.accessToken && !headers.has('authorization')) headers.set('authorization', `Bearer ${s.accessToken}`);
    if (mode === 'cookie') {
      out.credentials = 'include';
      if (UNSAFE.test(method) && s?.xsrfToken) headers.set('x-xsrf-token', s.xsrfToken);
    }
    return [isRequest ? input.clone() : input, out];
  }

  async function apiFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    await ready;
    if (state && due(state)) {
      // Proactive: a token at or past its threshold (e.g. a tab woken from sleep) is refreshed
      // first; if that cannot happen now, an unexpired token is still good to use.
      await refreshWhen(due).catch((err: unknown) => {
        if (!state || Date.now() >= state.expiresAt) throw err;
      });
    }
    const used = state;
    const res = await send(...prepare(input, init, used));
    if (res.status !== 401 || !used) return res;
    const code = await problemCode(res);
    if (code !== 'invalid_token' && code !== 'session_ended' && code !== 'unauthenticated') return res;
    // Maybe another tab has a newer pair, maybe a refresh cures it: through the same lock.
    const next =
      used.mode === 'token'
        ? await refreshWhen((s) => s.sessionId === used.sessionId && s.accessToken === used.accessToken)
        : await refreshWhen((s) => s.xsrfToken === used.xsrfToken && s.at === used.at);
    if (!next || same(next, used)) return res;
    return send(...prepare(input, init, next));
  }

  async function login(credentials: { email: string; password: string }): Promise<Session> {
    await ready;
    const headers: Record<string, string> = { 'content-type': 'application/json', ...ids(null) };
    if (mode === 'cookie') headers['x-auth-mode'] = 'cookie';
    const res = await send(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers,
      body: JSON.stringify(credentials),
      ...(mode === 'cookie' ? { credentials: 'include' as const } : {}),
    });
    if (!res.ok) throw new TesseraError(res.status, await problemCode(res), `Login failed with ${res.status}`);
    const next = fromPair((await res.json()) as PairAnswer);
    await persist(next);
    adopt(next);
    return view(next)!;
  }

  async function logout(): Promise<void> {
    await ready;
    const s = state;
    // Storage first: the session is gone here whatever the server answers (or if it is down).
    try {
      await persist(null, s?.sessionId);
    } finally {
      adopt(null, 'loggedOut');
    }
    if (!s) return;
    try {
      const [input, init] = prepare(`${base}/api/v1/auth/logout`, { method: 'POST' }, s);
      await send(input, init);
    } catch {
      // the server is unreachable; the local session is already gone
    }
  }

  // ---- wiring ---------------------------------------------------------------------------------

  const onMessage = (e: MessageEvent<Message>) => {
    if (e.data?.t === 'state') incoming(e.data.state, e.data.ended, e.data.why);
  };
  const onStorage = (e: Event) => {
    const se = e as StorageEvent;
    if (se.key === key || se.key === null) void resync();
  };
  const onWake = () => {
    if (g.document?.visibilityState === 'hidden') return;
    void resync().then(() => (state && due(state) ? refreshWhen(due) : null)).catch(() => undefined);
  };
  channel?.addEventListener('message', onMessage as EventListener);
  g.addEventListener?.('storage', onStorage);
  g.addEventListener?.('pageshow', onWake);
  g.document?.addEventListener('visibilitychange', onWake);
  g.document?.addEventListener('resume', onWake);

  const ready: Promise<void> = Promise.resolve()
    .then(read)
    .then((s) => {
      if (s && s.mode === mode && !state) adopt(s);
    })
    .catch(() => undefined);

  return {
    ready,
    login,
    fetch: apiFetch,
    refresh: async () => {
      await ready;
      // "Refresh now": satisfied as soon as the pair this tab held when it asked has been
      // replaced — by this call, by a refresh already in flight, or by another tab's.
      const asked = state;
      return refreshWhen((s) => asked !== null && s.sessionId === asked.sessionId && s.accessToken === asked.accessToken && s.at === asked.at).then(view);
    },
    logout,
    getSession: () => view(state),
    getAccessToken: () => state?.accessToken ?? null,
    on(event, listener) {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(listener);
      return () => void set.delete(listener);
    },
    startActivity() {
      const id = uuid();
      activities.push(id);
      return {
        id,
        end: () => {
          const i = activities.indexOf(id);
          if (i >= 0) activities.splice(i, 1);
        },
      };
    },
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      channel?.removeEventListener('message', onMessage as EventListener);
      channel?.close();
      g.removeEventListener?.('storage', onStorage);
      g.removeEventListener?.('pageshow', onWake);
      g.document?.removeEventListener('visibilitychange', onWake);
      g.document?.removeEventListener('resume', onWake);
    },
  };
}
