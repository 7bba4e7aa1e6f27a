-- A rate limiter shared by every worker's HTTP handler through a shared dictionary: each
-- request counts its client in `rate_limits` with one atomic incr, whose first count of a
-- window starts the window (init_ttl) and whose expiry ends it. The dictionary lives in memory
-- every worker maps, so the limit holds for the whole cluster however the connections are
-- spread, without a round trip to the master (bench/apps/rate_limiter_rr.lua is the version that
-- asks the master; bench/run --only ratelimit compares them).
-- Run: build/luacluster -w 4 examples/rate_limiter/app.lua [limit] [window_ms]
--      then: curl -i -H 'X-Client: alice' http://127.0.0.1:8080/
local cluster = require("luacluster.cluster")
local process = require("luacluster.process")

local limit = tonumber(process.argv[1]) or 10        -- requests per client ...
local window_ms = tonumber(process.argv[2]) or 1000  -- ... per window
-- a window of 0 would make each client's count an entry that never expires (init_ttl 0)
assert(limit >= 1 and window_ms >= 1, "rate_limiter: limit and window_ms must be >= 1")

if cluster.is_master then
  -- made by the master before any worker starts; every worker maps it (1 MiB: ~10,000 clients)
  cluster.setup({ shared_dicts = { rate_limits = "1m" } })
end

if cluster.is_worker then
  local http = require("luacluster.http")
  local counts = require("luacluster.shared").rate_limits
  local me = cluster.worker
  local window_s = window_ms / 1000

  http.create_server(function(req, res)
    local client = req.headers["x-client"] or req.remote_address
    -- the client's count in its window; a new window (count 1) expires window_s from now
    local count, err = counts:incr(client, 1, 0, window_s)
    if not count then
      return 503, { ["Content-Type"] = "text/plain" }, "rate limiter unavailable: " .. tostring(err) .. "\n"
    end
    local ttl = counts:ttl(client) -- seconds left in the window (nil if it ended just now)
    local reset_ms = ttl and ttl * 1000 or window_ms
    local headers = {
      ["Content-Type"] = "text/plain",
      ["X-RateLimit-Limit"] = tostring(limit),
      ["X-RateLimit-Remaining"] = tostring(math.max(0, limit - count)),
      ["X-RateLimit-Reset-Ms"] = tostring(math.ceil(reset_ms)),
    }
    if count > limit then
      headers["Retry-After"] = tostring(math.ceil(reset_ms / 1000))
      return 429, headers, "too many requests\n"
    end
    return 200, headers, string.format("hello %s from worker %d\n", client, me.id)
  end):listen()
end
