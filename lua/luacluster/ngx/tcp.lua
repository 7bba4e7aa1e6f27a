-- luacluster.ngx.tcp: OpenResty's TCP cosocket, ngx.socket.tcp(), on luacluster's outbound
-- sockets (net/outbound.lua over runtime/conn.c), with lua-nginx-module's arguments, return
-- values and error strings: connect (pools by "host:port" or opts.pool, opts.pool_size),
-- send, receive ("*l", "*a", a size), receiveuntil's iterator, receiveany, settimeout(s),
-- setkeepalive, getreusedtimes, close, setoption. Reads the buffer already satisfies return
-- without yielding. A read timeout is the only error that leaves the socket open; every other
-- failure closes it, as OpenResty's does. A socket that is neither closed nor kept alive closes
-- when it is collected.
-- backlog limits the connections of a pool in use at once (ngx/backlog.lua).
-- Not here: "unix:" peers, bind. sslhandshake runs net.connect's TLS client (net/tls.lua) on
-- the connected socket.
local args = require("luacluster.ngx.args")
local backlog = require("luacluster.ngx.backlog")
local outbound = require("luacluster.net.outbound")
local send_data = require("luacluster.ngx.send_data")
local net_tls = require("luacluster.net.tls")
outbound.set_tls_layer(net_tls) -- sslhandshake's sockets answer tls_info like net.connect's

local raise, check_count = args.raise, args.check_count

local type, select, tonumber, tostring = type, select, tonumber, tostring
local setmetatable, getmetatable, newproxy = setmetatable, getmetatable, newproxy
local getfenv, setfenv = debug.getfenv, debug.setfenv
local floor, fmt, find, gsub, sub = math.floor, string.format, string.find, string.gsub, string.sub

local _M = {}

local DEFAULT_TIMEOUT = 60000   -- ms: lua_socket_{connect,send,read}_timeout's defaults
local DEFAULT_IDLE = 60000      -- ms: lua_socket_keepalive_timeout's default
local DEFAULT_POOL_SIZE = 30    -- lua_socket_pool_size's default
-- what sslhandshake returns for a session when reused_session is not false: luacluster keeps
-- and resumes sessions itself (per pool, net/tls.lua), so passing it back changes nothing
local SESSION = setmetatable({}, { __tostring = function() return "ssl session" end })

-- pool key -> its size, fixed when the pool is made (connect's pool_size or the first
-- setkeepalive), as OpenResty's pools are
local pool_sizes = {}

local tcp_mt = {}
tcp_mt.__index = tcp_mt


-- a number as C's (int) cast of lua_tointeger makes it: toward zero
local function int(x)
  return x >= 0 and floor(x) or -floor(-x)
end


-- ---- the connection a cosocket holds ----

-- A cosocket's connection is self._box.sock (an outbound socket), so that its guard can close
-- it when the cosocket is collected without holding the cosocket itself. A cosocket has a
-- guard (self._guard) only while it holds a connection: a guard given back goes to a free
-- list, for the next connect of any cosocket, so that a request that connects, takes its
-- connection from the pool and puts it back (a driver's round trip) leaves no finalizer to run.
-- box.limit: the backlog limit (ngx/backlog.lua) whose place the connection holds, if any;
-- box.host, box.key: the host and the pool's name of the last connect.

-- the connection is no longer this cosocket's (closed, or put in its pool)
local function let_go(box)
  box.sock = nil
  local l = box.limit
  if l then
    box.limit = nil
    backlog.release(l)
  end
end


-- the guards share one metatable; a guard's box is its environment
local GUARD = newproxy(true)
getmetatable(GUARD).__gc = function(p)
  local box = getfenv(p)
  local sock = box.sock
  if sock then
    let_go(box)
    sock:close()
  end
end

local NO_BOX = { sock = false } -- the environment of a guard in the free list
local free_guards, nfree = {}, 0
local FREE_GUARDS_MAX = 256


-- a guard for the connection of box, from the free list or new
local function take_guard(box)
  local p
  if nfree > 0 then
    p = free_guards[nfree]
    free_guards[nfree] = nil
    nfree = nfree - 1
  else
    p = newproxy(GUARD)
  end
  setfenv(p, box)
  return p
end


-- the connection is no longer this cosocket's: its place in a backlog and its guard go
local function release(self)
  let_go(self._box)
  local p = self._guard
  if p then
    self._guard = false
    setfenv(p, NO_BOX)
    if nfree < FREE_GUARDS_MAX then
      nfree = nfree + 1
      free_guards[nfree] = p
    end
  end
end


-- the connection and nothing busy on it | nil, err (2 values, as OpenResty's checks).
-- reading: a read is to come (refused once the peer has ended the stream: self._eof).
local function usable(self, busy_reading, busy_writing, reading)
  local box = self._box
  local sock = box and box.sock
  if not sock or (reading and self._eof) then
    return nil, "closed"
  end
  if self._connecting then
    return nil, "socket busy connecting"
  end
  if busy_reading and self._reading then
    return nil, "socket busy reading"
  end
  if busy_writing and self._writing then
    return nil, "socket busy writing"
  end
  return sock
end


-- a failure that ends the connection (anything but a read timeout)
local function drop(self)
  local box = self._box
  local sock = box and box.sock
  if sock then
    release(self)
    sock:close()
  end
end


-- ---- connecting ----

-- outbound.connect's "connect host:port: reason" in nginx's words
local RESOLVE_FAILURES = {
  ["unknown node or service"] = "3: Host not found",
  ["no address"] = "3: Host not found",
  ["temporary failure"] = "2: Server failure",
  ["permanent failure"] = "2: Server failure",
  ["address family not supported"] = "2: Server failure",
}


local function connect_error(host, err)
  local reason = tostring(err):match("^connect .-: (.*)$") or tostring(err)
  reason = reason:gsub(" %(%d+ addresses tried%)$", "")
  local resolver = RESOLVE_FAILURES[reason]
  if resolver then
    return fmt("%s could not be resolved (%s)", host, resolver)
  end
  if reason == "not a host name" then
    return fmt('failed to parse host name "%s": invalid host', host)
  end
  return reason
end


-- the options table of connect (argument #arg of the method) -> pool, pool_size, backlog_size
local function connect_opts(t, arg)
  local pool, pool_size, backlog_size
  local v = t.pool_size
  if tonumber(v) then
    pool_size = int(tonumber(v))
    if pool_size <= 0 then
      raise(fmt('bad argument #%d to \'connect\' (bad "pool_size" option value: %d)', arg, pool_size))
    end
  elseif v ~= nil then
    raise(fmt('bad argument #%d to \'connect\' (bad "pool_size" option type: %s)', arg, type(v)))
  end
  v = t.backlog
  if tonumber(v) then
    backlog_size = int(tonumber(v))
    if backlog_size < 0 then
      raise(fmt('bad argument #%d to \'connect\' (bad "backlog" option value: %d)', arg, backlog_size))
    end
    pool_size = pool_size or DEFAULT_POOL_SIZE
  end
  v = t.pool
  if type(v) == "number" or type(v) == "string" then
    pool = tostring(v)
  elseif v ~= nil then
    raise(fmt('bad argument #%d to \'connect\' (bad "pool" option type: %s)', arg, type(v)))
  end
  return pool, pool_size, backlog_size
end


-- the default pool name of host and port, "host:port": kept per host and port, as the same
-- few come with every connect (emptied past 1024)
local default_keys, ndefault = {}, 0


local function default_key(host, port)
  if port ~= port then -- NaN: no table key
    return host .. ":" .. tostring(port)
  end
  local ports = default_keys[host]
  local key = ports and ports[port]
  if key == nil then
    key = host .. ":" .. tostring(port)
    if ndefault >= 1024 then
      default_keys, ndefault = {}, 0
    end
    if not default_keys[host] then
      default_keys[host] = {}
    end
    default_keys[host][port] = key
    ndefault = ndefault + 1
  end
  return key
end


-- connect(host, port [, opts]) | connect("unix:/path" [, opts]) -> 1 | nil, err (waits).
-- A connection this socket held is closed first. opts.pool names the pool (default
-- "host:port"); opts.pool_size sizes it when it is made; with opts.backlog, at most pool_size
-- connections of the pool are in use at once and backlog connects wait for one (backlog.lua).
-- (The methods that a driver calls for every request take their arguments as varargs only to
-- count them, as OpenResty's checks do, and hand them on to a function of fixed arguments: the
-- JIT starts no trace at a vararg function, so a method's whole body ran interpreted when it
-- was called from interpreted code, which every call after a wait is.)
-- n: the count of arguments, the object included; last: the last one
local function connect(self, n, host, port, last)
  check_count(n, 2, 4, "ngx.socket connect: expecting 2, 3, or 4 arguments (including the object), but seen %d")
  host = args.host(host, "connect")
  local pool, pool_size, backlog_size
  if type(last) == "table" then
    pool, pool_size, backlog_size = connect_opts(last, n - 1)
    n = n - 1
  end
  if n == 4 then
    n = 3
  end
  local key
  if n == 3 and tonumber(port) then
    key = pool or default_key(host, port)
    port = int(tonumber(port))
    if port < 0 or port > 65535 then
      return nil, fmt("bad port number: %d", port)
    end
  elseif host:sub(1, 5):lower() == "unix:" then
    return nil, "unix domain sockets are not supported by luacluster.ngx"
  else
    return nil, "missing the port number"
  end
  if self._connecting then
    return nil, "socket busy connecting"
  end
  if self._reading then
    return nil, "socket busy reading"
  end
  if self._writing then
    return nil, "socket busy writing"
  end
  drop(self)
  if self._eof then -- (storing nil under an absent key would add it, and grow the table)
    self._eof = nil
  end
  local box = self._box
  if not box then
    box = { sock = false, limit = false, host = false, key = false } -- every field: no rehash
    self._box = box
  end
  if pool_size and not pool_sizes[key] then
    pool_sizes[key] = pool_size
  end
  box.key = key
  if port == 0 then
    return nil, "connection refused"
  end
  self._connecting = true
  local limit = backlog.limit(key, pool_sizes[key], backlog_size)
  if limit then
    local ok, err = backlog.acquire(limit, self._ct or DEFAULT_TIMEOUT)
    if not ok then
      self._connecting = nil
      return nil, err
    end
  end
  -- an idle connection of the pool first: no options table for the common case
  local sock, err = outbound.from_pool(key, self._st or DEFAULT_TIMEOUT, self._rt or DEFAULT_TIMEOUT)
  if not sock then
    sock, err = outbound.connect(host, port, { timeout = self._ct or DEFAULT_TIMEOUT, pool = key })
  end
  self._connecting = nil
  if not sock then
    if limit then
      backlog.release(limit)
    end
    return nil, connect_error(host, err)
  end
  self._box.limit = limit
  sock:set_timeouts(self._ct or DEFAULT_TIMEOUT, self._st or DEFAULT_TIMEOUT, self._rt or DEFAULT_TIMEOUT)
  if sock:reused_times() == 0 then
    sock:nodelay(true) -- lua_tcp_nodelay's default: on
  end
  if not self._guard then -- (none while no connection is held: drop above gave it back)
    self._guard = take_guard(self._box)
  end
  self._box.sock = sock
  self._box.host = host
  return 1
end


function tcp_mt:connect(...)
  local n = select("#", ...) + 1
  local host, port = ...
  return connect(self, n, host, port, n >= 2 and select(n - 1, ...) or nil)
end


-- sslhandshake(reused_session, server_name, ssl_verify, send_status_req) -> session | true |
-- nil, err. ssl_verify true verifies the peer's certificate against the system's CA store and
-- the name (OpenResty's lua_ssl_trusted_certificate is not there); false or nil does not, as
-- OpenResty's default. A connection taken from a pool that already speaks TLS returns at once.
-- send_status_req (OCSP stapling) is accepted and not acted on.
function tcp_mt:sslhandshake(...)
  local extra = select("#", ...) - 4
  if extra > 0 then
    raise("ngx.socket sslhandshake: expecting 1 ~ 5 arguments (including the object), but seen " .. (5 + extra))
  end
  if not self._box then
    raise("socket is never created nor connected")
  end
  local sock, err = usable(self, true, true)
  if not sock then
    return nil, err
  end
  local reused_session, server_name, ssl_verify = ...
  if server_name ~= nil and type(server_name) ~= "string" then
    raise("bad server name")
  end
  if sock:tls_info() == nil then
    local ms = self._ct or DEFAULT_TIMEOUT
    self._connecting = true
    local ok
    ok, err = net_tls.handshake(sock, { verify = ssl_verify == true, server_name = server_name ~= "" and server_name or nil },
      self._box.host, ms)
    self._connecting = nil
    if not ok then
      drop(self)
      return nil, err
    end
  end
  if reused_session == false then
    return true
  end
  return SESSION
end


-- ---- sending ----

-- send(data) -> the count of bytes sent | nil, err (waits until the socket took them all)
local function send(self, data)
  local sock, err = usable(self, false, true)
  if not sock then
    return nil, err
  end
  data = send_data.tostring(data, "send")
  if #data == 0 then
    return 0
  end
  self._writing = true
  local ok
  ok, err = sock:write(data)
  self._writing = nil
  if not ok then
    drop(self)
    return nil, err
  end
  return #data
end


function tcp_mt:send(...)
  check_count(select("#", ...) + 1, 2, 2, "expecting 2 arguments (including the object), but got %d")
  return send(self, (...))
end


-- ---- receiving ----

-- what a read that timed out leaves in the buffer, taken: OpenResty hands it out as the partial
local function take_buffered(sock)
  local n = sock:buffered()
  if n > 0 then
    return sock:read(n) or ""
  end
  return ""
end


-- a read's answer in OpenResty's shape: data | nil, err, partial. The peer's end ("closed")
-- ends reading only: as in OpenResty, close() then still answers 1 (runtime/conn.c has closed
-- the socket itself, so a send after it is "closed"); any other error drops the connection.
local function answer(self, sock, data, err, partial)
  if data then
    return data
  end
  if err == "timeout" then
    return nil, "timeout", take_buffered(sock)
  end
  if err == "closed" then
    self._eof = true
  else
    drop(self)
  end
  return nil, err, partial or ""
end


-- one read under the busy flag: fn(sock, a, b, c) -> data | nil, err, partial
local function read(self, sock, fn, a, b, c)
  self._reading = true
  local data, err, partial = fn(sock, a, b, c)
  self._reading = nil
  return data, err, partial
end


-- a line without its LF and without any CR in it ("all CR characters are ignored by the
-- pattern", as lua-nginx-module's read_line filter drops them), the partial one's too
local function read_line(sock)
  local line, err, partial = sock:read_line()
  if line and find(line, "\r", 1, true) then
    line = gsub(line, "\r", "")
  elseif partial and find(partial, "\r", 1, true) then
    partial = gsub(partial, "\r", "")
  end
  return line, err, partial
end


local function read_all(sock)
  return sock:read_all()
end


-- n bytes; fewer means the peer ended first (net's read(n) hands those out as data)
local function read_exact(sock, n)
  local data, err = sock:read(n)
  if data and #data < n then
    return nil, "closed", data
  end
  return data, err
end


-- receive([pattern]) with "*l" (the default), "*a", or a size (a number or a numeric string)
-- -> data | nil, err, partial (waits)
local function receive(self, n, pat)
  local sock, err = usable(self, true, false, true)
  if not sock then
    return nil, err
  end
  local fn, size = read_line, nil
  if n == 2 then
    if tonumber(pat) then
      size = int(tonumber(pat))
      if size < 0 then
        raise("bad argument #1 to 'receive' (bad number argument)")
      end
      if size == 0 then
        return ""
      end
      fn = read_exact
    elseif type(pat) == "string" then
      if #pat ~= 2 or pat:sub(1, 1) ~= "*" then
        raise("bad argument #1 to 'receive' (bad pattern argument: " .. pat .. ")")
      end
      if pat == "*a" then
        fn = read_all
      elseif pat ~= "*l" then
        raise("bad argument #1 to 'receive' (bad pattern argument)")
      end
    else
      raise("bad argument #1 to 'receive' (bad argument)")
    end
  end
  return answer(self, sock, read(self, sock, fn, size))
end


function tcp_mt:receive(...)
  local n = select("#", ...) + 1
  check_count(n, 1, 2, "expecting 1 or 2 arguments (including the object), but got %d")
  return receive(self, n, (...))
end


local function read_any(sock, max)
  return sock:read_any(max)
end


-- receiveany(max) -> what has come, at most max bytes | nil, err, partial (waits)
function tcp_mt:receiveany(...)
  check_count(select("#", ...) + 1, 2, 2, "expecting 2 arguments (including the object), but got %d")
  local sock, err = usable(self, true, false, true)
  if not sock then
    return nil, err
  end
  local max = tonumber((...))
  if not max or int(max) <= 0 then
    raise("bad argument #1 to 'receiveany' (bad max argument)")
  end
  return answer(self, sock, read(self, sock, read_any, int(max)))
end


local function read_until(sock, pattern, size, inclusive)
  return sock:read_until(pattern, size, inclusive)
end


-- receiveuntil(pattern [, { inclusive = bool }]) -> iterator([size]) | nil, "pattern is empty".
-- iterator() -> the data before the pattern (the pattern consumed; handed out too when
-- inclusive). iterator(size) -> chunks of at most size bytes, the last one ending at the
-- pattern, then nil once (and the iterator starts over). Errors: nil, err, partial.
function tcp_mt:receiveuntil(...)
  local n = select("#", ...) + 1
  check_count(n, 2, 3, "expecting 2 or 3 arguments (including the object), but got %d")
  local pattern, opts = ...
  local inclusive = false
  if n == 3 then
    if type(opts) ~= "table" then
      raise("bad argument #2 to 'receiveuntil' (table expected, got " .. type(opts) .. ")")
    end
    local v = opts.inclusive
    if v ~= nil and type(v) ~= "boolean" then
      raise('bad "inclusive" option value type: ' .. type(v))
    end
    inclusive = v == true
  end
  if type(pattern) ~= "string" and type(pattern) ~= "number" then
    raise("bad argument #1 to 'receiveuntil' (string expected, got " .. type(pattern) .. ")")
  end
  pattern = tostring(pattern)
  if pattern == "" then
    return nil, "pattern is empty"
  end
  -- after iterator(size) handed out the chunk that ended at the pattern: nil once. held: the
  -- final chunk still to come, when the last one was exactly size bytes long: OpenResty hands
  -- those out before it looks at the pattern, and the pattern's chunk ("", or the pattern when
  -- inclusive) on the next call.
  local done, held = false, nil
  return function(...)
    local argc = select("#", ...)
    if argc > 1 then
      raise(fmt("expecting 0 or 1 argument, but seen %d", argc))
    end
    local size = 0
    if argc == 1 then
      local s = tonumber((...))
      if not s then
        raise("bad argument #1 to '?' (number expected, got " .. type((...)) .. ")")
      end
      size = int(s) > 0 and int(s) or 0
    end
    local sock, err = usable(self, true, false, true)
    if not sock then
      return nil, err
    end
    if done then
      done = false
      return nil, nil, nil
    end
    if held then
      local data = held
      held = nil
      done = true
      return data
    end
    local data, found, partial = read(self, sock, read_until, pattern, size > 0 and size or nil, inclusive)
    if data == nil then
      return answer(self, sock, nil, found, partial)
    end
    if size > 0 and found then
      local before = inclusive and #data - #pattern or #data
      if before == size then
        held = inclusive and pattern or ""
        return sub(data, 1, size)
      end
      done = true
    end
    return data
  end
end


-- ---- timeouts ----

-- a timeout argument: > 0 ms, or nil (the default) for 0 and anything that is not a number;
-- negative or 2^31 and more raise, as OpenResty's (ngx_int_t) >> 31 check does
local function timeout_arg(v)
  local ms = int(tonumber(v) or 0)
  if ms < 0 or ms >= 2147483648 then
    raise("bad timeout value")
  end
  return ms > 0 and ms or nil
end


local function apply_timeouts(self)
  local sock = self._box and self._box.sock
  if sock then
    sock:set_timeouts(self._ct or DEFAULT_TIMEOUT, self._st or DEFAULT_TIMEOUT, self._rt or DEFAULT_TIMEOUT)
  end
end


-- settimeout(ms): connect, send and read; 0 (or less than a ms) goes back to the defaults (60 s)
local function settimeout(self, v)
  local ms = timeout_arg(v)
  self._ct, self._st, self._rt = ms, ms, ms
  apply_timeouts(self)
end


function tcp_mt:settimeout(...)
  check_count(select("#", ...) + 1, 2, 2,
    "ngx.socket settimeout: expecting 2 arguments (including the object) but seen %d")
  return settimeout(self, (...))
end


-- settimeouts(connect_ms, send_ms, read_ms)
function tcp_mt:settimeouts(...)
  check_count(select("#", ...) + 1, 4, 4,
    "ngx.socket settimeouts: expecting 4 arguments (including the object) but seen %d")
  local c, s, r = ...
  self._ct, self._st, self._rt = timeout_arg(c), timeout_arg(s), timeout_arg(r)
  apply_timeouts(self)
end


-- ---- pools, close ----

local KEEPALIVE_ERRORS = {
  ["unread data in the buffer"] = "unread data in buffer",
  ["a read is pending"] = "socket busy reading",
  ["a send is pending"] = "socket busy writing",
}


-- an integer argument as luaL_checkinteger takes it (numbers and numeric strings)
local function integer_arg(v, arg, method)
  local x = tonumber(v)
  if not x then
    raise(fmt("bad argument #%d to '%s' (number expected, got %s)", arg, method, type(v)))
  end
  return int(x)
end


-- setkeepalive([timeout [, size]]) -> 1 | nil, err: the connection goes to its pool (idle
-- timeout ms, 0 for none; size: the pool's size when this makes the pool) and this socket is
-- closed. Refused while unread bytes wait ("unread data in buffer") or the peer has ended.
local function setkeepalive(self, n, timeout, size)
  timeout = timeout ~= nil and integer_arg(timeout, 1, "setkeepalive") or DEFAULT_IDLE
  local sock, err = usable(self, true, true)
  if not sock then
    return nil, err
  end
  local key = self._box.key
  local pool_size = pool_sizes[key]
  if not pool_size then -- the size argument counts (and is checked) only when it makes the pool
    size = size ~= nil and integer_arg(size, 2, "setkeepalive") or DEFAULT_POOL_SIZE
    if size <= 0 then
      raise(fmt('bad argument #%d to \'setkeepalive\' (bad "pool_size" option value: %d)', n - 1, size))
    end
    pool_size = size
    pool_sizes[key] = size
  end
  local ok
  ok, err = sock:set_keepalive(timeout > 0 and timeout or 0, pool_size)
  if not ok then
    return nil, KEEPALIVE_ERRORS[err] or err
  end
  release(self)
  return 1
end


function tcp_mt:setkeepalive(...)
  local n = select("#", ...) + 1
  check_count(n, 1, 3, "expecting 1 to 3 arguments (including the object), but got %d")
  local timeout, size = ...
  return setkeepalive(self, n, timeout, size)
end


-- getreusedtimes() -> how many times this connection came from a pool (0: a new one)
function tcp_mt:getreusedtimes(...)
  check_count(select("#", ...) + 1, 1, 1, "expecting 1 argument (including the object), but got %d")
  local sock = self._box and self._box.sock
  if not sock then
    return nil, "closed"
  end
  return sock:reused_times()
end


-- close() -> 1 | nil, err
function tcp_mt:close(...)
  check_count(select("#", ...) + 1, 1, 1, "expecting 1 argument (including the object) but seen %d")
  local sock, err = usable(self, true, true)
  if not sock then
    return nil, err
  end
  drop(self)
  return 1
end


-- ---- options ----

local sockopt -- luacluster.ngx.sockopt, loaded on first use


-- the connection for setoption / getoption | nil, err; raises for a socket never connected
local function option_sock(self, option)
  if not self._box then
    raise("socket is never created nor connected")
  end
  if option == nil then
    return nil, 'missing the "option" argument'
  end
  sockopt = sockopt or require("luacluster.ngx.sockopt") -- lazy: setoption's FFI, loaded when first used
  if not sockopt.OPTIONS[option] then
    return nil, "unsupported option " .. tostring(option)
  end
  local sock = self._box.sock
  if not sock then
    return nil, "closed"
  end
  return sock
end


-- setoption(option, value) -> true | nil, err: "keepalive", "reuseaddr", "tcp-nodelay",
-- "sndbuf", "rcvbuf", as lua-resty-core's (sndbuf and rcvbuf are the buffers they name:
-- lua-nginx-module 0.10.26 sets and reads each one's opposite)
function tcp_mt:setoption(option, value)
  if option ~= nil and value == nil and self._box then
    return nil, 'missing the "value" argument'
  end
  local sock, err = option_sock(self, option)
  if not sock then
    return nil, err
  end
  local v = value == true and 1 or value == false and 0 or tonumber(value)
  if v == nil then
    return nil, "bad option value"
  end
  if option == "tcp-nodelay" then
    sock:nodelay(v ~= 0)
    return true
  end
  return sockopt.set(sock:fileno(), option, int(v))
end


-- getoption(option) -> its value (a number) | nil, err
function tcp_mt:getoption(option)
  local sock, err = option_sock(self, option)
  if not sock then
    return nil, err
  end
  return sockopt.get(sock:fileno(), option)
end


-- ---- making sockets ----

-- ngx.socket.tcp() -> a socket with no connection yet
-- a cosocket with the fields a connect, a send and a read set (false until set): eight, so
-- that its hash part is made once, with 8 slots, not grown to 16 (_eof comes only with a
-- peer's end; the pool's name and the host are the box's)
local function new_tcp()
  return setmetatable({ _box = false, _guard = false, _connecting = false, _reading = false, _writing = false,
    _ct = false, _st = false, _rt = false }, tcp_mt)
end


function _M.tcp(...)
  check_count(select("#", ...), 0, 0, "expecting zero arguments, but got %d")
  return new_tcp()
end


-- ngx.socket.connect(host, port) | ngx.socket.connect("unix:/path") -> sock | nil, err
function _M.connect(...)
  local sock = new_tcp()
  local ok, err = sock:connect(...)
  if not ok then
    return nil, err
  end
  return sock
end


return _M
