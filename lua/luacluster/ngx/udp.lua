-- luacluster.ngx.udp: ngx.socket.udp() on runtime/udp.c, with lua-nginx-module's arguments,
-- return values and error strings: setpeername(host, port), send(data), receive([size]),
-- settimeout(ms), close(). A receive waits (up to the timeout, 60 s unless settimeout says
-- otherwise) for one datagram, cut to size (at most 65536); "timeout" leaves the socket usable.
-- A host name is looked up as the system does (/etc/hosts, then DNS) and one of its addresses
-- picked at random, as OpenResty does. A socket that is not closed closes when collected.
-- Not here: "unix:" datagram peers and bind().
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local args = require("luacluster.ngx.args")
local send_data = require("luacluster.ngx.send_data")

local raise, check_count = args.raise, args.check_count

local type, select, tonumber, tostring = type, select, tonumber, tostring
local floor, random = math.floor, math.random
local setmetatable, getmetatable, newproxy = setmetatable, getmetatable, newproxy
local fmt = string.format

local _M = {}

local MAX_SIZE = 65536
local DEFAULT_TIMEOUT = 60000 -- ms: lua_socket_read_timeout's default

local udp_mt = {}
udp_mt.__index = udp_mt


-- getaddrinfo's failures in the words of nginx's resolver ("example.test could not be
-- resolved (3: Host not found)")
local function not_resolved(host, code)
  if code == "EAI_NONAME" or code == "EAI_NODATA" then
    return fmt("%s could not be resolved (3: Host not found)", host)
  end
  return fmt("%s could not be resolved (2: Server failure)", host)
end


-- host -> an IP address, waiting for a lookup when it is a name | nil, err
local function address_of(host)
  if host:find("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true) then
    return host
  end
  local w = coro.waiter("udpsock:setpeername")
  local ok, err, code = core.resolve(host, function(list, _, code2)
    w:wake(list, code2)
  end)
  if not ok then
    return nil, not_resolved(host, code or err)
  end
  local list, lcode = w:wait()
  if not list then
    return nil, not_resolved(host, lcode)
  end
  return list[random(#list)]
end


local function close_handle(self)
  local h = self._h
  if h then
    self._h = nil
    h:close()
  end
end


-- the handle of a socket that has a peer and no receive waiting | nil, err
local function usable(self)
  local h = self._h
  if not h then
    return nil, "closed"
  end
  if self._waiting then
    return nil, "socket busy"
  end
  return h
end


-- the guard that closes a socket's handle when its object is collected
local function guard(h)
  local p = newproxy(true)
  getmetatable(p).__gc = function()
    h:close()
  end
  return p
end


-- setpeername(host, port) -> 1 | nil, err; a socket that had a peer is closed first
function udp_mt:setpeername(...)
  local n = select("#", ...) + 1
  check_count(n, 2, 3, "ngx.socket.udp setpeername: expecting 2 or 3 arguments (including the object), but seen %d")
  local host, port = ...
  host = args.host(host, "setpeername")
  if n == 3 then
    local p = tonumber(port)
    if p == nil then
      raise("bad argument #2 to 'setpeername' (number expected, got " .. type(port) .. ")")
    end
    port = p >= 0 and floor(p) or -floor(-p)
    if port < 0 or port > 65535 then
      return nil, fmt("bad port number: %d", port)
    end
  else
    port = 0
  end
  if self._waiting then
    return nil, "socket busy"
  end
  close_handle(self)
  if host:sub(1, 5) == "unix:" then
    return nil, "unix domain datagram sockets are not supported by luacluster.ngx"
  end
  local ip, err = address_of(host)
  if not ip then
    return nil, err
  end
  local h = core.udp_new()
  local ok
  ok, err = h:connect(ip, port)
  if not ok then
    h:close()
    return nil, err
  end
  self._h, self._guard = h, guard(h)
  return 1
end


-- send(data) -> 1 | nil, err (data: a string, a number, an array table of them, nested)
function udp_mt:send(...)
  check_count(select("#", ...) + 1, 2, 2, "expecting 2 arguments (including the object), but got %d")
  local h, err = usable(self)
  if not h then
    return nil, err
  end
  local ok
  ok, err = h:send(send_data.tostring((...), "send"))
  if not ok then
    return nil, err
  end
  return 1
end


-- receive([size]) -> datagram | nil, "timeout" | nil, err (waits)
function udp_mt:receive(...)
  local n = select("#", ...) + 1
  check_count(n, 1, 2, "expecting 1 or 2 arguments (including the object), but got %d")
  local size = MAX_SIZE
  if n == 2 and (...) ~= nil then
    size = tonumber((...))
    if size == nil then
      raise("bad argument #1 to 'receive' (number expected, got " .. type((...)) .. ")")
    end
    if size < 0 or size > MAX_SIZE then -- (size_t) of a negative size is larger than any
      size = MAX_SIZE
    end
  end
  local h, err = usable(self)
  if not h then
    return nil, err
  end
  local w = coro.waiter("udpsock:receive")
  local ok
  ok, err = h:recv(floor(size), self._timeout or DEFAULT_TIMEOUT, function(data, rerr)
    w:wake(data, rerr)
  end)
  if not ok then
    return nil, err
  end
  self._waiting = true
  local data
  data, err = w:wait()
  self._waiting = nil
  if data then
    return data
  end
  return nil, err
end


-- settimeout(ms): for the receives that follow; 0 or less (or nil): the default, 60 s
function udp_mt:settimeout(...)
  check_count(select("#", ...) + 1, 2, 2,
    "ngx.socket settimeout: expecting at least 2 arguments (including the object) but seen %d")
  local ms = tonumber((...)) or 0
  self._timeout = ms > 0 and floor(ms) or nil
end


-- close() -> 1 | nil, err
function udp_mt:close(...)
  check_count(select("#", ...) + 1, 1, 1, "expecting 1 argument (including the object) but seen %d")
  local h, err = usable(self)
  if not h then
    return nil, err
  end
  close_handle(self)
  self._guard = nil
  return 1
end


-- ngx.socket.udp() -> a socket with no peer yet
function _M.udp(...)
  check_count(select("#", ...), 0, 0, "expecting zero arguments, but got %d")
  return setmetatable({}, udp_mt)
end


return _M
