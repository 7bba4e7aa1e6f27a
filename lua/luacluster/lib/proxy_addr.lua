-- The client's address behind trusted reverse proxies (http.create_server's trusted_proxies).
-- compile(list) turns { "127.0.0.1", "10.0.0.0/8", "fd00::/8", ... } into a matcher;
-- resolve(matcher, peer, xff) gives the address a request came from: the peer itself unless
-- the peer is a trusted proxy; then the right-most address of X-Forwarded-For that is not
-- itself trusted (a client can put anything at the left of that header, only what the
-- trusted proxies appended is believed). If every address is trusted, the left-most one;
-- an entry that is not an address ends the walk at the trusted address to its right.
local floor = math.floor
local tonumber, type = tonumber, type

local compile, resolve


local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then
    return nil
  end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then
    return nil
  end
  return ((a * 256 + b) * 256 + c) * 256 + d
end


-- -> array of 8 numbers | nil
local function ipv6(s)
  if not s:find(":", 1, true) or not s:match("^[%x:.]+$") then
    return nil
  end
  -- a trailing dotted IPv4 part is two groups
  local head, v4 = s:match("^(.*:)(%d+%.%d+%.%d+%.%d+)$")
  if v4 then
    local n = ipv4(v4)
    if not n then
      return nil
    end
    s = head .. string.format("%x:%x", floor(n / 65536), n % 65536)
  end
  local left, right = s, nil
  local dc = s:find("::", 1, true)
  if dc then
    if s:find("::", dc + 1, true) then
      return nil
    end
    left, right = s:sub(1, dc - 1), s:sub(dc + 2)
  end
  local function groups(part)
    local list = {}
    if part == "" then
      return list
    end
    for g in (part .. ":"):gmatch("([^:]*):") do
      if #g == 0 or #g > 4 then
        return nil
      end
      list[#list + 1] = tonumber(g, 16)
    end
    return list
  end
  local l, r = groups(left), right and groups(right) or {}
  if not l or not r then
    return nil
  end
  if (dc and #l + #r > 7) or (not dc and #l ~= 8) then
    return nil
  end
  local out = {}
  for i = 1, #l do
    out[i] = l[i]
  end
  for _ = 1, 8 - #l - #r do
    out[#out + 1] = 0
  end
  for i = 1, #r do
    out[#out + 1] = r[i]
  end
  return out
end


-- an address as it appears in a header or from the socket: -> "v4", number | "v6", groups | nil
local function parse(s)
  local n = ipv4(s)
  if n then
    return "v4", n
  end
  local g = ipv6(s)
  if g then
    -- ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket
    if g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0 and g[5] == 0 and g[6] == 65535 then
      return "v4", g[7] * 65536 + g[8]
    end
    return "v6", g
  end
  return nil
end


-- "1.2.3.4", "1.2.3.4:80", "[::1]", "[::1]:80", " ::1 " -> the bare address | nil
local function clean(entry)
  entry = entry:match("^%s*(.-)%s*$")
  local v6 = entry:match("^%[([^%]]+)%]")
  if v6 then
    entry = v6
  else
    local v4 = entry:match("^([%d.]+):%d+$")
    if v4 then
      entry = v4
    end
  end
  if parse(entry) then
    return entry
  end
  return nil
end


local function v4_in(n, net, bits)
  local size = 2 ^ (32 - bits)
  return floor(n / size) == floor(net / size)
end


local function v6_in(g, net, bits)
  for i = 1, 8 do
    local take = bits - (i - 1) * 16
    if take <= 0 then
      return true
    end
    if take >= 16 then
      if g[i] ~= net[i] then
        return false
      end
    else
      local size = 2 ^ (16 - take)
      return floor(g[i] / size) == floor(net[i] / size)
    end
  end
  return true
end


-- compile(list) -> matcher | nil, err
function compile(list)
  if type(list) == "string" then
    list = { list }
  end
  if type(list) ~= "table" then
    return nil, "trusted_proxies must be a list of addresses or networks such as \"127.0.0.1\" or \"10.0.0.0/8\""
  end
  local nets = {}
  for i = 1, #list do
    local s = list[i]
    if type(s) ~= "string" then
      return nil, "trusted_proxies: entry " .. i .. " is not a string"
    end
    local addr, bits = s:match("^%s*([^/%s]+)/(%d+)%s*$")
    addr = addr or s:match("^%s*(.-)%s*$")
    local kind, value = parse(addr)
    if not kind then
      return nil, "trusted_proxies: '" .. s .. "' is not an IPv4 or IPv6 address or network"
    end
    local max = kind == "v4" and 32 or 128
    if kind == "v4" and addr:find(":", 1, true) and bits then
      bits = tonumber(bits) - 96 -- ::ffff:a.b.c.d/120 is a.b.c.d/24
    end
    bits = bits and tonumber(bits) or max
    if bits < 0 or bits > max then
      return nil, "trusted_proxies: '" .. s .. "' has a prefix length over " .. max
    end
    nets[#nets + 1] = { kind = kind, value = value, bits = bits }
  end
  for k in pairs(list) do
    if type(k) ~= "number" then
      return nil, "trusted_proxies must be a list (an array of strings)"
    end
  end
  return function(addr)
    local kind, value = parse(addr)
    if not kind then
      return false
    end
    for _, net in ipairs(nets) do
      if net.kind == kind and (kind == "v4" and v4_in(value, net.value, net.bits) or kind == "v6" and v6_in(value, net.value, net.bits)) then
        return true
      end
    end
    return false
  end
end


-- resolve(trusted, peer, xff) -> the client's address
function resolve(trusted, peer, xff)
  if not peer or not xff or xff == "" or not trusted(peer) then
    return peer
  end
  local entries = {}
  for e in (xff .. ","):gmatch("([^,]*),") do
    entries[#entries + 1] = e
  end
  local addr = peer
  for i = #entries, 1, -1 do
    local a = clean(entries[i])
    if not a then
      break
    end
    addr = a
    if not trusted(a) then
      break
    end
  end
  return addr
end


return {
  compile = compile,
  resolve = resolve,
}
