-- luacluster.ws.handshake: the server's side of RFC 6455's opening handshake (4.2), without
-- I/O: whether a request is an upgrade it accepts, the key's answer, the subprotocol chosen.
-- req:websocket (luacluster.http) answers with what check returns: the 101's headers, or a
-- status (400, or 426 with Sec-WebSocket-Version: 13 for a version it does not speak).
-- negotiate_deflate chooses permessage-deflate's parameters (RFC 7692 7.1) among the client's
-- Sec-WebSocket-Extensions offers; runtime/ws_deflate.c does the compression.
local core = require("luacluster.core")

local M = {}

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

-- Sec-WebSocket-Accept for a client's key (4.2.2 item 5.4)
function M.accept(key)
  return core.base64_encode(core.sha1_bin(key .. GUID))
end

-- the comma-separated tokens of a header value (repeated headers come joined by ", ")
local function tokens(v)
  local t = {}
  for tok in (v or ""):gmatch("[^,]+") do
    tok = tok:match("^%s*(.-)%s*$")
    if tok ~= "" then t[#t + 1] = tok end
  end
  return t
end

local function has_token(v, want)
  for _, tok in ipairs(tokens(v)) do
    if tok:lower() == want then return true end
  end
  return false
end

-- the first of the server's protocols (its order of preference) the client offered, or nil
function M.choose_protocol(offered, protocols)
  if not protocols or not offered then return nil end
  local set = {}
  for _, p in ipairs(tokens(offered)) do set[p] = true end
  for _, p in ipairs(protocols) do
    if set[p] then return p end
  end
  return nil
end

-- ---- Sec-WebSocket-Extensions (RFC 6455 9.1) and permessage-deflate (RFC 7692 7.1) ----

-- parse_extensions(value) -> { { name = , params = { { name, value | true }, ... } }, ... } | nil
-- (nil: the header does not follow 9.1's grammar; a quoted value is unescaped)
function M.parse_extensions(v)
  local list, i, n = {}, 1, #v
  local function skip() i = v:find("[^ \t]", i) or n + 1 end
  local function token()
    local s, e = v:find("^[%w!#$%%&'*+%-.^_`|~]+", i)
    if not s then return nil end
    i = e + 1
    return v:sub(s, e)
  end
  local function quoted()
    local out = {}
    i = i + 1
    while i <= n do
      local ch = v:sub(i, i)
      if ch == '"' then
        i = i + 1
        return table.concat(out)
      end
      if ch == "\\" then
        i = i + 1
        ch = v:sub(i, i)
        if ch == "" then return nil end
      end
      out[#out + 1] = ch
      i = i + 1
    end
    return nil
  end
  while true do
    skip()
    if i > n then return list end
    if v:sub(i, i) == "," then   -- an empty element (1#rule)
      i = i + 1
    else
      local name = token()
      if not name then return nil end
      local ext = { name = name, params = {} }
      list[#list + 1] = ext
      while true do
        skip()
        local ch = v:sub(i, i)
        if ch == "," then i = i + 1 break end
        if ch == "" then break end
        if ch ~= ";" then return nil end
        i = i + 1
        skip()
        local pname = token()
        if not pname then return nil end
        skip()
        local value = true
        if v:sub(i, i) == "=" then
          i = i + 1
          skip()
          if v:sub(i, i) == '"' then value = quoted() else value = token() end
          if not value then return nil end
        end
        ext.params[#ext.params + 1] = { pname, value }
      end
    end
  end
end

-- a window bits value: a decimal integer 8..15 without leading zeroes (7.1.2)
local function window_bits(v)
  if type(v) ~= "string" or not v:match("^[1-9]%d?$") then return nil end
  local b = tonumber(v)
  if b < 8 or b > 15 then return nil end
  return b
end

local DEFLATE_DEFAULTS = {
  server_no_context_takeover = true, client_no_context_takeover = false,
  server_max_window_bits = 15, client_max_window_bits = 15, level = 1, mem_level = 8,
}

-- the server's settings: compress = true or a table overriding DEFLATE_DEFAULTS; raises on a bad one
function M.deflate_settings(compress)
  local s = {}
  for k, v in pairs(DEFLATE_DEFAULTS) do s[k] = v end
  if compress == true then return s end
  if type(compress) ~= "table" then error("compress must be true, false or a table", 0) end
  for k, v in pairs(compress) do
    local d = DEFLATE_DEFAULTS[k]
    if d == nil then error("compress: unknown setting " .. tostring(k), 0) end
    if type(v) ~= type(d) then error("compress." .. k .. " must be a " .. type(d), 0) end
    s[k] = v
  end
  local function range(k, lo, hi)
    local v = s[k]
    if v % 1 ~= 0 or v < lo or v > hi then error("compress." .. k .. " must be an integer " .. lo .. ".." .. hi, 0) end
  end
  range("server_max_window_bits", 8, 15)
  range("client_max_window_bits", 8, 15)
  range("level", 0, 9)
  range("mem_level", 1, 9)
  return s
end

-- one offer's parameters against the settings: the response's parameters and the codec's, or nil
-- (declined: an unknown or repeated parameter, an invalid value, or a configuration not supported)
local function accept_offer(params, s)
  local seen = {}
  for _, p in ipairs(params) do
    local name, value = p[1], p[2]
    if seen[name] then return nil end
    if name == "server_no_context_takeover" or name == "client_no_context_takeover" then
      if value ~= true then return nil end
    elseif name == "server_max_window_bits" then
      value = window_bits(value)
      if not value then return nil end
    elseif name == "client_max_window_bits" then
      if value ~= true then
        value = window_bits(value)
        if not value then return nil end
      end
    else
      return nil
    end
    seen[name] = value
  end
  local resp = { "permessage-deflate" }
  -- the server's compression: without context takeover when either side asks for it (7.1.1.1)
  local server_nct = s.server_no_context_takeover or seen.server_no_context_takeover ~= nil
  if server_nct then resp[#resp + 1] = "server_no_context_takeover" end
  local client_nct = s.client_no_context_takeover or seen.client_no_context_takeover ~= nil
  if client_nct then resp[#resp + 1] = "client_no_context_takeover" end
  -- the server's window: at most what the client offered (7.1.2.1)
  local sbits = s.server_max_window_bits
  if seen.server_max_window_bits then
    sbits = math.min(sbits, seen.server_max_window_bits)
    resp[#resp + 1] = "server_max_window_bits=" .. sbits
  elseif sbits < 15 then
    resp[#resp + 1] = "server_max_window_bits=" .. sbits
  end
  -- the client's window: named in the response only when the offer has the parameter (7.1.2.2)
  local cbits = 15
  local offered = seen.client_max_window_bits
  if offered == nil then
    if s.client_max_window_bits < 15 then return nil end   -- the client would use 15: not supported
  else
    cbits = offered == true and s.client_max_window_bits or math.min(offered, s.client_max_window_bits)
    if offered ~= true or cbits < 15 then resp[#resp + 1] = "client_max_window_bits=" .. cbits end
  end
  return table.concat(resp, "; "), {
    server_no_context_takeover = server_nct, client_no_context_takeover = client_nct,
    server_max_window_bits = sbits, client_max_window_bits = cbits, level = s.level, mem_level = s.mem_level,
  }
end

-- negotiate_deflate(offers, settings) -> Sec-WebSocket-Extensions of the response, the codec's
-- parameters | nil: the first permessage-deflate offer the server accepts (7.1), none when the
-- header is malformed
function M.negotiate_deflate(offers, settings)
  local list = offers and M.parse_extensions(offers)
  if not list then return nil end
  for _, ext in ipairs(list) do
    if ext.name == "permessage-deflate" then
      local resp, params = accept_offer(ext.params, settings)
      if resp then return resp, params end
    end
  end
  return nil
end

-- check(method, minor, headers (lower-case names), protocols [, deflate settings]) ->
--   headers of the 101 (a table), protocol, permessage-deflate's parameters (or nil) |
--   nil, status, err, extra headers of the refusal
function M.check(method, minor, headers, protocols, deflate)
  if method ~= "GET" or (minor or 0) < 1 then
    return nil, 400, "a WebSocket upgrade is a GET of HTTP/1.1"
  end
  if not headers.host then return nil, 400, "no Host" end
  if not has_token(headers.upgrade, "websocket") then return nil, 400, "no Upgrade: websocket" end
  if not has_token(headers.connection, "upgrade") then return nil, 400, "no Connection: upgrade" end
  local version = headers["sec-websocket-version"]
  if version == nil then return nil, 400, "no Sec-WebSocket-Version" end
  if version:match("^%s*(.-)%s*$") ~= "13" then
    return nil, 426, "Sec-WebSocket-Version " .. version .. " (13 only)", { ["Sec-WebSocket-Version"] = "13" }
  end
  local key = headers["sec-websocket-key"]
  key = key and key:match("^%s*(.-)%s*$")
  local raw = key and key:match("^[%w+/]+=*$") and core.base64_decode(key)
  if not raw or #raw ~= 16 or #key ~= 24 then return nil, 400, "Sec-WebSocket-Key is not 16 bytes in base64" end
  local protocol = M.choose_protocol(headers["sec-websocket-protocol"], protocols)
  local h = { Upgrade = "websocket", Connection = "Upgrade", ["Sec-WebSocket-Accept"] = M.accept(key) }
  if protocol then h["Sec-WebSocket-Protocol"] = protocol end
  local params
  if deflate then
    h["Sec-WebSocket-Extensions"], params = M.negotiate_deflate(headers["sec-websocket-extensions"], deflate)
  end
  return h, protocol, params
end

return M
