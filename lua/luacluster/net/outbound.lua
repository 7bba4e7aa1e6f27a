-- luacluster.net.outbound: the Lua face of outbound sockets (runtime/conn.c): connect by name
-- with a deadline over every address, reads by pattern from the socket's buffer in C, timeouts,
-- and the pools of idle connections (net/pool.lua). net.connect returns these sockets; the HTTP
-- client and ngx.socket.tcp are built on them.
-- A read the buffer already satisfies returns from the C call without yielding; otherwise the
-- coroutine waits for conn.c's "read" event. One reader and one writer at a time.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local emitter = require("luacluster.lib.emitter")
local pool = require("luacluster.net.pool")

local _M = {}

local DEFAULT_TIMEOUT = 60000 -- ms for connect, send and read, as OpenResty's defaults
local DEFAULT_IDLE = 60000    -- ms a pooled connection may stay idle
local DEFAULT_POOL_SIZE = 30  -- idle connections per pool
-- conn:recv's kinds (runtime/read_buffer.h)
local ANY, EXACT, LINE, UNTIL, ALL = 1, 2, 3, 4, 5

local in_handler, waiter, current = coro.in_handler, coro.waiter, coro.current
local wait, wake_co = coro.wait, coro.wake
local now = core.now

local sock_mt = {}
sock_mt.__index = sock_mt
emitter.mixin(sock_mt)


-- rw / ww / cw hold the coroutine that waits (coro.wait) rather than a waiter object: the
-- event is always later than the wait (conn.c answers a pending read, a send or a connect from
-- the loop), so the rendezvous needs no table of its own, and the fixed arguments keep the
-- varargs of coro.waiter off the hot path. The TLS layer's handshake, which races a timer,
-- parks a waiter in cw.
local function wake(w, a, b, c)
  if type(w) == "thread" then
    wake_co(w, a, b, c)
  elseif w then
    w:wake(a, b, c)
  end
end


-- Each connection has one record for its whole life, pooled or not: st = { h = conn.c's
-- handle, owner = the socket object using it (nil while pooled), rw / ww / cw = who waits for
-- a read, a send, the connect (above), reused, key (its pool), address, port, pooled }. The
-- socket object a user holds is made anew each time the connection is handed out, so that one
-- kept after set_keepalive reads as closed and never sees the next user's bytes.

-- conn.c's events for the connection st
local function on_event(st, event, a, b, c)
  if event == "read" then
    local co = st.rw
    st.rw = nil
    wake(co, a, b, c)
  elseif event == "sent" then
    local co = st.ww
    st.ww = nil
    if a then
      wake(co, nil, a)
    else
      wake(co, true)
    end
  elseif event == "connect" or event == "handshake" then -- "handshake": the TLS layer's
    local co = st.cw
    st.cw = nil
    wake(co, a)
  elseif event == "close" then
    if st.pooled then
      pool.forget(st)
    end
    local rw, ww, cw, owner = st.rw, st.ww, st.cw, st.owner
    st.rw, st.ww, st.cw, st.owner = nil, nil, nil, nil
    wake(rw, nil, "closed")
    wake(ww, nil, "closed")
    wake(cw, "closed")
    if owner then
      owner._h = nil
      owner:emit("close")
    end
  end
end


-- a new connection's record and handle (not connected)
local function new_conn(key)
  local st = { reused = 0, key = key, h = false, owner = false, rw = false, ww = false, cw = false,
    address = false, port = false, pooled = false, sms = -1, rms = -1 } -- every field: no rehash as they are set
  st.h = core.conn_new(function(event, a, b, c)
    on_event(st, event, a, b, c)
  end)
  return st
end


-- the send and read timeouts of the connection st: conn.c is told only when they change (st.sms,
-- st.rms: what it has), as a client that sets the same ones for every read is the common case
local function apply_timeouts(st, send_ms, read_ms)
  if st.sms ~= send_ms or st.rms ~= read_ms then
    st.h:set_timeouts(send_ms, read_ms) -- raises on a value out of range: nothing is kept then
    st.sms, st.rms = send_ms, read_ms
  end
end


-- a socket object for the connection st (new, or taken from a pool), with the default
-- timeouts or send_ms and read_ms
local function sock_for(st, send_ms, read_ms)
  local self = setmetatable({ _h = st.h, _st = st, remote_address = st.address, remote_port = st.port }, sock_mt)
  st.owner = self
  apply_timeouts(st, send_ms or DEFAULT_TIMEOUT, read_ms or DEFAULT_TIMEOUT)
  return self
end


-- ---- names ----

-- resolve(name [, timeout_ms]) -> { address, ... } | nil, "name: reason" (waits unless name is
-- an IP address). A lookup on the thread pool cannot be stopped: past timeout_ms its answer is
-- not waited for (it goes nowhere when it comes).
local function resolve(name, timeout_ms)
  local w
  local r, err, code = core.resolve(name, function(list, e, c)
    if w then
      w:wake(list, e, c)
    end
  end)
  if r ~= true then
    return r, err, code -- an IP address: at once, even outside a handler
  end
  w = waiter("net.resolve") -- raises outside a handler (the lookup's answer then goes nowhere)
  if not timeout_ms then
    return w:wait()
  end
  local t = core.timer_new(function()
    w:wake(nil, name .. ": timeout")
  end)
  t:start(timeout_ms > 0 and timeout_ms or 0, 0)
  local list, e, c = w:wait()
  t:close()
  return list, e, c
end


function _M.resolve(name)
  if type(name) ~= "string" then
    error("net.resolve: name must be a string", 2)
  end
  return resolve(name)
end


-- ---- connecting ----

local function where(host, port)
  if host:find(":", 1, true) then
    return "[" .. host .. "]:" .. port
  end
  return host .. ":" .. port
end


-- one address: a new connection within ms -> st | nil, reason
local function connect_one(ip, port, ms, key)
  local st = new_conn(key)
  local ok, err = st.h:connect(ip, port, ms)
  if not ok then
    return nil, err
  end
  st.cw = current("net.connect")
  err = wait()
  if err then
    return nil, err
  end
  st.address, st.port = st.h:peername()
  return st
end


-- The TLS layer, once loaded, sets this: tls_layer.key(tls) -> the pool key's part for
-- opts.tls (true or { server_name =, verify =, ca_file = }), and
-- tls_layer.handshake(sock, tls, host, deadline_ms) -> sock | nil, reason: run on a new
-- connection (a pooled one has had its handshake already).
local tls_layer


function _M.set_tls_layer(layer)
  tls_layer = layer
end


-- the pool key of the plain connections of the pool named name (name .. " plain"), kept: the
-- same few names come with every connect
local plain_keys, nplain = {}, 0


local function plain_key(name)
  local key = plain_keys[name]
  if key == nil then
    key = #name .. ":" .. name .. " plain" -- the name's length first: no name ends like another's key
    if nplain >= 1024 then
      plain_keys, nplain = {}, 0
    end
    plain_keys[name] = key
    nplain = nplain + 1
  end
  return key
end


-- from_pool(name [, send_ms, read_ms]) -> a socket on an idle plain connection of the pool
-- named name, with those timeouts (default 60 s) | nil (none idle: connect then makes one).
-- connect(host, port, { pool = name }) without tls takes the same connections first; this is
-- that step alone, with no options table per call.
function _M.from_pool(name, send_ms, read_ms)
  current("net.connect")
  local st = pool.take(plain_key(name))
  if st then
    st.reused = st.reused + 1
    return sock_for(st, send_ms, read_ms)
  end
  return nil
end


-- connect(host, port, opts) -> sock | nil, "connect host:port: reason" (waits).
-- opts.timeout: ms for the whole connect (every address tried in turn within it, the TLS
-- handshake included); opts.tls: TLS settings (the TLS layer's); opts.pool: the pool's name
-- (default host:port plus the TLS settings).
function _M.connect(host, port, opts)
  current("net.connect")
  local timeout = opts and opts.timeout or DEFAULT_TIMEOUT
  -- net.connect and ngx.socket.tcp check their callers' arguments; what reaches here out of
  -- range is refused before a socket exists (conn.c's argument errors raise after it exists)
  if type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535
      or type(timeout) ~= "number" or not (timeout >= 0 and timeout <= 1e12) then
    return nil, "connect " .. where(host, port) .. ": invalid port or timeout"
  end
  local tls = opts and opts.tls
  if tls and not tls_layer then
    _M.set_tls_layer(require("luacluster.net.tls")) -- lazy: loaded at the first TLS connect
  end
  if tls and not tls_layer then
    return nil, "connect " .. where(host, port) .. ": TLS is not available in this build"
  end
  -- a pool's name never stands for its TLS settings: a named pool's key carries them too, so
  -- a connect with tls never takes a plain or an unverified connection parked under that name
  local name = opts and opts.pool
  local key = name and (tls and (#name .. ":" .. name .. " " .. tls_layer.key(tls)) or plain_key(name))
    or pool.key(host, port, tls and tls_layer.key(tls))
  local st = pool.take(key)
  if st then
    st.reused = st.reused + 1
    return sock_for(st)
  end
  local deadline = now() + timeout
  local addrs, err = resolve(host, timeout) -- the lookup counts in the connect's time
  if not addrs then
    if err and err:sub(1, #host + 2) == host .. ": " then
      err = err:sub(#host + 3)
    end
    return nil, "connect " .. where(host, port) .. ": " .. tostring(err)
  end
  for i = 1, #addrs do
    local left = deadline - now()
    if left <= 0 then
      err = "timeout"
      break
    end
    st, err = connect_one(addrs[i], port, left, key)
    if st then
      local sock = sock_for(st)
      if not tls then
        return sock
      end
      sock, err = tls_layer.handshake(sock, tls, host, deadline - now())
      if sock then
        return sock
      end
      st.h:close(true)
      return nil, "connect " .. where(host, port) .. ": " .. tostring(err)
    end
  end
  if #addrs > 1 then
    err = err .. " (" .. #addrs .. " addresses tried)"
  end
  return nil, "connect " .. where(host, port) .. ": " .. err
end


-- ---- reading ----

-- a read of the given kind: at once when the buffer settles it, else waits for conn.c's answer
local function recv(self, what, kind, n, delim, inclusive)
  local h = self._h
  if h == nil then
    return nil, "closed"
  end
  local r, e, p = h:recv(kind, n, delim, inclusive)
  if r ~= true then
    return r, e, p
  end
  if not in_handler() then
    h:cancel_read()
    current(what) -- raises: this call waits
  end
  self._st.rw = current(what)
  return wait()
end


-- read([n]): without n, what is buffered or the next bytes to come; with n, n bytes, or what
-- is left when the peer ends first. -> data | nil, "closed" | "timeout" | reason
function sock_mt:read(n)
  if n == nil then
    local d, e = recv(self, "sock:read", ANY, 0)
    return d, e
  end
  if type(n) ~= "number" or n < 1 then
    error("sock:read: n must be a number >= 1", 2)
  end
  local d, e, p = recv(self, "sock:read", EXACT, n)
  if d == nil and p and p ~= "" then
    return p
  end
  return d, e
end


-- read_line() -> the next line without "\n" or "\r\n" | nil, err, partial
function sock_mt:read_line()
  return recv(self, "sock:read_line", LINE, 0)
end


-- read_until(delim [, max [, inclusive]]) -> data, found | nil, err, partial.
-- Without max: the bytes before delim (delim consumed; handed out too when inclusive), found
-- true. With max: chunks of at most max bytes before delim, found false, until the chunk that
-- ends at delim (found true): OpenResty's receiveuntil iterator(size) is built on this.
function sock_mt:read_until(delim, max, inclusive)
  if type(delim) ~= "string" or delim == "" then
    error("sock:read_until: delim must be a non-empty string", 2)
  end
  if max ~= nil and (type(max) ~= "number" or max < 0) then
    error("sock:read_until: max must be a number >= 0", 2)
  end
  return recv(self, "sock:read_until", UNTIL, max or 0, delim, inclusive)
end


-- read_any(max) -> what is buffered or comes next, at most max bytes (receiveany)
function sock_mt:read_any(max)
  if type(max) ~= "number" or max < 1 then
    error("sock:read_any: max must be a number >= 1", 2)
  end
  local d, e = recv(self, "sock:read_any", ANY, max)
  return d, e
end


-- read_all([max]) -> everything until the peer ends | nil, err, partial | nil, "too large"
function sock_mt:read_all(max)
  return recv(self, "sock:read_all", ALL, max or 0)
end


-- bytes read and not yet taken by a read (and the buffer's allocation)
function sock_mt:buffered()
  local h = self._h
  if h == nil then
    return 0, 0
  end
  return h:buffered()
end


-- ---- writing ----

-- write(data) -> true | nil, err: waits (inside a handler) until the socket has taken it all,
-- send_ms at most ("timeout"); elsewhere it is queued
function sock_mt:write(data)
  local h = self._h
  if h == nil then
    return nil, "closed"
  end
  if type(data) ~= "string" then
    data = tostring(data)
  end
  local can_wait = in_handler()
  local ok, err = h:write(data, can_wait)
  if ok ~= false then
    return ok, err
  end
  if not can_wait then
    return true
  end
  self._st.ww = current("sock:write")
  return wait()
end


-- ---- timeouts, pools, close ----

-- set_timeouts(connect_ms, send_ms, read_ms): 0 is no limit (connect_ms is checked and not
-- used: this socket is connected already; the ngx layer keeps its own for a reconnect). The
-- values are not stored in the socket object: three more keys grew its table per request.
local function check_ms(v, i)
  if type(v) ~= "number" or v < 0 then
    error("sock:set_timeouts: argument " .. i .. " must be a number of ms >= 0", 3)
  end
end


function sock_mt:set_timeouts(connect_ms, send_ms, read_ms)
  check_ms(connect_ms, 1) -- no table and loop per call: the HTTP client sets them per read
  check_ms(send_ms, 2)
  check_ms(read_ms, 3)
  if self._h then
    apply_timeouts(self._st, send_ms, read_ms)
  end
end


-- set_keepalive([idle_ms [, pool_size]]) -> true | nil, err: the connection goes to its pool
-- (this socket object is then closed); refused, and nothing closed, while it holds unread bytes,
-- a read or a send is pending, or the peer has ended
function sock_mt:set_keepalive(idle_ms, pool_size)
  idle_ms = idle_ms or DEFAULT_IDLE
  pool_size = pool_size or DEFAULT_POOL_SIZE
  if type(idle_ms) ~= "number" or idle_ms < 0 then
    error("sock:set_keepalive: idle_ms must be a number >= 0", 2)
  end
  if type(pool_size) ~= "number" or pool_size < 1 then
    error("sock:set_keepalive: pool_size must be a number >= 1", 2)
  end
  local h = self._h
  if h == nil then
    return nil, "closed"
  end
  local ok, err = h:park(idle_ms)
  if not ok then
    return nil, err
  end
  self._h = nil
  local st = self._st
  st.owner = nil
  pool.put(st, pool_size)
  return true
end


-- tls_info() -> { protocol =, cipher =, session_reused =, server_name = } | nil (plain TCP)
function sock_mt:tls_info()
  local h = self._h
  return h and tls_layer and tls_layer.info(h) or nil
end


-- how many times this connection was taken from a pool (0: a new one)
function sock_mt:reused_times()
  return self._st.reused
end


-- close(): after what was written has left (close(true): at once)
function sock_mt:close(now_)
  local h = self._h
  if h then
    h:close(now_)
  end
end


function sock_mt:fileno()
  local h = self._h
  return h and h:fileno()
end


function sock_mt:nodelay(on)
  local h = self._h
  if h then
    h:nodelay(on ~= false)
  end
end


-- on("data", fn): a coroutine reads and emits each chunk, then "end" and the close
function sock_mt:on(event, fn)
  emitter.on(self, event, fn)
  if (event == "data" or event == "end") and not self._pumping then
    self._pumping = true
    coro.spawn(function()
      while true do
        local d, err = self:read()
        if d then
          self:emit("data", d)
        elseif err ~= "timeout" then
          if err ~= "closed" then
            self:emit("error", err)
          end
          self:emit("end")
          self:close()
          return
        end
      end
    end)
  end
  return self
end


-- the core handle to send for an outbound socket (ownership moves with it), or nil
function _M.raw(obj)
  if getmetatable(obj) == sock_mt then
    return obj._h or error("cannot send this socket: it is closed", 0)
  end
  return nil
end


return {
  raw = _M.raw,
  resolve = _M.resolve,
  connect = _M.connect,
  from_pool = _M.from_pool,
  set_tls_layer = _M.set_tls_layer,
  DEFAULT_TIMEOUT = DEFAULT_TIMEOUT,
}
