-- bench/apps/redis_get.lua: figure 8 of bench/run. Each request does one Redis GET through
-- Debian's lua-nginx-redis (`nginx.redis`, unmodified, on luacluster.ngx's cosockets) and
-- answers the value; the connection goes back to this worker's pool (set_keepalive). Its peer is
-- OpenResty as Debian has it (nginx + libnginx-mod-http-lua) running the same driver with the
-- same code (bench/lib/fig_redis.lua).
-- REDIS_PORT: the redis-server on 127.0.0.1; REDIS_KEY: the key read (default "message").
local ngx = require("luacluster.ngx") -- first: the driver uses the global ngx
local redis = require("nginx.redis")
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

local PORT = tonumber(os.getenv("REDIS_PORT") or "6379")
local KEY = os.getenv("REDIS_KEY") or "message"

if cluster.is_worker then
  local text = { ["Content-Type"] = "text/plain" }
  local null = ngx.null
  http.create_server(function()
    local red = redis:new()
    red:set_timeout(1000) -- ms
    local ok, err = red:connect("127.0.0.1", PORT)
    if not ok then
      return 502, text, "redis: " .. tostring(err) .. "\n"
    end
    local v, gerr = red:get(KEY)
    if not v or v == null then
      red:close()
      return 502, text, "redis GET: " .. tostring(gerr or "no value") .. "\n"
    end
    red:set_keepalive(10000, 100) -- back to this worker's pool
    return 200, text, v
  end):listen()
end
