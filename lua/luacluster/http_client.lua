-- luacluster.http_client: http.request(url [, opts]), an HTTP/1.1 client (luacluster.http
-- exports it). One exchange on an outbound socket (luacluster.net): the request goes out in
-- one write, the response head and body are read with runtime/http_client_lua.c's reader
-- (the server's strict head parser in response mode, its body framer), within one deadline
-- for the whole exchange. A connection goes back to its origin's pool only after a complete,
-- correctly framed response that allows keep-alive, with nothing unread behind it; after an
-- error, a timeout or a body delimited by the close it is closed.
local core = require("luacluster.core")
local net = require("luacluster.net")
local outbound -- luacluster.net.outbound, loaded at the first connect as net.lua loads it

local new_reader = core.http_response
local now = core.now
local type, tostring, pairs, next, error = type, tostring, pairs, next, error
local find, sub, lower, match, format = string.find, string.sub, string.lower, string.match, string.format
local concat = table.concat
local ceil = math.ceil

local DEFAULT_TIMEOUT = 60000          -- ms for the whole exchange
local DEFAULT_MAX_BODY = 16 * 1048576
local MAX_HEADER = 65536               -- a response head with its blank line
local DEFAULT_IDLE = 60000             -- ms a pooled connection may stay idle (nginx keeps 75 s)
local DEFAULT_POOL_SIZE = 128          -- idle connections kept per origin in a worker
-- https: the URL's TLS settings go down to net.connect's opts.tls (connect below)

local _M = {}


-- ---- the URL ----

-- "http://host[:port][/path][?query][#fragment]" -> scheme, host, port, target, authority
local function parse_url(url)
  local scheme, authority, rest = match(url, "^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then
    return nil, "invalid URL (expected http://host[:port]/path): " .. url
  end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported URL scheme '" .. scheme .. "' (http and https only)"
  end
  if find(authority, "@", 1, true) then
    return nil, "user information in the URL is not supported: " .. url
  end
  local host, port = match(authority, "^%[([%x:.]+)%]:?(%d*)$")
  if not host then
    host, port = match(authority, "^([%w.%-_~%%!$&'()*+,;=]+):?(%d*)$")
  end
  if not host then
    return nil, "invalid host in URL: " .. url
  end
  if port == "" then
    port = scheme == "https" and 443 or 80
  else
    port = tonumber(port)
    if port < 1 or port > 65535 then
      return nil, "invalid port in URL: " .. url
    end
  end
  local target = match(rest, "^([^#]*)")
  if target == "" or sub(target, 1, 1) == "?" then
    target = "/" .. target
  end
  if find(target, "[%c ]") then
    return nil, "invalid characters in the URL's path: " .. url
  end
  return scheme, host, port, target, authority
end


-- parse_url's answers for the URLs seen last (a proxy asks for the same few again and again):
-- url -> { scheme, host, port, target, authority, pool name }; emptied when it is full. A URL
-- longer than URL_CACHE_LEN is parsed each time: the cache would hold it (and its target) for
-- as long as it lives, 256 of a proxy's long client paths being megabytes per worker.
local URL_CACHE_MAX, URL_CACHE_LEN = 256, 2048
local url_cache, url_cached = {}, 0


-- the pool of an origin: its scheme, host and port, and for https the TLS settings
local function pool_name(scheme, host, port, tls)
  local name = scheme .. "://" .. host .. ":" .. port
  if scheme == "https" and type(tls) == "table" then
    -- lengths first: no two settings join into the same name
    local sn, ca = tostring(tls.server_name or ""), tostring(tls.ca_file or "")
    name = name .. " " .. #sn .. ":" .. sn .. " " .. tostring(tls.verify ~= false) .. " " .. #ca .. ":" .. ca
  end
  return name
end


-- parse_url through the cache -> the cache's entry | nil, err
local function parsed_url(url)
  local u = url_cache[url]
  if u then
    return u
  end
  local scheme, host, port, target, authority = parse_url(url)
  if not scheme then
    return nil, host
  end
  u = { scheme, host, port, target, authority, pool_name(scheme, host, port, nil) }
  if #url > URL_CACHE_LEN then
    return u
  end
  if url_cached >= URL_CACHE_MAX then
    url_cache, url_cached = {}, 0
  end
  url_cache[url] = u
  url_cached = url_cached + 1
  return u
end


-- ---- the request ----

local TOKEN = "^[%w!#$%%&'*+%-.^_`|~]+$"
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true }


-- (no loop over the names: a loop here kept the JIT from compiling the request's path)
local function check_number(opts, k)
  local v = opts[k]
  if v ~= nil and (type(v) ~= "number" or not (v >= 0)) then
    error("http.request: " .. k .. " must be a number >= 0", 4)
  end
end


-- a time in ms, as check_number and at most what a timer takes (conn.c's 1e12): past that,
-- timeout raised from inside net.connect and keepalive_timeout from set_keepalive, after the
-- whole answer had come
local function check_ms(opts, k)
  local v = opts[k]
  if v ~= nil and (type(v) ~= "number" or not (v >= 0)) then
    error("http.request: " .. k .. " must be a number >= 0", 4)
  elseif v ~= nil and v > 1e12 then
    error("http.request: " .. k .. " must be a number >= 0 and <= 1e12", 4)
  end
end


-- the options http.request knows: a misspelt one raises (it was ignored: `timout = 500`
-- waited the default 60 s)
local OPTS = {
  method = true, headers = true, body = true, timeout = true, tls = true, max_body_size = true,
  keepalive = true, keepalive_timeout = true, keepalive_pool = true,
}

-- raises at the first name in opts that is not an option. A tail call per name, not a loop:
-- a loop here made every trace through http.request abort ("inner loop in root trace").
local function check_names(opts, k)
  k = next(opts, k)
  if k == nil then
    return
  end
  if not OPTS[k] then
    error("http.request: unknown option " .. tostring(k) .. " (method, headers, body, timeout, tls,"
      .. " max_body_size, keepalive, keepalive_timeout, keepalive_pool)", 4)
  end
  return check_names(opts, k)
end


local NO_OPTS = {}


local function check_opts(opts)
  if opts == nil then
    return NO_OPTS -- read only
  end
  if type(opts) ~= "table" then
    error("http.request: opts must be a table", 3)
  end
  check_names(opts, nil)
  local m = opts.method
  if m ~= nil and (type(m) ~= "string" or not find(m, TOKEN)) then
    error("http.request: method must be a token such as \"GET\"", 3)
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then
    error("http.request: headers must be a table", 3)
  end
  local tls = opts.tls
  if tls ~= nil and type(tls) ~= "boolean" and type(tls) ~= "table" then
    error("http.request: tls must be true or a table (as for net.connect)", 3)
  end
  if opts.body ~= nil and type(opts.body) ~= "string" then
    error("http.request: body must be a string", 3)
  end
  check_ms(opts, "timeout")
  check_number(opts, "max_body_size")
  check_ms(opts, "keepalive_timeout")
  check_number(opts, "keepalive_pool")
  return opts
end


-- the request head and body as one string; raises on a header a request cannot carry
local function build_request(method, target, authority, opts, keepalive)
  local body = opts.body
  if opts.headers == nil and body == nil and method ~= "POST" and method ~= "PUT" and method ~= "PATCH" then
    -- the common GET: one concatenation, no table
    return method .. " " .. target .. " HTTP/1.1\r\nHost: " .. authority
      .. (keepalive and "\r\n\r\n" or "\r\nConnection: close\r\n\r\n")
  end
  local out = { method, " ", target, " HTTP/1.1\r\n" }
  local has_host, n = false, 4
  for name, value in pairs(opts.headers or {}) do
    if type(name) ~= "string" or not find(name, TOKEN) then
      error("http.request: invalid header name " .. format("%q", tostring(name)), 3)
    end
    local lname = lower(name)
    if FRAMING[lname] then
      error("http.request: " .. name .. " is set by http.request from opts.body", 3)
    end
    has_host = has_host or lname == "host"
    local values = type(value) == "table" and value or { value }
    for _, v in ipairs(values) do
      v = tostring(v)
      if find(v, "[%z\r\n]") then
        error("http.request: header " .. name .. " has a CR, LF or NUL in its value", 3)
      end
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = name, ": ", v, "\r\n"
      n = n + 4
    end
  end
  if not has_host then
    out[n + 1], out[n + 2], out[n + 3] = "Host: ", authority, "\r\n"
    n = n + 3
  end
  if body or method == "POST" or method == "PUT" or method == "PATCH" then
    out[n + 1], out[n + 2], out[n + 3] = "Content-Length: ", tostring(body and #body or 0), "\r\n"
    n = n + 3
  end
  if not keepalive then
    out[n + 1] = "Connection: close\r\n"
    n = n + 1
  end
  out[n + 1] = "\r\n"
  out[n + 2] = body
  return concat(out)
end


-- ---- the response ----

-- An exchange's state is passed as arguments (sock, deadline: now() + ms), not held in a
-- table: one less table per request.
-- read() -> data | nil, err ("timeout" past the deadline)
local function read(sock, deadline, n)
  local left = deadline - now()
  if left <= 0 then
    return nil, "timeout"
  end
  left = ceil(left) -- 0 would be no limit
  sock:set_timeouts(left, left, left)
  return sock:read(n)
end


local function closed_error(err, where)
  if err == "timeout" then
    return "timeout"
  end
  if err == "closed" then
    return "connection closed by the server " .. where
  end
  return "read failed " .. where .. ": " .. tostring(err)
end


-- reads the head (1xx skipped) -> status, headers, bytes after the head | nil, err, nothing
-- (nothing: not one byte came before the connection closed)
local function read_head_rest(sock, deadline, rr, buf)
  local interim = false
  while true do
    local len, status, headers = 0, nil, nil -- (no bytes: nothing to parse, no call)
    if buf ~= "" then
      len, status, headers = rr:head(buf, MAX_HEADER)
    end
    if len == nil then
      return nil, status
    end
    if len > 0 then
      if status >= 200 then
        return status, headers, sub(buf, len + 1)
      end
      if status == 101 then
        return nil, "unexpected 101 Switching Protocols (the request asked for no upgrade)"
      end
      buf = sub(buf, len + 1) -- an interim response (100 Continue, 103 Early Hints): skipped
      interim = true
      rr:reset()
    else
      local data, err = read(sock, deadline)
      if not data then
        local nothing = buf == "" and not interim
        return nil, closed_error(err, nothing and "before the response" or "in the response head"), nothing
      end
      buf = buf == "" and data or buf .. data
    end
  end
end


-- The common case first, with no loop (a loop entered on every request made the traces
-- through it abort, "inner loop in root trace"): the first bytes read hold a final head.
-- Anything else (a head in pieces, an interim response, an error) goes on in read_head_rest.
local function read_head(sock, deadline, rr)
  local data, err = read(sock, deadline)
  if not data then
    return nil, closed_error(err, "before the response"), true
  end
  local len, status, headers = rr:head(data, MAX_HEADER)
  if len and len > 0 and status >= 200 then
    return status, headers, sub(data, len + 1)
  end
  rr:reset() -- read_head_rest parses the same bytes again, from the start
  return read_head_rest(sock, deadline, rr, data)
end


-- reads the body framed as the head says -> body, leftover | nil, err
local function read_body(sock, deadline, rr, kind, length, rest)
  if kind == "none" then
    return "", rest
  end
  if kind == "length" then
    local have = #rest
    if have == length then -- (the common case: the body came whole with the head, and no more)
      return rest, ""
    elseif have > length then
      return sub(rest, 1, length), sub(rest, length + 1)
    end
    local data, err = read(sock, deadline, length - #rest)
    if not data or #data < length - #rest then
      if data or err == "closed" then
        return nil, format("connection closed by the server in the body (%d of %d bytes)", #rest + (data and #data or 0),
          length)
      end
      return nil, closed_error(err, "in the body")
    end
    return rest .. data, ""
  end
  local parts, np = {}, 0
  local data = rest
  while true do
    if data ~= "" then
      local piece, used, done = rr:body(data)
      if not piece then
        return nil, used
      end
      if piece ~= "" then
        np = np + 1
        parts[np] = piece
      end
      if done then
        return concat(parts), sub(data, used + 1)
      end
    end
    local err
    data, err = read(sock, deadline)
    if not data then
      if kind == "close" and err == "closed" then
        return concat(parts), ""
      end
      return nil, closed_error(err, kind == "chunked" and "in the chunked body" or "in the body")
    end
  end
end


-- ---- the exchange ----

-- Response readers for the next exchanges: a reader is a userdata of some 1.7 KB (the head's
-- field array), and one made per request was most of the bytes a request allocated. One
-- exchange uses a reader at a time and gives it back (reset) when it ends, error or not; a
-- reader an error raised past is left to the GC.
local READERS_MAX = 64
local readers, nreaders = {}, 0


local function take_reader()
  if nreaders == 0 then
    return new_reader()
  end
  local rr = readers[nreaders]
  readers[nreaders] = nil
  nreaders = nreaders - 1
  return rr
end


local function give_reader(rr)
  if nreaders < READERS_MAX then
    rr:reset()
    nreaders = nreaders + 1
    readers[nreaders] = rr
  end
end


local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }


-- one attempt on one connection -> res | nil, err, retry (a reused connection that the server
-- had closed before any byte of the answer: the request may go again on another)
-- (pool: the connection goes back to its pool, idle_ms and pool_size for set_keepalive)
local function exchange(sock, reused, deadline, request, method, max_body, pool, idle, pool_size)
  local rem = ceil(deadline - now())
  if rem <= 0 then
    sock:close(true)
    return nil, "timeout"
  end
  sock:set_timeouts(rem, rem, rem)
  local ok, werr = sock:write(request)
  if not ok then
    sock:close(true)
    return nil, werr == "timeout" and "timeout" or "write failed: " .. tostring(werr), reused and werr ~= "timeout"
  end
  local rr = take_reader()
  local status, headers, rest = read_head(sock, deadline, rr)
  if not status then
    sock:close(true)
    give_reader(rr)
    local nothing = rest
    return nil, headers, reused and nothing and headers ~= "timeout"
  end
  local kind, length = rr:framing(method == "HEAD", max_body)
  if not kind then
    sock:close(true)
    give_reader(rr)
    return nil, length
  end
  local body, left = read_body(sock, deadline, rr, kind, length, rest)
  if not body then
    sock:close(true)
    give_reader(rr)
    return nil, left
  end
  local again = pool and left == "" and rr:keepalive()
  give_reader(rr)
  if again then
    local pok = sock:set_keepalive(idle, pool_size)
    if not pok then
      sock:close()
    end
  else
    sock:close()
  end
  return { status = status, headers = headers, body = body }
end


-- -> sock, reused | nil, err
local function connect(deadline, pool, scheme, host, port, tls)
  local left = deadline - now()
  if left <= 0 then
    return nil, "timeout"
  end
  if pool and scheme == "http" then -- an idle connection of the origin first, as net.connect would
    outbound = outbound or require("luacluster.net.outbound") -- lazy: net.connect loads it too, at the first request
    local ms = ceil(left)
    local sock = outbound.from_pool(pool, ms, ms) -- the exchange's timeouts at once
    if sock then
      return sock, true
    end
  end
  local copts = { timeout = ceil(left), pool = pool, tls = scheme == "https" and (tls or true) or nil }
  local sock, err = net.connect(host, port, copts)
  if not sock then
    err = tostring(err)
    if err == "timeout" or sub(err, -9) == ": timeout" then
      return nil, "timeout"
    end
    return nil, err -- "connect host:port: reason"
  end
  return sock, sock:reused_times() > 0
end


-- http.request(url [, opts]) -> { status =, headers =, body = } | nil, err (waits)
function _M.request(url, opts)
  if type(url) ~= "string" then
    error("http.request: url must be a string", 2)
  end
  opts = check_opts(opts)
  local u, uerr = parsed_url(url)
  if not u then
    return nil, uerr
  end
  local scheme, host, port = u[1], u[2], u[3]
  local method = opts.method or "GET"
  local keepalive = opts.keepalive and true or false
  local request = build_request(method, u[4], u[5], opts, keepalive)
  local deadline = now() + (opts.timeout or DEFAULT_TIMEOUT)
  local pool, idle, pool_size -- the origin's pool (keepalive)
  if keepalive then
    local tls = opts.tls
    pool = (scheme == "https" and type(tls) == "table") and pool_name(scheme, host, port, tls) or u[6]
    idle = opts.keepalive_timeout or DEFAULT_IDLE
    pool_size = math.max(1, opts.keepalive_pool or DEFAULT_POOL_SIZE)
  end
  local max_body = opts.max_body_size or DEFAULT_MAX_BODY
  local res, err, retry
  for _ = 1, 3 do -- a pooled connection that the server closed meanwhile: another (at most twice)
    local sock, reused = connect(deadline, pool, scheme, host, port, opts.tls)
    if not sock then
      return nil, reused
    end
    res, err, retry = exchange(sock, reused, deadline, request, method, max_body, pool, idle, pool_size)
    if res or not (retry and IDEMPOTENT[method]) then
      return res, err
    end
  end
  return nil, err
end


_M.parse_url = parse_url


return {
  request = _M.request,
  parse_url = parse_url,
}
