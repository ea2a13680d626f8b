// Lua helpers of the slot scripts' compact record form (slot-lua.ts puts them into its prelude):
// exact printing of numbers, base64url hashes and handle parts as bytes, IPv4 addresses as bytes.
// Every helper maps a value it cannot compact to a form that can never be mistaken for a
// compacted one, so any text survives the round trip.

export const LUA_CODEC = `
local function fmt(n)
  if n == math.floor(n) and n > -1e15 and n < 1e15 then return string.format('%d', n) end
  return string.format('%.17g', n)
end

-- base64url text <-> bytes, four characters (three bytes) at a time; b64dec answers nil unless
-- s is the canonical encoding of its bytes. (No lookup table: building one costs every call.)
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
local function b64dec(s)
  local out = {}
  for i = 1, #s, 4 do
    local chunk = string.sub(s, i, i + 3)
    local n, k = 0, #chunk
    for j = 1, k do
      local v = string.find(B64, string.sub(chunk, j, j), 1, true)
      if not v then return nil end
      n = n * 64 + v - 1
    end
    if k == 4 then
      out[#out + 1] = string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
    elseif k == 3 then
      if n % 4 ~= 0 then return nil end
      n = n / 4
      out[#out + 1] = string.char(math.floor(n / 256), n % 256)
    elseif k == 2 then
      if n % 16 ~= 0 then return nil end
      out[#out + 1] = string.char(n / 16)
    else
      return nil
    end
  end
  return table.concat(out)
end
local function b64enc(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1, d2, d3, d4 = math.floor(n / 262144), math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64
    if c then
      out[#out + 1] = string.sub(B64, d1 + 1, d1 + 1) .. string.sub(B64, d2 + 1, d2 + 1) .. string.sub(B64, d3 + 1, d3 + 1) .. string.sub(B64, d4 + 1, d4 + 1)
    elseif b then
      out[#out + 1] = string.sub(B64, d1 + 1, d1 + 1) .. string.sub(B64, d2 + 1, d2 + 1) .. string.sub(B64, d3 + 1, d3 + 1)
    else
      out[#out + 1] = string.sub(B64, d1 + 1, d1 + 1) .. string.sub(B64, d2 + 1, d2 + 1)
    end
  end
  return table.concat(out)
end
-- A compact form of a text that is usually base64url of n bytes (a secret or token hash: 43
-- characters, 32 bytes; a handle's random part: 22 characters, 16 bytes): those n bytes, or
-- else the text behind a 0 byte (padded so that it is never n bytes long).
local function packText(s, n)
  if #s == math.ceil(n * 4 / 3) then
    local b = b64dec(s)
    if b and #b == n then return b end
  end
  local t = '\\0' .. s
  if #t == n then t = t .. '\\0' end
  return t
end
local function unpackText(s, n)
  if #s == n then return b64enc(s) end
  local t = string.sub(s, 2)
  if #s == n + 1 and string.byte(t, #t) == 0 then t = string.sub(t, 1, #t - 1) end
  return t
end
local function h2b(s) return packText(s, 32) end
local function b2h(s) return unpackText(s, 32) end
-- An IPv4 address in dotted form as its 4 bytes; any other text behind a 0 byte when it could
-- be taken for that (4 bytes long, or starting with a 0 byte).
local function ip2b(s)
  local a, b, c, d = string.match(s, '^(%d+)%.(%d+)%.(%d+)%.(%d+)$')
  if a then
    local parts, ok = { a, b, c, d }, true
    for i = 1, 4 do
      local n = tonumber(parts[i])
      if n > 255 or tostring(n) ~= parts[i] then ok = false end
      parts[i] = n
    end
    if ok then return string.char(parts[1], parts[2], parts[3], parts[4]) end
  end
  if #s == 4 or string.byte(s, 1) == 0 then return '\\0' .. s end
  return s
end
local function b2ip(s)
  if #s == 4 then return string.format('%d.%d.%d.%d', string.byte(s, 1, 4)) end
  if string.byte(s, 1) == 0 then return string.sub(s, 2) end
  return s
end
`;
