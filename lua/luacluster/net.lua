-- luacluster.net: TCP servers and sockets. Accepted sockets are runtime/tcp.c's; this module
-- gives them the contract's shape (:read waits, :on("data") for the callback style) and
-- makes servers listen through the master like HTTP servers do (serve/listen.lua). Outbound
-- sockets (connect, resolve, pools) are net/outbound.lua's.
-- Sockets and servers can travel as the handle of a message; the sender's copy is closed.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local emitter = require("luacluster.lib.emitter")
local listen = require("luacluster.serve.listen")
local runtime = require("luacluster.lib.runtime")
local serve_tls = require("luacluster.serve.tls")

local _M = {}

local HIGH_WATER = 65536 -- buffered, unread bytes before reading pauses

-- net/outbound.lua, loaded at the first connect or resolve: an app that only serves loads none
-- of it (its memory stays what it was)
local outbound


local function out()
  outbound = outbound or require("luacluster.net.outbound") -- lazy: loaded at the first connect
  return outbound
end

-- ---- sockets ----

local sock_mt = {}
sock_mt.__index = sock_mt
emitter.mixin(sock_mt)


local function wake_reader(self, ...)
  local w = self._reader
  if w then
    self._reader = nil
    w:wake(...)
  end
end


local function take(self, n)
  local buf = self._buf
  if #buf == 0 then
    return nil
  end
  local data = table.concat(buf)
  if n and #data > n then
    self._buf = { data:sub(n + 1) }
    self._buflen = #data - n
    data = data:sub(1, n)
  else
    self._buf = {}
    self._buflen = 0
  end
  return data
end


local function on_event(self, event, arg)
  if event == "data" then
    if self:has_listeners("data") then
      self:emit("data", arg)
    end
    if self._reading_for_read then
      local buf = self._buf
      buf[#buf + 1] = arg
      self._buflen = self._buflen + #arg
      if self._buflen >= HIGH_WATER and not self:has_listeners("data") then
        self._h:read_stop()
        self._paused = true
      end
      local want = self._want
      if self._reader and (want == nil or self._buflen >= want) then
        wake_reader(self, take(self, want))
      end
    end
  elseif event == "end" or event == "error" then
    self._eof = true
    self._err = event == "error" and arg or nil
    if self._reader then
      local data = take(self, nil)
      if data then
        wake_reader(self, data)
      else
        wake_reader(self, nil, self._err or "closed")
      end
    end
    if event == "error" then
      self:emit("error", arg)
    end
    self:emit("end")
    self:close()
  elseif event == "close" then
    self._closed = true
    wake_reader(self, nil, self._err or "closed")
    self:emit("close")
  end
end


-- wraps a core tcp socket
function _M.wrap(h)
  local self = setmetatable({ _h = h, _buf = {}, _buflen = 0 }, sock_mt)
  self.remote_address, self.remote_port = h:peername()
  return self
end


local function start_reading(self)
  if self._started or self._closed then
    return
  end
  self._started = true
  self._h:read_start(function(event, arg)
    on_event(self, event, arg)
  end)
end


function sock_mt:on(event, fn)
  emitter.on(self, event, fn)
  if event == "data" or event == "end" or event == "close" then
    start_reading(self)
  end
  return self
end


-- read([n]): the next data (at most n bytes; with n, waits for n unless the peer closes)
-- -> data | nil, err ("closed" at the end)
function sock_mt:read(n)
  if n ~= nil and (type(n) ~= "number" or n < 1) then
    error("sock:read: n must be a number >= 1", 2)
  end
  if self._reader then
    error("sock:read: another coroutine is already reading this socket", 2)
  end
  self._reading_for_read = true
  if self._buflen > 0 and (n == nil or self._buflen >= n or self._eof) then
    return take(self, n)
  end
  if self._eof or self._closed then
    local data = take(self, n)
    if data then
      return data
    end
    return nil, self._err or "closed"
  end
  local w = coro.waiter("sock:read")
  self._reader = w
  self._want = n
  if self._paused then
    self._paused = false
    self._h:read_start(function(event, arg) on_event(self, event, arg) end)
  end
  start_reading(self)
  return w:wait()
end


function sock_mt:write(data)
  if self._closed then
    return nil, "closed"
  end
  if type(data) ~= "string" then
    data = tostring(data)
  end
  return self._h:write(data)
end


-- sock:tls_info() -> { protocol, cipher, server_name, session_reused } | nil (plain, or before
-- the handshake's end)
function sock_mt:tls_info()
  return self._h:tls_info()
end


function sock_mt:close()
  if not self._closed then
    self._closed = true
    self._h:close()
  end
end


-- how long a close() waits for the peer to take some of what is still to send (ms; 0: forever)
function sock_mt:set_send_timeout(ms)
  if type(ms) ~= "number" or ms < 0 then
    error("sock:set_send_timeout: ms must be a number >= 0", 2)
  end
  self._h:set_send_timeout(ms)
end


function sock_mt:nodelay(on)
  self._h:nodelay(on ~= false)
end


-- ---- servers ----

local server_mt = {}
server_mt.__index = server_mt
emitter.mixin(server_mt)
listen.mixin(server_mt)


local function on_connection(server, raw)
  if server._send_timeout then
    raw:set_send_timeout(server._send_timeout)
  end
  if server._tls_ctx then -- TLS: the handler gets the socket at once, reads and writes plaintext
    raw:tls_accept(server._tls_ctx, server._handshake_timeout)
  end
  local sock = _M.wrap(raw)
  server._open = server._open + 1
  sock:on("close", function()
    server._open = server._open - 1
    if server._open == 0 and server._on_idle then
      local fn = server._on_idle
      server._on_idle = nil
      fn()
    end
  end)
  if server._handler then
    coro.spawn(server._handler, sock)
  end
  server:emit("connection", sock)
end


local function new_server(handler, opts)
  local server = setmetatable({ _handler = handler, _listeners = {}, _open = 0,
    _send_timeout = opts and opts.send_timeout,
    _tls = opts and opts.tls and serve_tls.check(opts.tls, "net.create_server"),
    _handshake_timeout = opts and opts.handshake_timeout }, server_mt)
  runtime.drain_hooks[server] = function()
    server:_drain()
  end
  return server
end


-- opts.send_timeout: ms a sock:close() waits for its peer to take some of what is still to
-- send before the socket is closed anyway (60000, as an HTTP server's; 0: forever)
function _M.create_server(handler, opts)
  if handler ~= nil and type(handler) ~= "function" then
    error("net.create_server: handler must be a function", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("net.create_server: opts must be a table", 2)
  end
  local st = opts and opts.send_timeout
  if st ~= nil and (type(st) ~= "number" or st < 0) then
    error("net.create_server: send_timeout must be a number of ms >= 0", 2)
  end
  local ht = opts and opts.handshake_timeout
  if ht ~= nil and (type(ht) ~= "number" or ht < 0) then
    error("net.create_server: handshake_timeout must be a number of ms >= 0", 2)
  end
  return new_server(handler, opts)
end


function server_mt:_set_tls(ctx)
  self._tls_ctx = ctx
end


function server_mt:_take_listener(tcp)
  self._listeners[#self._listeners + 1] = tcp
  return tcp:accept(function(raw)
    on_connection(self, raw)
  end)
end


function server_mt:_take_key(key, on)
  self._sinks = self._sinks or {}
  if on then
    local sink, err = core.sink_new(key, function(raw)
      on_connection(self, raw)
    end)
    if not sink then
      return nil, err
    end
    self._sinks[key] = sink
  elseif self._sinks[key] then
    self._sinks[key]:close()
    self._sinks[key] = nil
  end
  return true
end


function server_mt:_closed_count()
  return 0
end


-- for `luacluster status` (worker/stats.lua): its open connections; a stream has no requests
function server_mt:stats()
  return { requests = 0, connections = self._open }
end


-- a server received in a message starts accepting once it has a connection handler
function server_mt:on(event, fn)
  emitter.on(self, event, fn)
  if event == "connection" and self._received and not self._accepting then
    self._accepting = true
    self._listeners[1]:accept(function(raw)
      on_connection(self, raw)
    end)
  end
  return self
end


-- done() once the last socket has closed (listen.mixin's _drain)
function server_mt:_when_idle(done)
  if self._open == 0 then
    done()
  else
    self._on_idle = done
  end
end



-- ---- outbound ----

-- connect's callback form, apart: a closure made in connect itself kept the JIT from
-- compiling every call of it (NYI: UCLO)
local function connect_async(host, port, opts, cb)
  coro.spawn(function()
    cb(out().connect(host, port, opts))
  end)
  return true
end


-- connect(host, port [, opts]) -> sock | nil, err (waits); connect(host, port [, opts], cb):
-- cb(sock) or cb(nil, err) in a coroutine of its own. The sockets are net/outbound.lua's.
function _M.connect(host, port, opts, cb)
  if type(opts) == "function" and cb == nil then
    opts, cb = nil, opts
  end
  if type(host) ~= "string" or host == "" then
    error("net.connect: host must be a non-empty string", 2)
  end
  if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then
    error("net.connect: port must be a number 1-65535", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("net.connect: opts must be a table", 2)
  end
  local timeout = opts and opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout > 0 and timeout <= 1e12)) then
    error("net.connect: opts.timeout must be a number of ms > 0", 2)
  end
  if cb ~= nil and type(cb) ~= "function" then
    error("net.connect: cb must be a function", 2)
  end
  if cb then
    return connect_async(host, port, opts, cb)
  end
  return out().connect(host, port, opts)
end


-- resolve(name) -> { address, ... } | nil, err (waits)
function _M.resolve(name)
  if type(name) ~= "string" then
    error("net.resolve: name must be a string", 2)
  end
  return out().resolve(name)
end


-- ---- handles that travel in messages ----

-- a core tcp object received over IPC -> a socket or a server
function _M.adopt(h)
  if h:is_server() then
    local server = new_server(nil)
    server._received = true
    server._listeners[1] = h
    return server
  end
  return _M.wrap(h)
end


-- the core object to send for a socket or server (ownership moves with it)
function _M.raw(obj)
  if getmetatable(obj) == sock_mt then
    return obj._h
  elseif getmetatable(obj) == server_mt then
    return obj._listeners[1]
  end
  return outbound and outbound.raw(obj) or obj
end


return {
  wrap = _M.wrap,
  create_server = _M.create_server,
  connect = _M.connect,
  resolve = _M.resolve,
  adopt = _M.adopt,
  raw = _M.raw,
}
