-- Figure 9: a proxying handler. Every system answers each request with the body of a GET to
-- the same local upstream (nginx, 1 worker, `return 200 "Hello, World!"`) over keep-alive
-- connections it pools: luacluster with http.request (keepalive = true; bench/apps/proxy.lua),
-- nginx's own proxy_pass with an `upstream { keepalive 64; }` block (HTTP/1.1, Connection ""),
-- and a Node.js cluster (round robin) with http.request and a keep-alive Agent
-- (bench/peers/node_proxy.js). 2 workers each, wrk -t1 -c64 keep-alive. The upstream and the
-- proxies lift nginx's keepalive_requests (1000 by default: a reconnect every 1000 requests) so
-- that every pooled connection lives through the run. Every system is started once, its answer
-- read back, and the runs rotated repeat after repeat (rounds.lua).
local Sys = require("systems")
local Rounds = require("rounds")

local F = {}

F.BODY = "Hello, World!"

local UPSTREAM_HTTP = [[
  keepalive_requests 10000000;
  keepalive_timeout 75s;]]
local UPSTREAM_SERVER = [[
    location / { return 200 "Hello, World!"; }]]

local PROXY_HTTP = [[
  keepalive_requests 10000000;
  upstream bench_upstream {
    server 127.0.0.1:%d;
    keepalive 64;
    keepalive_requests 10000000;
  }]]
local PROXY_SERVER = [[
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }]]

local function all_systems(cfg, up_port)
  local root = Sys.ctx().root
  local app = root .. "/bench/apps/proxy.lua"
  local env = { UPSTREAM = "http://127.0.0.1:" .. up_port }
  local function lc(mode)
    return function() return Sys.luacluster{ mode = mode, app = app, env = env } end
  end
  local list = {
    { id = "lc_dispatch", label = "luacluster dispatch, http.request", kind = "luacluster", start = lc("dispatch") },
    { id = "lc_reuseport", label = "luacluster reuseport, http.request", kind = "luacluster", start = lc("reuseport") },
    { id = "nginx_proxy", label = "nginx proxy_pass, upstream keepalive", kind = "peer", needs_nginx = true,
      start = function()
        return Sys.nginx{ name = "nginx-proxy", http = string.format(PROXY_HTTP, up_port), server = PROXY_SERVER }
      end },
    { id = "node_proxy", label = "Node cluster rr, http.request + keep-alive Agent", kind = "peer", needs_node = true,
      start = function()
        return Sys.node{ sched = "rr", script = root .. "/bench/peers/node_proxy.js", env = { UPSTREAM_PORT = tostring(up_port) } }
      end },
  }
  return Sys.select(list, cfg.proxy_only)
end

F.systems = all_systems

-- -> data[id] = { label=, kind=, proxy = {rps...}, failed = { proxy = n } }
function F.run(cfg, R)
  if not Sys.have_nginx() then error("nginx is not installed: no upstream for the proxy figure", 0) end
  local up = Sys.nginx{ workers = 1, name = "upstream", http = UPSTREAM_HTTP, server = UPSTREAM_SERVER }
  local ok, data = pcall(function()
    Sys.ready(up)
    return Rounds.keepalive_figure(cfg, all_systems(cfg, up.port), { what = "proxy", key = "proxy", body = F.BODY })
  end)
  Sys.stop(up, 2000)
  if not ok then error(data, 0) end
  R.proxy = data
  return data
end

return F
