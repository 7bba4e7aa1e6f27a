-- luacluster.ws.handshake: the server's side of RFC 6455's opening handshake (4.2), without
-- I/O: whether a request is an upgrade it accepts, the key's answer, the subprotocol chosen.
-- req:websocket (luacluster.http) answers with what check returns: the 101's headers, or a
-- status (400, or 426 with Sec-WebSocket-Version: 13 for a version it does not speak).
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

-- check(method, minor, headers (lower-case names), protocols) ->
--   headers of the 101 (a table), protocol | nil, status, err, extra headers of the refusal
function M.check(method, minor, headers, protocols)
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
  return h, protocol
end

return M
