-- luacluster.ngx: the part of OpenResty's `ngx` API that libraries written for cosockets
-- use outside a request's own input and output, with OpenResty's (lua-nginx-module 0.10.26's)
-- arguments, return values and error strings, mapped onto luacluster's modules.
-- require("luacluster.ngx") returns `ngx` and sets the global `ngx` when there is none.
-- ngx.socket.tcp and ngx.socket.connect are luacluster.ngx.tcp's, ngx.socket.udp is
-- luacluster.ngx.udp's.
-- ngx.shared is luacluster.shared (the same table). Not here: the request API (ngx.req, ngx.var, ngx.say, ngx.ctx, ...): reading one of
-- those raises an error that says what to use instead.
local core = require("luacluster.core")
local runtime = require("luacluster.lib.runtime")
local shared = require("luacluster.shared")
local defaults = require("luacluster.lib.defaults")
local timer = require("luacluster.timer")
local ngx_log = require("luacluster.ngx.log")
local ngx_re = require("luacluster.ngx.re")
local ngx_timer = require("luacluster.ngx.timer")
local ngx_tcp = require("luacluster.ngx.tcp")
local ngx_udp = require("luacluster.ngx.udp")

local type, tostring, tonumber, select, error = type, tostring, tonumber, select, error
local fmt, floor = string.format, math.floor

local ngx = {}

-- lua-nginx-module 0.10.26 (OpenResty 1.25.3): the first release on PCRE2, whose ngx.re
-- error strings ("pcre2_compile() failed: ...") and `J` option this ngx.re reproduces
ngx.config = {
  subsystem = "http",
  debug = false,
  ngx_lua_version = 10026,
  nginx_version = 1025003,
}


function ngx.config.prefix()
  return (runtime.app_dir or ".") .. "/"
end


-- ---- constants ----

ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5
ngx.null = core.null -- the NULL light userdata, == cjson.null
for name, level in pairs(ngx_log.LEVELS) do
  ngx[name] = level
end
ngx.log = ngx_log.log


-- ---- time ----

-- ngx.now() is the wall clock read once per turn of the event loop (nginx's cached time), to
-- the millisecond; ngx.update_time() reads it again now.
local cached_turn, cached_now


local function update_time()
  cached_now = floor(core.time() * 1000) / 1000
  cached_turn = core.now()
end


function ngx.now()
  if cached_turn ~= core.now() then
    update_time()
  end
  return cached_now
end


function ngx.time()
  return floor(ngx.now())
end


function ngx.update_time()
  update_time()
end


-- ngx.sleep(seconds): waits (a timer of luacluster's), to the millisecond
function ngx.sleep(...)
  local n = select("#", ...)
  if n ~= 1 then
    error(fmt("attempt to pass %d arguments, but accepted 1", n), 2)
  end
  local s = ...
  local d = tonumber(s)
  if d == nil or (type(s) ~= "number" and type(s) ~= "string") then
    error(fmt("bad argument #1 to 'sleep' (number expected, got %s)", type(s)), 2)
  end
  local ms = d * 1000
  ms = ms >= 0 and floor(ms) or -floor(-ms)
  if ms < 0 then
    error(fmt('invalid sleep duration "%d"', ms), 2)
  end
  timer.sleep(ms)
end


-- ---- strings: escaping, base64, digests ----

-- nil is "", anything else but a string goes through tostring (lua-resty-core's rule)
local function str(s)
  if type(s) == "string" then
    return s
  end
  if not s then
    return ""
  end
  return tostring(s)
end


-- type: 0 a full URI, 1 arguments, 2 a URI component (the default), 3 html, 4 refresh,
-- 5 memcached, 6 mail_auth
function ngx.escape_uri(s, esc_type)
  if esc_type == nil then
    esc_type = 2
  elseif type(esc_type) ~= "number" then
    error('"type" is not a number', 2)
  elseif esc_type < 0 or esc_type > 6 then
    error('"type" ' .. tostring(esc_type) .. " out of range", 2)
  end
  return core.uri_escape(str(s), floor(esc_type))
end


function ngx.unescape_uri(s)
  return core.uri_unescape(str(s))
end


function ngx.encode_base64(s, no_padding)
  if no_padding and no_padding ~= true then
    error("bad no_padding: boolean expected, got " .. type(no_padding), 2)
  end
  return core.base64_encode(str(s), no_padding)
end


-- nil when s is not base64 (lua-resty-core: a string argument only)
function ngx.decode_base64(s)
  if type(s) ~= "string" then
    error("string argument only", 2)
  end
  return core.base64_decode(s)
end


function ngx.md5(s)
  return core.md5_hex(str(s))
end


function ngx.md5_bin(s)
  return core.md5_bin(str(s))
end


function ngx.sha1_bin(s)
  return core.sha1_bin(str(s))
end


-- ---- ngx.re ----

ngx.re = {
  match = ngx_re.match,
  find = ngx_re.find,
  gmatch = ngx_re.gmatch,
  sub = ngx_re.sub,
  gsub = ngx_re.gsub,
}


-- ---- the worker ----

local cluster -- luacluster.cluster, in a worker only


local function worker_id()
  if runtime.role ~= "worker" then
    return nil
  end
  cluster = cluster or require("luacluster.cluster") -- lazy: a worker's cluster.worker
  return cluster.worker.id - 1
end


ngx.worker = {
  -- 0-based: luacluster's worker 1 is nginx's worker 0; nil outside a worker (the master)
  id = worker_id,
  -- the worker count of the cluster's setup (or -w, or one per CPU)
  count = function()
    return defaults.workers(runtime.options)
  end,
  pid = function()
    return core.pid()
  end,
  exiting = ngx_timer.exiting,
}

ngx.timer = {
  at = ngx_timer.at,
  pending_count = ngx_timer.pending_count,
  running_count = ngx_timer.running_count,
}


-- ---- what is not here ----

ngx.socket = {
  tcp = ngx_tcp.tcp,
  connect = ngx_tcp.connect,
  udp = ngx_udp.udp,
}

-- the cluster's shared dictionaries: ngx.shared.NAME is require("luacluster.shared").NAME
ngx.shared = shared

local INSTEAD = {
  req = "a handler's req (req.method, req.path, req.headers, req:body())",
  var = "a handler's req (req.path, req.query, req.headers, req.remote_address)",
  header = "the headers a handler returns",
  say = "the body a handler returns (or res:write)",
  print = "the body a handler returns (or res:write)",
  flush = "res:write",
  exit = "return status, headers, body from the handler",
  status = "the status a handler returns",
  ctx = "a local of the handler (each request runs in its own coroutine)",
  location = "http.request (luacluster.http's client)",
  redirect = "return 302, { Location = url }",
  exec = "calling the other handler's function",
  thread = "luacluster's timer.after(0, fn) (every callback runs in its own coroutine)",
  get_phase = "nothing: luacluster has no phases",
  headers_sent = "the response a handler returns",
  eof = "the response a handler returns",
}

setmetatable(ngx, {
  __index = function(_, name)
    local instead = INSTEAD[name]
    if instead then
      error("ngx." .. name .. " is not provided by luacluster.ngx: use " .. instead, 2)
    end
    return nil
  end,
})


if rawget(_G, "ngx") == nil then
  rawset(_G, "ngx", ngx)
end

return ngx
