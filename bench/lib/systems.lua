-- bench/lib/systems.lua: how each system under test is started on 127.0.0.1 on free ports:
-- luacluster (each mode), Node.js (cluster round robin, cluster shared socket, single process),
-- nginx (`return 200`, content_by_lua), and the C probes. Every start returns
--   { id=, proc=, port=, pid= (the master's), dir=, control= (luacluster) }
-- and Sys.stop(server) ends it and everything it started.
local S = require("sys")

local Sys = {}
local ctx -- set by Sys.init: { bin=, tmp=, probes= (dir of built probes), root= }
local seq = 0

function Sys.init(c) ctx = c end
function Sys.ctx() return ctx end

local function newdir(name)
  seq = seq + 1
  return S.mkdir(string.format("%s/%02d-%s", ctx.tmp, seq, name))
end

-- luacluster{ mode=, workers=, app=, env = { NAME = value }, args = { ... } } (app defaults to
-- bench/apps/hello.lua; env: added to its environment, e.g. the port of a Redis it talks to;
-- args: the script's arguments)
function Sys.luacluster(o)
  o = o or {}
  local mode, workers = o.mode or "dispatch", o.workers or 2
  local port = S.free_port(mode == "ports" and workers or 1)
  local dir = newdir("lc-" .. mode .. "-w" .. workers)
  local app = o.app or (ctx.root .. "/bench/apps/hello.lua")
  if o.copy_app then
    S.sh("cp '" .. app .. "' '" .. dir .. "/app.lua'")
    app = dir .. "/app.lua"
  end
  local control = dir .. "/control.sock"
  local t0 = S.now()
  local argv = { ctx.bin, "-w", tostring(workers), "-m", mode, "-p", tostring(port), "--control", control, app }
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
  local p = S.spawn(argv, { dir = dir, cwd = dir, env = o.env })
  return { id = "luacluster", proc = p, pid = p.pid, port = port, dir = dir, control = control, app = app, t0 = t0 }
end

-- node{ sched = "rr" | "none" | "single", workers=, script=, env= } (script: a peer taking
-- the arguments of bench/peers/node_hello.js, the default; env: added to its environment)
function Sys.node(o)
  o = o or {}
  local port = S.free_port()
  local dir = newdir("node-" .. (o.sched or "rr"))
  local t0 = S.now()
  local p = S.spawn({ ctx.node, o.script or (ctx.root .. "/bench/peers/node_hello.js"), tostring(port), tostring(o.workers or 2), o.sched or "rr" },
    { dir = dir, cwd = dir, env = o.env })
  return { id = "node", proc = p, pid = p.pid, port = port, dir = dir, t0 = t0 }
end

local NGINX_CONF = [[
%s
worker_processes %d;
pid %s/nginx.pid;
error_log %s/error.log warn;
%s
events { worker_connections %d; }
http {
  access_log off;
%s
  client_body_temp_path %s/tmp;
  proxy_temp_path %s/tmp;
  fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp;
  scgi_temp_path %s/tmp;
  server {
    listen 127.0.0.1:%d%s;
    default_type text/plain;
%s
  }
}
]]

local STATIC = [[
    location / { return 200 "Hello, World!\n"; }]]

local LUA = [[
    location / {
      content_by_lua_block {
        ngx.header["Content-Type"] = "text/plain"
        ngx.header["Content-Length"] = 14
        ngx.print("Hello, World!\n")
      }
    }]]

-- TechEmpower's plaintext and JSON tests (figures 5-7; bench/apps/techempower.lua is
-- luacluster's side): /json and every other path, with the Server (nginx's own), Date and
-- Content-Type headers their rules require. nginx static has no /json: a fixed string is not
-- the test (the message must be encoded per request). The TE configs lift nginx's limits that
-- would cost it in these tests: keepalive_requests (1000 by default: a reconnect every 1000
-- requests under wrk) and the connections and files of a worker (figure 7 holds 10,000).
local TE_STATIC = [[
    location / { return 200 "Hello, World!"; }]]

local TE_LUA = [[
    location = /json {
      content_by_lua_block {
        local body = encode({ message = "Hello, World!" })
        ngx.header["Content-Type"] = "application/json"
        ngx.header["Content-Length"] = #body
        ngx.print(body)
      }
    }
    location / {
      content_by_lua_block {
        ngx.header["Content-Type"] = "text/plain"
        ngx.header["Content-Length"] = 13
        ngx.print("Hello, World!")
      }
    }]]

local TE_HTTP = [[
  keepalive_requests 10000000;
  keepalive_timeout 75s;]]

-- as TechEmpower's OpenResty entry: cjson's encode looked up once, at startup
local TE_LUA_INIT = [[
  init_by_lua_block { encode = require("cjson").encode }]]

Sys.nginx_bin = "/usr/sbin/nginx"
Sys.nginx_lua_modules = { "/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so" }

function Sys.have_node() return ctx.node ~= nil end
function Sys.have_nginx() return io.open(Sys.nginx_bin) ~= nil end

-- whether a system description { needs_node=, needs_nginx=, needs_lua= } can run here
function Sys.available(s)
  if s.needs_node and not Sys.have_node() then return false end
  if (s.needs_nginx or s.needs_lua) and not Sys.have_nginx() then return false end
  if s.needs_lua and not Sys.have_nginx_lua() then return false end
  return true
end

-- the systems of a list that can run here and, when `only` is given, are in only[id]
function Sys.select(list, only)
  local out = {}
  for _, s in ipairs(list) do
    if Sys.available(s) and (not only or only[s.id]) then out[#out + 1] = s end
  end
  return out
end

function Sys.have_nginx_lua()
  for _, m in ipairs(Sys.nginx_lua_modules) do
    if not io.open(m) then return false end
  end
  return true
end

-- nginx{ lua = bool, workers=, te = bool, name=, http=, server= }: its own prefix, config and
-- pid file under the run's folder; te: the TechEmpower configs above instead of figure 1's
-- hello; http: lines added to the http block, server: the server block's body instead (figures
-- 8-10: OpenResty with a Redis driver, nginx proxy_pass and the upstream; name: the folder's);
-- listen: parameters of the listen directive (" reuseport"); nofile: connections a worker
-- must be able to hold (worker_connections and worker_rlimit_nofile)
function Sys.nginx(o)
  o = o or {}
  local port = S.free_port()
  local dir = newdir(o.name or ((o.lua and "nginx-lua" or "nginx") .. (o.te and "-te" or "")))
  S.mkdir(dir .. "/tmp")
  S.mkdir(dir .. "/logs")
  local modules = ""
  if o.lua then
    modules = "load_module " .. Sys.nginx_lua_modules[1] .. ";\nload_module " .. Sys.nginx_lua_modules[2] .. ";"
  end
  local main, conns, http, server = "", 4096, "", o.lua and LUA or STATIC
  if o.te then
    -- a worker's files: all it may hold, within what nginx may set (the hard limit, unless root)
    main, conns = string.format("worker_rlimit_nofile %d;", math.min(40000, select(2, S.nofile()))), 16384
    http = TE_HTTP .. (o.lua and ("\n" .. TE_LUA_INIT) or "")
    server = o.lua and TE_LUA or TE_STATIC
  end
  if o.nofile then -- room for o.nofile connections per worker (figures 15 and 16 hold 10,000)
    main = string.format("worker_rlimit_nofile %d;", math.min(o.nofile + 1024, select(2, S.nofile())))
    conns = o.nofile + 512
  end
  if o.http then http = http .. "\n" .. o.http end
  if o.server then server = o.server end
  local conf = string.format(NGINX_CONF, modules, o.workers or 2, dir, dir, main, conns, http, dir, dir, dir, dir, dir, port,
    o.listen or "", server)
  S.write_file(dir .. "/nginx.conf", conf)
  local t0 = S.now()
  local p = S.spawn({ Sys.nginx_bin, "-p", dir, "-c", dir .. "/nginx.conf", "-g", "daemon off;" }, { dir = dir, cwd = dir })
  return { id = "nginx", proc = p, pid = p.pid, port = port, dir = dir, t0 = t0 }
end

-- probe{ name = "uv_hello" | "uv_dispatch", workers= }
function Sys.probe(o)
  local port = S.free_port()
  local dir = newdir(o.name)
  local t0 = S.now()
  local p = S.spawn({ ctx.probes .. "/" .. o.name, tostring(port), tostring(o.workers or 2) }, { dir = dir, cwd = dir })
  return { id = o.name, proc = p, pid = p.pid, port = port, dir = dir, t0 = t0 }
end

-- ---- Redis (figures 8 and 10) ----

Sys.redis_bin = "/usr/bin/redis-server"
function Sys.have_redis() return io.open(Sys.redis_bin) ~= nil end

-- one Redis command over its own connection (RESP): -> the reply as sent ("+OK\r\n",
-- "$5\r\nhello\r\n", ...) | nil, err
function Sys.redis_cmd(port, args, timeout_ms)
  local parts = { "*" .. #args .. "\r\n" }
  for _, a in ipairs(args) do
    a = tostring(a)
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  local s = S.H.connect(port)
  if not s then return nil, "refused" end
  s:send(table.concat(parts))
  local data, why = s:read_until(function(d)
    local head = d:match("^[%+%-:][^\r]*\r\n")
    if head then return true end
    local len, rest = d:match("^%$(%-?%d+)\r\n()")
    if not len then return false end
    len = tonumber(len)
    return len < 0 or #d >= rest - 1 + len + 2
  end, timeout_ms or 5000)
  s:close()
  if why then return nil, why .. " after " .. string.format("%q", data:sub(1, 200)) end
  return data
end

-- redis{ }: redis-server on a free loopback port, no persistence; waits until it answers PING
function Sys.redis(o)
  o = o or {}
  local port = S.free_port()
  local dir = newdir("redis")
  local t0 = S.now()
  local p = S.spawn({ Sys.redis_bin, "--port", tostring(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--dir", dir, "--daemonize", "no" }, { dir = dir, cwd = dir })
  local srv = { id = "redis", proc = p, pid = p.pid, port = port, dir = dir, t0 = t0 }
  local deadline = S.now() + (o.timeout_ms or 10000)
  while S.now() < deadline do
    if Sys.redis_cmd(port, { "PING" }, 1000) == "+PONG\r\n" then return srv end
    if p:poll() then break end
    S.sleep(5)
  end
  local out = p:output()
  S.stop(p, 1000)
  error("redis-server is not answering on port " .. port .. ": " .. out:sub(-1000), 0)
end

-- Waits until the server answers 200; raises with its output if it does not.
function Sys.ready(srv, timeout_ms)
  local ms, err = S.wait_200(srv.port, timeout_ms or 15000, srv.t0)
  if not ms then
    local out = srv.proc:output()
    error(string.format("%s (pid %d) is not serving: %s\n%s", srv.id, srv.pid, err, out:sub(-2000)), 0)
  end
  return ms
end

function Sys.stop(srv, grace_ms)
  if srv and srv.proc then S.stop(srv.proc, grace_ms or 3000) end
end

return Sys
