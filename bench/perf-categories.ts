// node bench/perf-categories.ts <perf.data> <µs per request> — a server's perf samples
// (bench/perf-where.ts's recording, after `perf inject --jit` when the server ran with
// `--perf-prof`) split by where the CPU went, as µs per request: the kernel by system call (the
// loopback TCP stack inside write/writev counted there), V8's GC and compiler (main thread and
// helper threads apart), libsodium, libc's allocator, Node's HTTP parser, and the rest by the
// nearest JavaScript frame's file — Node's own modules, Fastify and its dependencies, node-redis,
// pino, Tessera's src/ by folder. Each sample is counted once (self time: native code without a
// JavaScript frame of its own — a builtin, Node's C++ — goes to the JavaScript that called it).
// docs/performance.md, "Where the rotation server's CPU goes". PC_DETAIL=1 also prints each
// category's parts; PC_TOP=<n> the n JavaScript functions with the most self time.

import { spawnSync } from 'node:child_process';

const [data, perRequest] = [process.argv[2], Number(process.argv[3])];
if (!data || !(perRequest > 0)) throw new Error('usage: node bench/perf-categories.ts <perf.data> <µs per request>');

interface Sample { pid: number; tid: number; comm: string; frames: string[] }

const text = spawnSync('perf', ['script', '-i', data, '-F', 'comm,pid,tid,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 1 << 30 }).stdout;
const samples: Sample[] = [];
let cur: Sample | null = null;
for (const line of text.split('\n')) {
  if (line.trim() === '') {
    if (cur) samples.push(cur);
    cur = null;
    continue;
  }
  if (!/^\s/.test(line)) {
    const m = /^(.*?)\s+(\d+)\/(\d+)/.exec(line);
    if (m) cur = { comm: (m[1] as string).trim(), pid: Number(m[2]), tid: Number(m[3]), frames: [] };
    continue;
  }
  const m = /^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)$/.exec(line);
  // The frame's symbol, and its object file after a tab (libsodium's symbols are named by it).
  if (m && cur) cur.frames.push(`${m[1]}\t${m[2]}`);
}
if (cur) samples.push(cur);

const FASTIFY = /^(fastify|find-my-way|fast-json-stringify|avvio|light-my-request|fast-querystring|fast-decode-uri-component|abstract-logging|toad-cache|process-warning|rfdc|fast-uri|secure-json-parse|ajv|@fastify\/.*)$/;
const PINO = /^(pino|sonic-boom|thread-stream|pino-std-serializers|quick-format-unescaped|fast-redact|on-exit-leak-free|atomic-sleep|safe-stable-stringify)$/;

/** The category of JavaScript code at `path` (a file URL, an absolute path or node:…). */
function ofScript(path: string): string {
  const p = path.replace(/^file:\/\//, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p)?.[1];
  if (pkg !== undefined) {
    if (FASTIFY.test(pkg)) return 'Fastify (+ its dependencies)';
    if (pkg.startsWith('@redis/') || pkg === 'redis') return 'node-redis';
    if (PINO.test(pkg)) return 'pino / sonic-boom (request log)';
    return `other package: ${pkg}`;
  }
  const src = /\/src\/(.*)\.ts$/.exec(p)?.[1];
  if (src !== undefined) {
    if (/^(audit\/|domain\/audit|events\/)/.test(src)) return 'Tessera: audit (src/audit, domain/audit-chain, events)';
    const dir = src.split('/');
    return `Tessera: src/${dir.length > 2 ? dir.slice(0, 2).join('/') : dir.length === 2 ? dir[0] : src}`;
  }
  if (p.startsWith('node:')) {
    const n = p.slice(5);
    if (n.startsWith('_http')) return 'Node http JS (_http_server, _http_outgoing, …)';
    if (n.startsWith('internal/crypto')) return 'Node crypto (SHA-256, HMAC)';
    return 'Node streams, net, timers, promise ticks, events, buffer';
  }
  return 'other JavaScript';
}

const GC = /v8::internal::(Heap|Scavenger|ScavengerCollector|MarkCompact|MinorMark|ConcurrentMarking|Sweeper|MarkingVisitor|MainMarkingVisitor|IncrementalMarking|GCTracer|MemoryAllocator|ArrayBufferSweeper|MarkingBarrier|ScavengeJob|PagedSpace|SemiSpace|LocalHeap)|Evacuat|Scavenge|MarkCompact|Sweeper|ConcurrentMark/;
const COMPILER = /v8::internal::(compiler::|maglev::|Compiler::|OptimizingCompile|Parser|PreParser|interpreter::BytecodeGenerator|baseline::)|Turbofan|Maglev|CompileLazy|Runtime_CompileOptimized/;
const SYSCALLS: [RegExp, string][] = [
  [/ksys_write|vfs_write\b/, 'write'],
  [/do_writev|vfs_writev/, 'write'],
  [/ksys_read|vfs_read/, 'read'],
  [/do_epoll_wait|do_epoll_pwait/, 'epoll_pwait'],
  [/do_futex|futex_/, 'futex (thread wake-ups)'],
];

function categoryOf(s: Sample): string {
  const syms = s.frames.map((f) => f.slice(0, f.indexOf('\t')));
  const all = syms.join('\n');
  const main = s.tid === s.pid;
  if (s.frames[0]?.endsWith('\t[kernel.kallsyms]')) {
    for (const [re, name] of SYSCALLS) if (re.test(all)) return name === 'write' ? 'kernel: write/writev (the loopback TCP stack, the peer\'s receive included)' : `kernel: ${name}`;
    return 'kernel: other (scheduling, interrupts, page faults, accept/close)';
  }
  if (GC.test(all)) return main ? 'V8 GC, main thread' : 'V8 GC, helper threads';
  if (COMPILER.test(all)) return 'V8 compiler (main and helper threads)';
  if (!main) return 'other threads';
  for (const f of s.frames) {
    const [sym, dso] = f.split('\t') as [string, string];
    if (/^(malloc|_int_malloc|_int_free|cfree|unlink_chunk|malloc_consolidate|free)\b/.test(sym)) return 'libc malloc/free';
    if (dso.includes('sodium') || /^(fe25519|ge25519|sc25519|SHA512|crypto_sign)/.test(sym)) return 'libsodium (Ed25519 signing)';
    if (sym.startsWith('llhttp') || sym.startsWith('node::http_parser')) return 'Node HTTP parser (llhttp and its binding)';
    if (sym.startsWith('JS:')) {
      const path = /((?:file:\/\/)?\/\S+?|node:\S+?):\d+:\d+/.exec(sym)?.[1];
      return path === undefined ? 'other JavaScript' : ofScript(path);
    }
  }
  return 'libuv, libc system call wrappers, Node C++ without JavaScript';
}

const counts = new Map<string, number>();
const top = new Map<string, number>();
for (const s of samples) {
  const c = categoryOf(s);
  counts.set(c, (counts.get(c) ?? 0) + 1);
  if (s.tid === s.pid) {
    const js = s.frames.find((f) => f.startsWith('JS:'));
    if (js !== undefined) {
      const name = js.slice(0, js.indexOf('\t')).replace(/\+0x[0-9a-f]+$/, '').replace(/file:\/\/\S*?\/src\//, 'src/');
      top.set(name, (top.get(name) ?? 0) + 1);
    }
  }
}
const n = samples.length;
console.log(`${data}: ${n} samples, ${perRequest} µs per request spread over them`);
console.log('| where | share | µs per request |\n|---|---:|---:|');
for (const [c, k] of [...counts].sort((a, b) => b[1] - a[1])) console.log(`| ${c} | ${((k / n) * 100).toFixed(1)} % | ${((k / n) * perRequest).toFixed(2)} |`);
const topN = Number(process.env.PC_TOP ?? 0);
if (topN > 0) {
  console.log(`\nJavaScript functions with the most self time (main thread; µs per request):`);
  for (const [f, k] of [...top].sort((a, b) => b[1] - a[1]).slice(0, topN)) console.log(`  ${((k / n) * perRequest).toFixed(2)}  ${f}`);
}
