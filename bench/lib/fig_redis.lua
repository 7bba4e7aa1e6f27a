-- Figure 8: a handler that does one Redis GET through Debian's lua-nginx-redis (`nginx.redis`)
-- and answers the value, the connection back in the worker's pool after each request
-- (set_keepalive). luacluster (bench/apps/redis_get.lua, on luacluster.ngx) against OpenResty
-- as Debian has it: nginx + libnginx-mod-http-lua running the same driver with the same code
-- (content_by_lua, below). 2 workers each, one redis-server started here on a free loopback
-- port (no persistence), wrk -t1 -c64 keep-alive. Every system is started once, its answer read
-- back (200 and the value), and the runs rotated repeat after repeat (rounds.lua).
local Sys = require("systems")
local Rounds = require("rounds")

local F = {}

F.KEY, F.VALUE = "message", "Hello, World!"

-- OpenResty's side: the driver found on Debian's path, required once at startup (the module
-- table is then a package.loaded lookup), the same timeout and pool as the luacluster app
local OPENRESTY_HTTP = [[
  lua_package_path "/usr/share/lua/5.1/?.lua;;";
  init_by_lua_block { require("nginx.redis") }
  keepalive_requests 10000000;]]

local OPENRESTY_SERVER = [[
    location / {
      content_by_lua_block {
        local red = require("nginx.redis"):new()
        red:set_timeout(1000)
        local ok, err = red:connect("127.0.0.1", %d)
        if not ok then
          ngx.status = 502
          ngx.say("redis: ", err)
          return
        end
        local v, gerr = red:get("%s")
        if not v or v == ngx.null then
          red:close()
          ngx.status = 502
          ngx.say("redis GET: ", gerr or "no value")
          return
        end
        red:set_keepalive(10000, 100)
        ngx.header["Content-Type"] = "text/plain"
        ngx.header["Content-Length"] = #v
        ngx.print(v)
      }
    }]]

local function all_systems(cfg, redis_port)
  local app = Sys.ctx().root .. "/bench/apps/redis_get.lua"
  local env = { REDIS_PORT = tostring(redis_port), REDIS_KEY = F.KEY }
  local function lc(mode)
    return function() return Sys.luacluster{ mode = mode, app = app, env = env } end
  end
  local list = {
    { id = "lc_dispatch", label = "luacluster dispatch", kind = "luacluster", start = lc("dispatch") },
    { id = "lc_reuseport", label = "luacluster reuseport", kind = "luacluster", start = lc("reuseport") },
    { id = "openresty", label = "OpenResty (nginx + lua module), same driver", kind = "peer", needs_nginx = true, needs_lua = true,
      start = function()
        return Sys.nginx{ lua = true, name = "openresty-redis", http = OPENRESTY_HTTP,
          server = string.format(OPENRESTY_SERVER, redis_port, F.KEY) }
      end },
  }
  return Sys.select(list, cfg.redis_only)
end

F.systems = all_systems

-- -> data[id] = { label=, kind=, get = {rps...}, failed = { get = n } }
function F.run(cfg, R)
  if not Sys.have_redis() then error("redis-server is not installed (vendor/install-deps.sh): no Redis figure", 0) end
  local redis = Sys.redis()
  local ok, data = pcall(function()
    local set, serr = Sys.redis_cmd(redis.port, { "SET", F.KEY, F.VALUE })
    if set ~= "+OK\r\n" then error("redis SET: " .. tostring(set or serr), 0) end
    return Rounds.keepalive_figure(cfg, all_systems(cfg, redis.port), { what = "redis GET", key = "get", body = F.VALUE })
  end)
  Sys.stop(redis, 2000)
  if not ok then error(data, 0) end
  R.redis = data
  return data
end

return F
