// Lua helpers of the slot scripts' compact record form (slot-lua.ts puts them into its prelude):
// exact printing of numbers, base64url hashes and handle parts as bytes, IPv4 addresses as bytes.
// Every helper maps a value it cannot compact to a form that can never be mistaken for a
// compacted one, so any text survives the round trip.
//
// The prelude is the top level of a Redis Function library (lua.ts): it runs once per load, when
// the Lua globals (string, math, table, cmsgpack) are NOT reachable — only `redis` is. So the
// library functions used per call are taken into locals by LUA_CODEC_INIT, which the per-call
// set-up (slot-lua.ts reset) runs when they are still nil: once per load of the library, and on
// every call when the script is sent as EVAL. The base64url tables are literal table
// constructors (no library call), built once per load too.

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

const ZERO = Buffer.from([0]);

/** Character code (< 128) → its base64url value, -1 for any other character. */
const B64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < B64.length; i++) B64_VALUE[B64.charCodeAt(i)] = i;

/**
 * The 32 bytes of `text` when it is the canonical base64url text of 32 bytes — 43 characters of
 * the alphabet, the last one's two low bits (past the 256th) zero — else null. (Node's decoder is
 * lenient: other characters, padding. This one tells and decodes in one pass, without a regular
 * expression and a call into Node's decoder.)
 */
function canonical32(text: string): Buffer | null {
  if (text.length !== 43) return null;
  const out = Buffer.allocUnsafe(32);
  let o = 0;
  for (let i = 0; i < 40; i += 4) {
    const a = text.charCodeAt(i);
    const b = text.charCodeAt(i + 1);
    const c = text.charCodeAt(i + 2);
    const d = text.charCodeAt(i + 3);
    if ((a | b | c | d) > 127) return null;
    const va = B64_VALUE[a] as number;
    const vb = B64_VALUE[b] as number;
    const vc = B64_VALUE[c] as number;
    const vd = B64_VALUE[d] as number;
    if ((va | vb | vc | vd) < 0) return null;
    const n = (va << 18) | (vb << 12) | (vc << 6) | vd;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 255;
    out[o++] = n & 255;
  }
  const a = text.charCodeAt(40);
  const b = text.charCodeAt(41);
  const c = text.charCodeAt(42);
  if ((a | b | c) > 127) return null;
  const va = B64_VALUE[a] as number;
  const vb = B64_VALUE[b] as number;
  const vc = B64_VALUE[c] as number;
  if ((va | vb | vc) < 0 || (vc & 3) !== 0) return null;
  const n = (va << 18) | (vb << 12) | (vc << 6);
  out[o++] = n >> 16;
  out[o] = (n >> 8) & 255;
  return out;
}

/**
 * The packed form h2b gives a secret or token hash (packText(s, 32) below), made here: the 32
 * bytes of a canonical base64url text of 32 bytes (what hashSecret makes), any other text behind
 * a 0 byte (one more 0 byte when that would be 32 bytes long). A script that takes a hash in this
 * form as an argument (sent as bytes) spares Redis the decode.
 */
export function packedHash(text: string): Buffer {
  const bytes = canonical32(text);
  if (bytes !== null) return bytes;
  const t = Buffer.concat([ZERO, Buffer.from(text, 'utf8')]);
  return t.length === 32 ? Buffer.concat([t, ZERO]) : t;
}
/** byte code → its 6-bit value, for the 64 base64url characters. */
const DECODE_TABLE = `{ ${[...B64].map((ch, i) => `[${ch.charCodeAt(0)}] = ${i}`).join(', ')} }`;
/** `n` zeros, for a table constructor of that size. */
const zeros = (n: number) => Array.from({ length: n }, () => '0').join(', ');
/** 6-bit value → the byte code of its character. */
const ENCODE_TABLE = `{ [0] = ${[...B64].map((ch) => ch.charCodeAt(0)).join(', ')} }`;

/**
 * dec22 and enc16: b64dec and b64enc of exactly 22 characters / 16 bytes (a handle's random part,
 * the codec's most frequent conversion), unrolled — one string.byte of all the characters, the
 * arithmetic in locals and one string.char of all the results, no loop, no scratch table and no
 * unpack: about half of the generic loop's instructions (Redis under callgrind, 5,000 of each in
 * one script: 11.6 k against 20.7 k per decode, 10.6 k against 21.5 k per encode). The same results
 * as b64dec/b64enc, nil for a text that is not the canonical encoding of 16 bytes included
 * (test/store/redis-functions.test.ts). Generated here, as the tables are.
 */
function unrolled16(): string {
  const list = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i + 1)).join(', ');
  const bytes: string[] = [];
  const dec = [
    'local function dec22(s)',
    `  local ${list(22, (i) => `c${i}`)} = sbyte(s, 1, 22)`,
    `  local ${list(22, (i) => `v${i}`)} = ${list(22, (i) => `B64D[c${i}]`)}`,
    `  if not (${Array.from({ length: 22 }, (_, i) => `v${i + 1}`).join(' and ')}) or v22 % 16 ~= 0 then return nil end`,
  ];
  // Four characters (a, b, d, e) make three bytes, as in b64dec; the last two make the 16th.
  for (let q = 0; q < 5; q++) {
    const [a, b, d, e] = [1, 2, 3, 4].map((k) => `v${4 * q + k}`);
    dec.push(`  local p${q}, s${q} = ${b} % 16, ${d} % 4`);
    bytes.push(`${a} * 4 + (${b} - p${q}) / 16`, `p${q} * 16 + (${d} - s${q}) / 4`, `s${q} * 64 + ${e}`);
  }
  bytes.push('v21 * 4 + v22 / 16');
  dec.push(`  return schar(${bytes.join(', ')})`, 'end');
  const chars: string[] = [];
  const enc = ['local function enc16(s)', `  local ${list(16, (i) => `x${i}`)} = sbyte(s, 1, 16)`];
  // Three bytes (x, y, z) make four characters, as in b64enc; the 16th byte makes the last two.
  for (let t = 0; t < 5; t++) {
    const [x, y, z] = [1, 2, 3].map((k) => `x${3 * t + k}`);
    enc.push(`  local a${t}, b${t}, c${t} = ${x} % 4, ${y} % 16, ${z} % 64`);
    chars.push(`B64E[(${x} - a${t}) / 4]`, `B64E[a${t} * 16 + (${y} - b${t}) / 16]`, `B64E[b${t} * 4 + (${z} - c${t}) / 64]`, `B64E[c${t}]`);
  }
  enc.push('  local a5 = x16 % 4');
  chars.push('B64E[(x16 - a5) / 4]', 'B64E[a5 * 16]');
  enc.push(`  return schar(${chars.join(', ')})`, 'end');
  return `${dec.join('\n')}\n${enc.join('\n')}`;
}

/** The library functions the codec and the prelude use, as locals (see the top). */
export const LUA_CODEC_INIT = `
  sbyte, schar, ssub, sformat, smatch, floor, concat, unpack_, mpack, munpack, tonum, tostr =
    string.byte, string.char, string.sub, string.format, string.match, math.floor, table.concat, unpack,
    cmsgpack.pack, cmsgpack.unpack, tonumber, tostring
`;


export const LUA_CODEC = `
local sbyte, schar, ssub, sformat, smatch, floor, concat, unpack_, mpack, munpack, tonum, tostr
local function fmt(n)
  if n == floor(n) and n > -1e15 and n < 1e15 then return sformat('%d', n) end
  return sformat('%.17g', n)
end

-- base64url text <-> bytes by table (B64D: byte code -> 6-bit value, B64E: value -> byte code),
-- four characters (three bytes) at a time; b64dec answers nil unless s is the canonical encoding
-- of its bytes. Only ever called on 16 or 32 bytes (22 or 43 characters); nil beyond 33 bytes.
local B64D = ${DECODE_TABLE}
local B64E = ${ENCODE_TABLE}
-- Shifts are exact arithmetic on Lua's doubles ((v - v % 16) / 16 is v >> 4): VM operations only.
-- The byte codes go into one scratch table made at its full size once (per load of a library):
-- a table grown one element at a time is rehashed at every power of two, and a new one per call
-- is garbage the collector pays for, both costing more than the conversion itself.
local buf = { ${zeros(44)} }
local function b64dec(s)
  local n = #s
  local rest = n % 4
  if rest == 1 or n > 44 then return nil end
  local k = 0
  for i = 1, n - rest, 4 do
    local p, q, r, t = sbyte(s, i, i + 3)
    local a, b, d, e = B64D[p], B64D[q], B64D[r], B64D[t]
    if not (a and b and d and e) then return nil end
    local b4, d2 = b % 16, d % 4
    buf[k + 1], buf[k + 2], buf[k + 3] = a * 4 + (b - b4) / 16, b4 * 16 + (d - d2) / 4, d2 * 64 + e
    k = k + 3
  end
  if rest == 3 then
    local p, q, r = sbyte(s, n - 2, n)
    local a, b, d = B64D[p], B64D[q], B64D[r]
    if not (a and b and d) or d % 4 ~= 0 then return nil end
    local b4 = b % 16
    buf[k + 1], buf[k + 2] = a * 4 + (b - b4) / 16, b4 * 16 + d / 4
    k = k + 2
  elseif rest == 2 then
    local p, q = sbyte(s, n - 1, n)
    local a, b = B64D[p], B64D[q]
    if not (a and b) or b % 16 ~= 0 then return nil end
    buf[k + 1] = a * 4 + b / 16
    k = k + 1
  end
  return schar(unpack_(buf, 1, k))
end
local function b64enc(s)
  local n = #s
  if n > 33 then return nil end
  local k = 0
  local full = n - n % 3
  for i = 1, full, 3 do
    local x, y, z = sbyte(s, i, i + 2)
    local x2, y4, z6 = x % 4, y % 16, z % 64
    buf[k + 1], buf[k + 2], buf[k + 3], buf[k + 4] = B64E[(x - x2) / 4], B64E[x2 * 16 + (y - y4) / 16], B64E[y4 * 4 + (z - z6) / 64], B64E[z6]
    k = k + 4
  end
  if n - full == 2 then
    local x, y = sbyte(s, n - 1, n)
    local x2, y4 = x % 4, y % 16
    buf[k + 1], buf[k + 2], buf[k + 3] = B64E[(x - x2) / 4], B64E[x2 * 16 + (y - y4) / 16], B64E[y4 * 4]
    k = k + 3
  elseif n - full == 1 then
    local x = sbyte(s, n)
    local x2 = x % 4
    buf[k + 1], buf[k + 2] = B64E[(x - x2) / 4], B64E[x2 * 16]
    k = k + 2
  end
  return schar(unpack_(buf, 1, k))
end
${unrolled16()}
-- The texts this call has packed, by their bytes: unpacking one of them again (a hash the
-- caller sent, answered in the reply) is a look-up. Reset per call (slot-lua.ts reset).
local packed = {}
-- A compact form of a text that is usually base64url of n bytes (a secret or token hash: 43
-- characters, 32 bytes; a handle's random part: 22 characters, 16 bytes): those n bytes, or
-- else the text behind a 0 byte (padded so that it is never n bytes long).
local function packText(s, n)
  if #s == (n == 32 and 43 or n == 16 and 22 or -1) then
    local b
    if n == 16 then b = dec22(s) else b = b64dec(s) end
    if b and #b == n then
      packed[b] = s
      return b
    end
  end
  local t = '\\0' .. s
  if #t == n then t = t .. '\\0' end
  return t
end
local function unpackText(s, n)
  if #s == n then
    local t = packed[s]
    if not t then
      if n == 16 then t = enc16(s) else t = b64enc(s) end
      packed[s] = t
    end
    return t
  end
  local t = ssub(s, 2)
  if #s == n + 1 and sbyte(t, #t) == 0 then t = ssub(t, 1, #t - 1) end
  return t
end
local function h2b(s) return packText(s, 32) end
local function b2h(s) return unpackText(s, 32) end
-- An IPv4 address in dotted form as its 4 bytes; any other text behind a 0 byte when it could
-- be taken for that (4 bytes long, or starting with a 0 byte).
local function ip2b(s)
  local a, b, c, d = smatch(s, '^(%d+)%.(%d+)%.(%d+)%.(%d+)$')
  if a then
    local parts, ok = { a, b, c, d }, true
    for i = 1, 4 do
      local n = tonum(parts[i])
      if n > 255 or tostr(n) ~= parts[i] then ok = false end
      parts[i] = n
    end
    if ok then return schar(parts[1], parts[2], parts[3], parts[4]) end
  end
  if #s == 4 or sbyte(s, 1) == 0 then return '\\0' .. s end
  return s
end
local function b2ip(s)
  if #s == 4 then return sformat('%d.%d.%d.%d', sbyte(s, 1, 4)) end
  if sbyte(s, 1) == 0 then return ssub(s, 2) end
  return s
end
`;
