-- server:listen() for HTTP and net servers, wherever the server runs. In a worker the master
-- owns the listening socket: the worker asks for it and is given either the socket itself
-- (shared, reuseport, ports) or a key under which the master sends it connections
-- (dispatch). In the master or a forked child the server listens by itself.
-- A server here is any table with:
--   server:_take_listener(tcp)   accept on this listening socket
--   server:_take_key(key, on)    take (on=true) or stop taking dispatched connections
--   server:emit(event, ...)      "listening" (address) and "error" (err)
local core = require("luacluster.core")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local timer0 = require("luacluster.lib.timer0")
local tls = require("luacluster.serve.tls")
local worker = require("luacluster.worker.side")

local FATAL_LISTEN_EXIT, listen, take_master_servers, master_listens, listen_here, unlisten, channel_closed, attach_worker, mixin

local pending = {}  -- seq -> { server, report }
local confirming = {} -- key -> fn() once the master confirmed an unlisten (see unlisten)
local by_address = setmetatable({}, { __mode = "v" })  -- "host:port" -> server given its socket
local seq = 0
local reporters = setmetatable({}, { __mode = "k" })


-- exit code of a worker whose listen failed while the cluster was starting: the master
-- then reports the error once and stops with a non-zero code
FATAL_LISTEN_EXIT = 98


local function fail(server, err, fatal)
  if not server:emit("error", err) then
    if fatal then
      core.exit(FATAL_LISTEN_EXIT)
    end
    log.error(err)
    core.exit(1)
  end
end


local function check_args(port, host)
  if port == nil then
    port = runtime.options.port or 8080
  end
  if type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0 then
    error("listen: port must be a number from 0 to 65535", 3)
  end
  if host ~= nil and type(host) ~= "string" then
    error("listen: host must be a string", 3)
  end
  return port, host or runtime.options.host or "127.0.0.1"
end


-- least_connections: the worker reports connections it closed, a batch every 100 ms
local function start_reporting(server)
  if reporters[server] then
    return
  end
  local t = core.timer_new(function()
    local n = server:_closed_count()
    if n > 0 then
      worker.channel():control({ op = "closed", n = n })
    end
  end)
  t:start(100, 100)
  t:unref()
  reporters[server] = t
end


local function on_result(msg, handle)
  local p = pending[msg.seq]
  if not p then
    if handle then handle:close() end
    return
  end
  pending[msg.seq] = nil
  local server = p.server
  if msg.err then
    return fail(server, msg.err, msg.fatal)
  end
  if server._closed then
    -- closed before its listen was granted: the master, which counts this worker ready there
    -- already, is told as by a close (confirmed); the connections it sends meanwhile find no
    -- server here and go back to it for another worker (ipc.c)
    if handle then
      handle:close()
    elseif msg.key then
      local ch = worker.channel()
      if not ch:is_closed() and ch:control({ op = "unlisten", key = msg.key, confirm = true }) then
        confirming[msg.key] = function() confirming[msg.key] = nil end
      end
    end
    return
  end
  if handle then
    local ok, err = server:_take_listener(handle)
    if not ok then
      return fail(server, "listen " .. tostring(err))
    end
    if msg.address then
      by_address[tostring(msg.address.address) .. ":" .. tostring(msg.address.port)] = server
    end
  else
    -- (the master keeps a copy of each connection it sends until ipc.c acknowledges its frame)
    server:_take_key(msg.key, true)
  end
  server._keys = server._keys or {}
  server._keys[#server._keys + 1] = msg.key
  if msg.report then
    start_reporting(server)
  end
  server.address = msg.address
  server:emit("listening", msg.address)
end


-- opts.tls's certificates, loaded once per server in this process (server._tls: the checked
-- list, serve/tls.lua; server:_set_tls(ctx) takes them): true, or false and the error. The
-- failure is a listen error: in a worker it goes through the master as a taken port's does
-- (the start ends with it; a reload's new worker fails, so the reload is refused); in a
-- reload's staging (the master's own servers) it refuses the reload; else "error" / exit.
local function load_tls(server)
  if not server._tls or server._tls_ctx then
    return true
  end
  local ctx, err = tls.load(server._tls, server._tls_alpn)
  if not ctx then
    return false, err
  end
  server._tls_ctx = ctx
  server:_set_tls(ctx)
  return true
end


function listen(server, port, host)
  port, host = check_args(port, host)
  local tls_ok, tls_err = load_tls(server)
  if not tls_ok and runtime.role ~= "worker" then
    if runtime.role == "master" and runtime.staging then
      runtime.staging.listen_error = runtime.staging.listen_error or tls_err
    else
      timer0.next_turn(function()
        fail(server, tls_err)
      end)
    end
    return server
  end
  if runtime.role == "worker" then
    attach_worker()
    seq = seq + 1
    pending[seq] = { server = server }
    local ok, err = worker.channel():control({ op = "listen", seq = seq, host = host, port = port, tls_error = tls_err })
    if not ok then
      pending[seq] = nil
      fail(server, "listen: " .. tostring(err))
    end
    return server
  end
  return listen_here(server, port, host)
end


-- The master's own servers, by address, so that a reload's new code takes over the same
-- listening socket instead of closing and reopening it (no connection refused meanwhile).
local here = {}           -- "host:port" -> { tcp =, server = }
local master_servers = {}    -- server -> true: servers the master's code listens with


-- a reload's switch: the old code's servers (server -> true), which the new code's replace
function take_master_servers()
  local old = master_servers
  master_servers = {}
  return old
end


-- does a server of the master's own code listen on host:port? (a worker's listen there
-- fails with EADDRINUSE: master/listen.lua names that cause)
function master_listens(host, port)
  local h = here[host .. ":" .. port]
  return h ~= nil and master_servers[h.server] == true and not h.server._closed
end


function listen_here(server, port, host)
  if runtime.role == "master" and runtime.staging then -- a reload's new code: listens at the switch
    local list = runtime.staging.listens
    list[#list + 1] = { server = server, port = port, host = host }
    return server
  end
  local key = host .. ":" .. port
  local old = port ~= 0 and here[key]
  local tcp, err
  if old and old.server ~= server and old.server._retiring then
    tcp = old.tcp
    old.server:_release_listener(tcp)
  else
    tcp, err = core.tcp_listen(host, port)
  end
  if tcp and runtime.role == "master" then
    here[key] = { tcp = tcp, server = server }
    master_servers[server] = true
  end
  if not tcp then
    -- reported after the caller's top level has had a chance to add an error handler
    timer0.next_turn(function()
      fail(server, err)
    end)
    return server
  end
  local _, actual = tcp:sockname()
  local ok, aerr = server:_take_listener(tcp)
  if not ok then
    tcp:close()
    fail(server, "listen " .. tostring(aerr))
    return server
  end
  server.address = { address = host, port = actual }
  timer0.next_turn(function()
    server:emit("listening", server.address)
  end)
  return server
end


-- A closed server gets no more dispatched connections. The master is told first; what it
-- sent before it knew is still taken (and served) until it confirms ("unlisten_ok", after
-- every connection it sent on that key, the channel keeping their order). Then done().
local function drop_key(server, key)
  server:_take_key(key, false)
end

function unlisten(server, done)
  if reporters[server] then
    reporters[server]:close()
    reporters[server] = nil
  end
  local keys = server._keys
  server._keys = nil
  if runtime.role ~= "worker" or not keys or #keys == 0 then
    if done then done() end
    return
  end
  local ch = worker.channel()
  local left = #keys
  local function one_done(key)
    confirming[key] = nil
    drop_key(server, key)
    left = left - 1
    if left == 0 and done then done() end
  end
  for _, key in ipairs(keys) do
    if ch:is_closed() or not ch:control({ op = "unlisten", key = key, confirm = true }) then
      one_done(key)
    else
      confirming[key] = function() one_done(key) end
    end
  end
end


local function on_unlisten_ok(msg)
  local fn = confirming[msg.key]
  if fn then fn() end
end


-- the channel closed: no confirmation will come, and nothing more is sent
function channel_closed()
  local list = {}
  for _, fn in pairs(confirming) do list[#list + 1] = fn end
  for _, fn in ipairs(list) do fn() end
end


-- reuseport: the socket of a slot that a reload left without its own worker, to accept on
-- beside this server's own (master/listen.lua, close_unused)
local function on_extra_listener(msg, handle)
  if not handle then
    return
  end
  local server = by_address[tostring(msg.host) .. ":" .. tostring(msg.port)]
  if server and not server._closed and not server._draining and server:_take_listener(handle) then
    return
  end
  handle:close()
end


-- plugs the worker's half into the worker's side, at this worker's first listen (the master's
-- answers come only after one; worker/plugins.lua lists it)
local attached = false
function attach_worker()
  if attached then
    return
  end
  attached = true
  worker.register_op("listen_result", on_result)
  worker.register_op("extra_listener", on_extra_listener)
  worker.register_op("unlisten_ok", on_unlisten_ok)
  worker.add_hook("close", channel_closed)
end

-- ---- what every server (http, net) shares ----

local server_methods = {}


function server_methods:listen(port, host)
  if self._closed then
    error("server:listen: the server is closed", 2)
  end
  return listen(self, port, host)
end


-- a reload's new server takes this listening socket over: it is no longer ours to close
function server_methods:_release_listener(tcp)
  for i, l in ipairs(self._listeners) do
    if l == tcp then
      table.remove(self._listeners, i)
      return true
    end
  end
  return false
end


-- the first step of a drain: no new connections (sockets closed; the master is told, and
-- done() once it has confirmed, what it sent before taken meanwhile)
function server_methods:_stop_accepting(done)
  for _, tcp in ipairs(self._listeners) do
    tcp:close()
  end
  self._listeners = {}
  unlisten(self, done)
end


-- stop accepting; fn() once the server's last connection has closed (server:_when_idle)
function server_methods:_drain(fn)
  if self._draining then
    return
  end
  self._draining = true
  runtime.hold()
  self:_stop_accepting(function()
    self:_when_idle(function()
      runtime.release()
      if fn then fn() end
    end)
  end)
end


-- server:close(): no new connections, the open ones finish, then "close" (after the server's
-- own _closed_all(), when it has one: the HTTP server's C handle)
function server_methods:close()
  if self._closed then
    return
  end
  self._closed = true
  runtime.drain_hooks[self] = nil
  self:_drain(function()
    if self._closed_all then
      self:_closed_all()
    end
    self:emit("close")
  end)
end


function mixin(mt)
  for k, fn in pairs(server_methods) do
    mt[k] = fn
  end
  return mt
end


return {
  FATAL_LISTEN_EXIT = FATAL_LISTEN_EXIT,
  listen = listen,
  take_master_servers = take_master_servers,
  master_listens = master_listens,
  listen_here = listen_here,
  unlisten = unlisten,
  channel_closed = channel_closed,
  mixin = mixin,
}
