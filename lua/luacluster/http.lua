-- luacluster.http: HTTP/1.1 servers (and http.request, the client: http_client.lua). The
-- connection, parsing, limits and response framing are C (runtime/http_*.c); this module
-- makes the request and response objects a handler sees and runs each handler in a coroutine
-- of its own.
local core = require("luacluster.core")
local access_log = require("luacluster.lib.access_log")
local coro = require("luacluster.lib.coro")
local emitter = require("luacluster.lib.emitter")
local listen = require("luacluster.serve.listen")
local log = require("luacluster.lib.log")
local net = require("luacluster.net")
local proxy_addr = require("luacluster.lib.proxy_addr")
local serve_tls = require("luacluster.serve.tls")
local runtime = require("luacluster.lib.runtime")

local spawn_guarded = coro.spawn_guarded
-- a request's connection (_c, a light userdata) and seq (_s) go to these; each refuses a
-- request that is finished or a connection that is closed
local http_respond, http_write_head, http_write, http_finish = core.http_respond, core.http_write_head, core.http_write, core.http_finish
local http_on_drain, http_headers, http_peer, http_abort = core.http_on_drain, core.http_headers, core.http_peer, core.http_abort
local http_tls = core.http_tls
local type, setmetatable, rawset, tostring = type, setmetatable, rawset, tostring
local find, sub, lower, gsub, byte, char = string.find, string.sub, string.lower, string.gsub, string.byte, string.char
local concat = table.concat
local traceback = debug.traceback

local create_server

-- ---- requests ----

local req_methods = {}

local function split_target(req)
  local url = req.url
  local path, query
  local target = url
  if sub(url, 1, 1) ~= "/" then
    -- absolute-form (http://host/path) or authority-form / asterisk-form
    local rest = url:match("^%a[%w+.-]*://[^/?#]*(.*)$")
    if rest then
      target = rest ~= "" and rest or "/"
    end
  end
  local q = find(target, "?", 1, true)
  if q then
    path, query = sub(target, 1, q - 1), sub(target, q + 1)
  else
    path = target
  end
  local hash = find(path, "#", 1, true)
  if hash then
    path = sub(path, 1, hash - 1)
  end
  rawset(req, "path", path) -- split: path is set (query only if there is one)
  if query then
    rawset(req, "query", query)
  end
end

local req_mt = {
  __index = function(req, k)
    if k == "headers" then
      local h = http_headers(req._c, req._s) or {}
      rawset(req, "headers", h)
      return h
    elseif k == "path" then
      split_target(req)
      return rawget(req, "path")
    elseif k == "query" then
      -- no query: stays absent (nil), so only split once
      if rawget(req, "path") == nil then
        split_target(req)
      end
      return rawget(req, "query")
    elseif k == "remote_address" or k == "remote_port" then
      local ip, port = http_peer(req._c, req._s)
      if req._t and ip then -- trusted_proxies: the client behind them (see lib/proxy_addr.lua)
        ip = proxy_addr.resolve(req._t, ip, req.headers["x-forwarded-for"])
      end
      rawset(req, "remote_address", ip)
      rawset(req, "remote_port", port)
      return rawget(req, k)
    elseif k == "tls" then -- nil on a plain connection
      local protocol, cipher, server_name, reused = http_tls(req._c, req._s)
      if not protocol then
        return nil
      end
      local t = { protocol = protocol, cipher = cipher, server_name = server_name, session_reused = reused }
      rawset(req, "tls", t)
      return t
    elseif k == "version" then
      local v = req._m == 1 and "1.1" or "1.0"
      rawset(req, "version", v)
      return v
    end
    return req_methods[k]
  end,
}


-- req:websocket([opts]) -> ws | nil, err: luacluster.ws.socket. Not a tail call: accept's
-- errors (level 3) then name the app's line, not this file's.
function req_methods:websocket(opts)
  local ws, err = require("luacluster.ws.socket").accept(self, opts) -- lazy: apps without WebSocket never load it
  return ws, err
end


function req_methods:body()
  return self._b or ""
end


-- ngx.req.get_uri_args's decoding: "+" is a space, %XX a byte, and a malformed escape ("%zz",
-- "%4" at the end) stays as it is (nginx's ngx_http_lua_unescape_uri does the same)
local function unescape(s)
  if not find(s, "%", 1, true) then
    return find(s, "+", 1, true) and (gsub(s, "+", " ")) or s
  end
  local out, i, n = {}, 1, #s
  while i <= n do
    local j = find(s, "[%%+]", i)
    if not j then
      out[#out + 1] = sub(s, i)
      break
    end
    if j > i then
      out[#out + 1] = sub(s, i, j - 1)
    end
    if byte(s, j) == 43 then -- "+"
      out[#out + 1] = " "
      i = j + 1
    else
      local h, l = sub(s, j + 1, j + 1), sub(s, j + 2, j + 2)
      if find(h, "^%x$") then
        out[#out + 1] = find(l, "^%x$") and char(tonumber(h .. l, 16)) or "%" .. h .. l
        i = j + 3
      else
        out[#out + 1] = "%" .. h
        i = j + 2
      end
    end
  end
  return concat(out)
end


-- req:args([max]) -> { name = value | true | { values... } } [, "truncated"]: the query
-- string parsed as OpenResty's ngx.req.get_uri_args parses it. Names and values are decoded;
-- "name" alone gives true, "name=" gives ""; a repeated name gives an array of its values in
-- order; empty names are skipped. At most max (100; 0: no limit) arguments are read, and a
-- second result "truncated" says the query had more.
function req_methods:args(max)
  if max == nil then
    max = 100
  elseif type(max) ~= "number" or max < 0 or max % 1 ~= 0 then
    error("req:args: max must be a whole number >= 0", 2)
  end
  local args, count = {}, 0
  local q = self.query
  if q == nil or q == "" then
    return args
  end
  local pos, n = 1, #q
  while pos <= n do
    local amp = find(q, "&", pos, true) or n + 1
    if amp > pos then
      if max > 0 and count >= max then
        return args, "truncated"
      end
      local eq = find(q, "=", pos, true)
      local name, value
      if eq and eq < amp then
        name, value = unescape(sub(q, pos, eq - 1)), unescape(sub(q, eq + 1, amp - 1))
      else
        name, value = unescape(sub(q, pos, amp - 1)), true
      end
      if name ~= "" then
        count = count + 1
        local prev = args[name]
        if prev == nil then
          args[name] = value
        elseif type(prev) == "table" then
          prev[#prev + 1] = value
        else
          args[name] = { prev, value }
        end
      end
    end
    pos = amp + 1
  end
  return args
end


-- ---- responses ----

local res_methods = {}
local WRITE_HIGH_WATER = 1048576 -- MAX_QUEUED_OUTPUT of runtime/http.c
local res_mt = { __index = res_methods }


function res_methods:status(code)
  if type(code) ~= "number" or code < 100 or code > 999 or code % 1 ~= 0 then
    error("res:status: status must be a number from 100 to 999", 2)
  end
  self._code = code
  return self
end


function res_methods:header(name, value)
  if type(name) ~= "string" then
    error("res:header: name must be a string", 2)
  end
  if self._head_sent then
    error("res:header: the headers were already sent", 2)
  end
  local h = self._h
  if not h then
    h = {}
    self._h = h
  end
  if type(value) == "table" then
    for i = 1, #value do
      h[#h + 1] = name
      h[#h + 1] = tostring(value[i])
    end
  elseif value ~= nil then
    h[#h + 1] = name
    h[#h + 1] = tostring(value)
  end
  return self
end


-- Sends the head of a streamed response once. -> true | nil, err | false, mistake
local function send_head(self)
  if self._head_sent then
    return true
  end
  local ok, err = http_write_head(self._c, self._s, self._code, self._h)
  if ok ~= false then
    self._head_sent = true -- also when the connection is gone: a later write says so
  end
  return ok, err
end


function res_methods:write(chunk)
  if self._done then
    return nil, "the response is finished"
  end
  local ok, err = send_head(self)
  if ok == false then
    error("res:write: " .. err, 2)
  elseif not ok then
    return nil, err
  end
  if chunk == nil or chunk == "" then
    return true
  end
  local queued
  ok, queued = http_write(self._c, self._s, tostring(chunk))
  if ok == false then
    -- past the Content-Length the handler declared: nothing of this chunk was sent
    error("res:write: " .. queued, 2)
  end
  -- backpressure: past 1 MiB queued for a client that reads slowly (or not at all), the
  -- handler waits until half of it is sent (or the connection is gone: the next write says so)
  if ok and queued > WRITE_HIGH_WATER then
    local w = coro.waiter("res:write")
    if http_on_drain(self._c, self._s, function() w:wake() end) then
      w:wait()
    end
  end
  return ok, queued
end


-- res:finish's work: -> true | nil, err | false, mistake (the framing or a header is wrong:
-- nothing more was sent, the response is not finished)
local function finish(self, body)
  if self._done then
    return nil, "the response is finished"
  end
  if body ~= nil and type(body) ~= "string" then
    body = tostring(body)
  end
  local ok, err
  if self._head_sent then
    ok, err = http_finish(self._c, self._s, body)
    if ok and err then
      -- fewer body bytes than the declared Content-Length: the connection is closed
      log.warn("a response ended " .. err .. " bytes short of its Content-Length; its connection is closed")
      err = nil
    end
  else
    ok, err = http_respond(self._c, self._s, self._code, self._h, body)
  end
  if ok ~= false then
    self._done = true
  end
  return ok, err
end


function res_methods:finish(body)
  local ok, err = finish(self, body)
  if ok == false then
    error("res:finish: " .. err, 2)
  end
  return ok, err
end


local TEXT_PLAIN = { ["Content-Type"] = "text/plain" }

-- the runtime's own answer to a handler that failed: a 500 when nothing was sent yet, else
-- the connection is cut (the client sees a response that did not end)
local function fail(res)
  if res._done then
    return
  end
  res._done = true
  if res._head_sent then
    http_abort(res._c, res._s)
  else
    http_respond(res._c, res._s, 500, TEXT_PLAIN, "Internal Server Error\n")
  end
end


-- "file:line" where the handler is defined (its returned response has no line of its own)
local function where(fn)
  local info = debug.getinfo(fn, "S")
  return info and (info.short_src .. ":" .. tostring(info.linedefined)) or "?"
end


-- res:header for each of a handler's returned headers, when the response already has some:
-- -> nil | the error of a bad name
local function merge_headers(res, headers)
  local ok, err = pcall(function()
    for name, value in pairs(headers) do
      res:header(name, value)
    end
  end)
  if not ok then
    return err
  end
end


-- a handler's `return status, body` or `return status, headers, body`: -> nil | what does not
-- fit in the response (a framing mistake, a bad header, a status out of range); nothing of it
-- was sent then
local function shortcut(res, status, b, c)
  if status < 100 or status > 999 or status % 1 ~= 0 then
    return "status " .. tostring(status) .. " is not a number from 100 to 999"
  end
  local ok, err
  if type(b) == "table" then
    if res._h == nil and not res._head_sent then
      -- the C side reads a {name = value} map as it is: no copy into res._h
      if c ~= nil and type(c) ~= "string" then
        c = tostring(c)
      end
      ok, err = http_respond(res._c, res._s, status, b, c)
      if ok ~= false then
        res._done = true
      end
    else
      err = merge_headers(res, b)
      if err then
        return err
      end
      b = c
    end
  end
  if ok == nil and err == nil then
    res._code = status
    ok, err = finish(res, b)
  end
  if ok == false then
    return err
  end
end


-- A handler runs without a pcall of its own (see lib/coro.lua's call): when it raises, its
-- coroutine ends and coro calls failed(res, co, err). A WebSocket it had accepted is closed
-- with 1011 (its 101 is sent: no 500 can follow).
local function failed(res, co, err)
  log.error("request handler failed: " .. traceback(co, tostring(err)))
  local ws = rawget(res._req, "_ws")
  if ws then
    require("luacluster.ws.socket").handler_failed(ws) -- lazy: loaded by req:websocket already
    return
  end
  fail(res)
end


local function run(handler, req, res)
  local a, b, c = handler(req, res)
  local ws = rawget(req, "_ws")
  if ws then -- the handler accepted a WebSocket: it lives on only with a message handler or a subscription
    require("luacluster.ws.socket").handler_returned(ws) -- lazy: loaded by req:websocket already
    return
  end
  if a ~= nil and not res._done then
    if type(a) ~= "number" then
      log.error("request handler failed: " .. where(handler) .. ": returned " .. type(a)
        .. " where a status number was expected")
      fail(res)
      return
    end
    if res._head_sent then
      -- res:write sent the head already: the returned status cannot be sent, and saying
      -- nothing hid the mistake (the returned body still goes out, as res:finish would)
      log.error("request handler " .. where(handler) .. ": returned status " .. tostring(a)
        .. " after res:write had sent status " .. tostring(res._code) .. "; the returned status is ignored")
    end
    -- the handler has returned: its response is logged with the handler's location
    local err = shortcut(res, a, b, c)
    if err then
      log.error("request handler failed: " .. where(handler) .. ": its response: " .. tostring(err))
      fail(res)
    end
  end
end


-- ---- servers ----

local server_mt = {}
server_mt.__index = server_mt
emitter.mixin(server_mt)
listen.mixin(server_mt)


local OPTS = {
  max_header_size = true, max_body_size = true, header_timeout = true, keepalive_timeout = true,
  send_timeout = true, -- ms a client may take no byte of its answers before it is closed (60000)
  max_connections = true, trusted_proxies = true, access_log = true,
  tls = true, -- HTTPS (serve/tls.lua): { cert =, key = } or a list chosen by SNI
}


function create_server(handler, opts)
  if type(handler) ~= "function" then
    error("http.create_server: handler must be a function", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("http.create_server: opts must be a table", 2)
  end
  local trusted, tls_list
  for k, v in pairs(opts or {}) do
    if not OPTS[k] then
      error("http.create_server: unknown option '" .. tostring(k) .. "'", 2)
    end
    if k == "trusted_proxies" then
      local matcher, terr = proxy_addr.compile(v)
      if not matcher then
        error("http.create_server: " .. terr, 2)
      end
      trusted = matcher
    elseif k == "tls" then
      tls_list = serve_tls.check(v, "http.create_server")
    elseif k == "access_log" then
      if v ~= false and (type(v) ~= "string" or v == "") then
        error("http.create_server: access_log must be a file path, \"stderr\" or false", 2)
      end
    elseif type(v) ~= "number" or not (v >= 0) then -- NaN too
      error("http.create_server: " .. k .. " must be a number >= 0", 2)
    elseif k == "header_timeout" and v < 1 then
      -- there is no "no limit" here: the head's deadline bounds what a silent client (and a
      -- TLS handshake) costs; 0 made every connection expire at once, and so did 0.5 (the
      -- runtime counts whole ms: it became 0)
      error("http.create_server: header_timeout must be a number of ms > 0 (1 at least: the longest a request's head, or a TLS handshake, may take)", 2)
    end
  end
  local server = setmetatable({ _listeners = {}, _tls = tls_list, _tls_alpn = true }, server_mt)
  -- path and query come split from C for an origin-form target ("/..."); nil otherwise
  server._srv = core.http_server_new(function(conn, seq, method, url, minor, body, path, query)
    -- eight fields, so that the table's hash part is 8 slots, not 16: version comes lazily
    -- (req_mt.__index), the trusted proxies only when the server has them
    local req = setmetatable({ method = method, url = url, path = path, query = query,
      _c = conn, _s = seq, _b = body, _m = minor }, req_mt)
    if trusted then
      req._t = trusted
    end
    local res = setmetatable({ _c = conn, _s = seq, _code = 200, _req = req }, res_mt) -- (_req: failed)
    spawn_guarded(failed, res, run, handler, req, res)
  end, opts)
  if opts and opts.access_log then -- one combined-format line per response, written off the loop
    local alog, aerr = access_log.open(opts.access_log)
    if not alog then
      error("http.create_server: access_log: " .. aerr, 2)
    end
    server._srv:set_access_log(alog)
  end
  runtime.drain_hooks[server] = function()
    server:_drain()
  end
  return server
end


function server_mt:_take_listener(tcp)
  self._listeners[#self._listeners + 1] = tcp
  return self._srv:listen_on(tcp)
end


function server_mt:_set_tls(ctx)
  self._srv:set_tls(ctx)
end


function server_mt:_take_key(key, on)
  return self._srv:sink(key, on)
end


-- Serves a connection accepted elsewhere: a net socket received in a message (the hand-off
-- by hand: a master's net server accepts, a worker's HTTP server answers).
function server_mt:serve(sock)
  local raw = net.raw(sock)
  if type(raw) ~= "userdata" then
    error("server:serve: expected a socket", 2)
  end
  if self._tls and not self._tls_ctx then -- HTTPS without a listen: the certificates load here
    local ctx, err = serve_tls.load(self._tls, true)
    if not ctx then
      return nil, err
    end
    self._tls_ctx = ctx
    self._srv:set_tls(ctx)
  end
  return self._srv:serve(raw)
end


function server_mt:_closed_count()
  return self._srv:stats(true).closed
end


function server_mt:stats()
  return self._srv:stats()
end


-- done() once the last connection has closed (listen.mixin's _drain)
function server_mt:_when_idle(done)
  self._srv:drain(done)
end


-- server:close() is listen.mixin's; then the C server goes
function server_mt:_closed_all()
  self._srv:close()
end


return {
  create_server = create_server,
  request = require("luacluster.http_client").request, -- the client: http_client.lua
}
