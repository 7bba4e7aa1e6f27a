-- luacluster.net.tls: the TLS layer of outbound sockets (net.connect's opts.tls), plugged into
-- net/outbound.lua through its set_tls_layer (outbound loads it at the first TLS connect). The
-- mechanism is runtime/conn_tls.c (tls.c's engine as the connection's filter); here: the
-- settings (checked, defaults), their part of the pool key, and the handshake as the last step
-- of a connect, within the connect's deadline.
-- opts.tls: true, or { server_name =, verify = true, ca_file = }: verification against the
-- system's CA store (or ca_file) and of the name (server_name, else the host connected to) is on
-- unless verify = false.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")

local _M = {}

local waiter = coro.waiter
local FIELDS = { server_name = "string", verify = "boolean", ca_file = "string" }


-- tls (opts.tls) -> verify, ca_file, server_name; raises on a programming mistake
local function settings(tls)
  if tls == true then
    return true, nil, nil
  end
  if type(tls) ~= "table" then
    coro.error_at_caller("net.connect: opts.tls must be true or a table")
  end
  for k, v in pairs(tls) do
    local want = FIELDS[k]
    if want == nil then
      coro.error_at_caller("net.connect: opts.tls has no field " .. tostring(k)
        .. " (server_name, verify, ca_file)")
    end
    if type(v) ~= want then
      coro.error_at_caller("net.connect: opts.tls." .. k .. " must be a " .. want)
    end
  end
  if tls.server_name == "" then
    coro.error_at_caller("net.connect: opts.tls.server_name must not be empty")
  end
  return tls.verify ~= false, tls.ca_file, tls.server_name
end


-- a field of a pool key, length first, so that no two settings join into the same key
-- ("a b" + "c" and "a" + "b c" stay apart)
local function field(s)
  s = s or ""
  return #s .. ":" .. s
end


-- the pool key's part for opts.tls: connections with other settings never share a pool
function _M.key(tls)
  local verify, ca_file, server_name = settings(tls)
  if not verify then
    return "tls noverify " .. field(server_name)
  end
  return "tls verify " .. field(server_name) .. " " .. field(ca_file)
end


-- handshake(sock, tls, host, ms) -> sock | nil, reason: sock (just connected, nothing read)
-- speaks TLS within ms; its failure is tls.c's message ("certificate verify failed: ...")
function _M.handshake(sock, tls, host, ms)
  local verify, ca_file, server_name = settings(tls)
  if ms <= 0 then
    return nil, "timeout"
  end
  local st, h = sock._st, sock._h
  if h == nil then
    return nil, "closed"
  end
  if h:buffered() > 0 then
    return nil, "unread bytes before the TLS handshake"
  end
  local ok, err = core.conn_tls(h, host, st.key, verify, ca_file, server_name)
  if not ok then
    return nil, err
  end
  local w = waiter("net.connect")
  st.cw = w -- outbound's on_event wakes it with the conn's "handshake" event, or "closed"
  local t = core.timer_new(function()
    w:wake("timeout")
  end)
  t:start(ms, 0)
  err = w:wait()
  t:close()
  st.cw = nil
  if err == "closed" then
    return nil, "TLS handshake failed: the peer closed the connection"
  end
  if err then
    return nil, err
  end
  return sock
end


-- info(h) -> { protocol, cipher, session_reused, server_name [, alpn] } | nil (plain TCP)
function _M.info(h)
  return core.conn_tls_info(h)
end


return {
  key = _M.key,
  handshake = _M.handshake,
  info = _M.info,
}
