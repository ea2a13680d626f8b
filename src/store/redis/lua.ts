// The one way a Lua script reaches Redis. Every script takes its routing key as KEYS[1], which
// sends the call to that key's hash slot in a Cluster.
//
// A plain script (luaScript) goes as EVALSHA, and as EVAL when the server does not know it yet
// (its script cache is empty after a restart or a failover).
//
// A script with a set-up of its own (luaFunctionScript: the slot scripts, whose prelude defines
// ~60 helpers and tables) is a Redis Function (Redis ≥ 7.0): a library of one function whose top
// level — the set-up — runs once, when the library is loaded, instead of on every call; each call
// is an FCALL. Its library and function are named `tessera_<script>_<hash of the library text>`, so two
// versions of Tessera on one Redis (a rolling upgrade) each call their own and never replace the
// other's. The library is loaded on demand, by the caller that gets "Function not found" (a server
// that never had it, restarted without persistence, a new Cluster master or a failover to a
// replica that missed it), on the node the call was routed to, and the call is made again. Loads
// of one library on one node (a Cluster master) are shared by the calls waiting for them there. Functions are
// kept in RDB and AOF like data, so libraries of older versions stay — across restarts too, with
// persistence — until they are deleted: `tessera redis-functions prune` (functions-prune.ts)
// deletes the `tessera_*` libraries not of this release; a version whose library was deleted
// loads it again.
//
// Fallbacks to EVALSHA/EVAL (the same script text, with its set-up on every call):
// - an ACL user that may not run FCALL or FUNCTION LOAD (or a server without them): from then on
//   for the whole connection — the scripts work as they did before Functions, only slower;
// - an answer that the server refuses writes — OOM (maxmemory reached), MISCONF (the last RDB
//   save failed, with stop-writes-on-bgsave-error), NOREPLICAS (fewer replicas than
//   min-replicas-to-write): for that call — an unflagged Function is refused outright then, where
//   a script is refused only at its first write, so reads keep working as they did (a write is
//   refused by its script: MISCONF and NOREPLICAS are 503s, connection.ts);
// - the function still missing right after its load (a Cluster slot moving under the call): for
//   that call;
// - a library of the function's name holding other code than this release's (a Function is
//   found by name: a Redis user allowed FUNCTION LOAD could have put it there; checkLibrary,
//   once per node and library — through Sentinel, again on the master a failover promotes): for
//   that script's calls to that node.

import { createHash } from 'node:crypto';
import { ErrorReply } from 'redis';
import type { CommandArgs, RedisConnection } from './connection.ts';

export interface LuaScript {
  /** From the source's first line `-- tessera:<name>`, for logs; `script` otherwise. */
  readonly name: string;
  /** The script as EVAL runs it. */
  readonly source: string;
  readonly sha1: string;
  /** The same script as a Redis Function (luaFunctionScript): its name and its library's code. */
  readonly fn?: { readonly name: string; readonly library: string };
  /** Its reply's bulk strings come as Buffers (a packed record: slot-lua.ts packedOf). */
  readonly binary?: boolean;
  /**
   * A hot call (the rotation, the SSO exchange's look-up-and-redeem): its usual FCALL goes through
   * the connection's sendHot when it has one (hot-connection.ts). Only for scripts whose callers
   * do not depend on a command sent just before on the other connection without awaiting it.
   */
  readonly hot?: boolean;
}

/** `script`, its usual call through the connection's lean connection for hot calls (LuaScript.hot). */
export function hotScript(script: LuaScript): LuaScript {
  return { ...script, hot: true };
}

export function luaScript(source: string): LuaScript {
  const name = /^-- tessera:(\S+)/.exec(source.trimStart())?.[1] ?? 'script';
  return { name, source, sha1: createHash('sha1').update(source, 'utf8').digest('hex') };
}

/** The names of the libraries made by luaFunctionScript in this process (this release's). */
const libraries = new Set<string>();

/** Library names of Tessera's form (`tessera_<script>_<20 hex>`), of any release. */
export const TESSERA_LIBRARY = /^tessera_[A-Za-z0-9_]+_[0-9a-f]{20}$/;

/** This release's library names — of the scripts defined so far (import their modules first). */
export function functionLibraries(): ReadonlySet<string> {
  return libraries;
}

/**
 * A script in two parts: `top`, definitions only (locals, functions, table constructors; it may
 * not call a Lua library function nor read KEYS or ARGV: a library's top level runs where only
 * `redis` is defined), and `call`, run on every call with KEYS and ARGV. As EVAL: `top` then
 * `call` in one chunk. As a Function: `top` is the library's top level, `call` the function body.
 */
export function luaFunctionScript(name: string, top: string, call: string): LuaScript {
  const source = `-- tessera:${name}\n${top}\n${call}`;
  const sha1 = createHash('sha1').update(source, 'utf8').digest('hex');
  // The name carries a hash of the whole library text (with a stand-in for the name itself), so a
  // release that changes only the wrapper still gets names of its own.
  const libraryOf = (n: string) => `#!lua name=${n}\n${top}\nredis.register_function('${n}', function(KEYS, ARGV)\n${call}\nend)\n`;
  const hash = createHash('sha1').update(libraryOf('\0'), 'utf8').digest('hex');
  const fnName = `tessera_${name.replace(/[^A-Za-z0-9]/g, '_')}_${hash.slice(0, 20)}`;
  libraries.add(fnName);
  const library = libraryOf(fnName);
  return { name, source, sha1, fn: { name: fnName, library } };
}

type Conn = Pick<RedisConnection, 'send' | 'sendHot' | 'nodeOf' | 'currentNode'>;

/** Connections whose user may not use Functions (or whose server has none): EVALSHA only. */
const evalOnly = new WeakSet<Conn>();
/**
 * Library loads under way, per node and library name: a standalone connection stands for its one
 * node, a Sentinel connection's master for the time being for itself (conn.currentNode: a new one
 * after a failover), a Cluster's master for itself (conn.nodeOf) — a load shared across masters
 * would reach only one of them.
 */
const loads = new WeakMap<object, Map<string, Promise<boolean>>>();

/**
 * Answers with which Redis refuses a command that may write before running it, where a script is
 * refused only at its first write: over maxmemory (OOM), after a failed RDB save with
 * stop-writes-on-bgsave-error (MISCONF), fewer replicas than min-replicas-to-write (NOREPLICAS).
 */
const WRITES_REFUSED = /^(OOM|MISCONF|NOREPLICAS)\b/;

/** Why an error sends a Function call to EVALSHA instead, or null when it does not. */
function fallbackOf(err: unknown): 'missing' | 'no-functions' | 'refused' | null {
  if (!(err instanceof ErrorReply)) return null;
  const m = err.message;
  if (m.startsWith('ERR Function not found')) return 'missing';
  if (WRITES_REFUSED.test(m)) return 'refused';
  if (/^NOPERM\b.*'(fcall|function\|load)'/i.test(m) || /^ERR unknown (sub)?command ['`](fcall|function|load)['`]/i.test(m)) return 'no-functions';
  return null;
}

/** Loads `fn`'s library through `conn` (on `key`'s node); false when Functions are not for this connection. */
async function load(conn: Conn, fn: NonNullable<LuaScript['fn']>, key: string): Promise<boolean> {
  const node = conn.nodeOf === undefined ? oneNode(conn) : await conn.nodeOf(key);
  let mine = loads.get(node);
  if (mine === undefined) {
    mine = new Map();
    loads.set(node, mine);
  }
  const pending = mine.get(fn.name);
  if (pending !== undefined) return pending;
  const started = conn
    .send(key, ['FUNCTION', 'LOAD', fn.library])
    .then(
      () => true,
      (err: unknown) => {
        // Loaded meanwhile by another caller or process: the same code (the name is its hash).
        if (err instanceof ErrorReply && /^ERR Library '.*' already exists/.test(err.message)) return true;
        const why = fallbackOf(err);
        if (why === 'no-functions') evalOnly.add(conn);
        if (why !== null) return false;
        throw err;
      },
    )
    .finally(() => mine.delete(fn.name));
  mine.set(fn.name, started);
  return started;
}

const USE_EVAL = Symbol('eval');

/** What stands for the one node a connection without nodeOf sends to now (see `loads`). */
function oneNode(conn: Conn): object {
  return conn.currentNode === undefined ? conn : conn.currentNode();
}

/**
 * Whether the library a call would reach is Tessera's own code, per node and library: a Function is
 * found by name, and a Redis user allowed FUNCTION LOAD could have put other code under that name
 * (security.md). Checked once per node, before the first call of the library that goes there:
 * FUNCTION LIST LIBRARYNAME <name> WITHCODE, sent with the call's key, so to the node the call goes
 * to (as for loads: a standalone connection stands for its one node, a Sentinel connection's
 * current master for itself — the master a failover promotes is checked at its first call, not
 * taken for the one checked before — and a Cluster's master for itself — a master added later is
 * checked at its first call). A library with other code sends that node's
 * calls of the script to EVALSHA (content-addressed) from then on; a library not there yet is fine
 * (the call loads its own). A user that may not list functions is not checked (nothing to compare
 * with). A node that does not answer the check fails only the calls that go to it, as the call
 * itself would, and is checked again by its next call. This does not see a REPLACE after the
 * check: only the ACL stops that.
 */
const checks = new WeakMap<object, Map<string, boolean | Promise<boolean>>>();

/** Library names and code in a FUNCTION LIST … WITHCODE reply (RESP2: flat field/value arrays). */
function codeOf(reply: unknown, name: string): string[] {
  if (!Array.isArray(reply)) return [];
  const out: string[] = [];
  for (const lib of reply) {
    if (!Array.isArray(lib) || lib[lib.indexOf('library_name') + 1] !== name) continue;
    out.push(String(lib[lib.indexOf('library_code') + 1]));
  }
  return out;
}

function checkLibrary(conn: Conn, fn: NonNullable<LuaScript['fn']>, key: string): boolean | Promise<boolean> {
  if (conn.nodeOf === undefined) return checkOn(conn, oneNode(conn), fn, key);
  return conn.nodeOf(key).then((node) => checkOn(conn, node, fn, key));
}

function checkOn(conn: Conn, node: object, fn: NonNullable<LuaScript['fn']>, key: string): boolean | Promise<boolean> {
  let mine = checks.get(node);
  if (mine === undefined) {
    mine = new Map();
    checks.set(node, mine);
  }
  const known = mine.get(fn.name);
  if (known !== undefined) return known;
  const started = conn.send(key, ['FUNCTION', 'LIST', 'LIBRARYNAME', fn.name, 'WITHCODE']).then(
    (replies) => {
      const ours = !codeOf(replies, fn.name).some((code) => code !== fn.library);
      mine.set(fn.name, ours);
      return ours;
    },
    (err: unknown) => {
      if (err instanceof ErrorReply && /^(NOPERM\b|ERR unknown (sub)?command)/i.test(err.message)) {
        // May not list functions (or no Functions at all): nothing to compare with.
        mine.set(fn.name, true);
        return true;
      }
      mine.delete(fn.name); // a store error: checked again by the next call
      throw err;
    },
  );
  mine.set(fn.name, started);
  return started;
}

async function callFunction(conn: Conn, fn: NonNullable<LuaScript['fn']>, key: string, tail: CommandArgs, binary: boolean): Promise<unknown> {
  try {
    return await conn.send(key, ['FCALL', fn.name, ...tail], false, binary);
  } catch (err) {
    return retryFunction(conn, fn, key, tail, binary, err);
  }
}

/** After a failed FCALL: the load and the call again, or USE_EVAL (see the top), or the error. */
async function retryFunction(conn: Conn, fn: NonNullable<LuaScript['fn']>, key: string, tail: CommandArgs, binary: boolean, err: unknown): Promise<unknown> {
  const why = fallbackOf(err);
  if (why === null) throw err;
  if (why === 'no-functions') evalOnly.add(conn);
  if (why !== 'missing') return USE_EVAL;
  if (!(await load(conn, fn, key))) return USE_EVAL;
  try {
    return await conn.send(key, ['FCALL', fn.name, ...tail], false, binary);
  } catch (err) {
    if (fallbackOf(err) === null) throw err;
    return USE_EVAL;
  }
}

/**
 * Runs `script` with KEYS[1] = `key` and ARGV = `head` then `args` (a Buffer goes as its bytes;
 * `head`, when given, spares a caller that puts its own arguments first a copy of `args`).
 *
 * The usual call — a Function whose library this node was checked for — is one FCALL and its
 * promise (with a handler for the failures that send it on to the load or to EVALSHA, as
 * callFunction's first try): no async frame and no copy of the arguments but the command's own,
 * made at its length, on every slot script of every request. Anything else goes through evalSlowly.
 *
 * `read`, when given, reads the reply in the same reaction as that handler (one promise and one
 * turn fewer than a `.then` of the caller's on the returned promise): the rotation's reply.
 */
export function evalScript(conn: Conn, script: LuaScript, key: string, args: ReadonlyArray<string | Buffer>, head?: ReadonlyArray<string | Buffer>): Promise<unknown>;
export function evalScript<T>(
  conn: Conn,
  script: LuaScript,
  key: string,
  args: ReadonlyArray<string | Buffer>,
  head: ReadonlyArray<string | Buffer> | undefined,
  read: (reply: unknown) => T | PromiseLike<T>,
): Promise<T>;
export function evalScript<T>(
  conn: Conn,
  script: LuaScript,
  key: string,
  args: ReadonlyArray<string | Buffer>,
  head?: ReadonlyArray<string | Buffer>,
  read?: (reply: unknown) => T | PromiseLike<T>,
): Promise<unknown> {
  const fn = script.fn;
  // (One node, standalone or Sentinel's master now: its check is at hand. A Cluster's goes through nodeOf.)
  if (fn !== undefined && conn.nodeOf === undefined && !evalOnly.has(conn) && checkOn(conn, oneNode(conn), fn, key) === true) {
    const binary = script.binary === true;
    const h = head === undefined ? 0 : head.length;
    const command: CommandArgs = new Array<string | Buffer>(4 + h + args.length);
    command[0] = 'FCALL';
    command[1] = fn.name;
    command[2] = '1';
    command[3] = key;
    for (let i = 0; i < h; i++) command[4 + i] = (head as ReadonlyArray<string | Buffer>)[i] as string | Buffer;
    for (let i = 0; i < args.length; i++) command[4 + h + i] = args[i] as string | Buffer;
    const failed = (err: unknown) => afterFailedCall(conn, script, fn, key, head === undefined ? args : [...head, ...args], binary, err);
    const sent = script.hot === true && conn.sendHot !== undefined ? conn.sendHot(key, command, binary) : conn.send(key, command, false, binary);
    return sent.then(read, read === undefined ? failed : (err: unknown) => failed(err).then(read));
  }
  const reply = evalSlowly(conn, script, key, head === undefined ? args : [...head, ...args]);
  return read === undefined ? reply : reply.then(read);
}

/** The rest of callFunction after its first FCALL failed with `err`, then EVALSHA as evalSlowly. */
async function afterFailedCall(
  conn: Conn,
  script: LuaScript,
  fn: NonNullable<LuaScript['fn']>,
  key: string,
  args: ReadonlyArray<string | Buffer>,
  binary: boolean,
  err: unknown,
): Promise<unknown> {
  const tail: CommandArgs = ['1', key, ...args];
  const reply = await retryFunction(conn, fn, key, tail, binary, err);
  if (reply !== USE_EVAL) return reply;
  return evalScriptOnly(conn, script, tail, key, binary);
}

async function evalSlowly(conn: Conn, script: LuaScript, key: string, args: ReadonlyArray<string | Buffer>): Promise<unknown> {
  const tail: CommandArgs = ['1', key, ...args];
  const binary = script.binary === true;
  if (script.fn !== undefined && !evalOnly.has(conn)) {
    let ours = checkLibrary(conn, script.fn, key);
    if (typeof ours !== 'boolean') ours = await ours;
    if (ours) {
      const reply = await callFunction(conn, script.fn, key, tail, binary);
      if (reply !== USE_EVAL) return reply;
    }
  }
  return evalScriptOnly(conn, script, tail, key, binary);
}

/** EVALSHA, and EVAL when the server does not know the script. */
async function evalScriptOnly(conn: Conn, script: LuaScript, tail: CommandArgs, key: string, binary: boolean): Promise<unknown> {
  try {
    return await conn.send(key, ['EVALSHA', script.sha1, ...tail], false, binary);
  } catch (err) {
    if (!(err instanceof ErrorReply) || !err.message.startsWith('NOSCRIPT')) throw err;
    return conn.send(key, ['EVAL', script.source, ...tail], false, binary);
  }
}
