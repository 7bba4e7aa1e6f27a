-- bench/apps/rate_limiter_rr.lua: the rate limiter as examples/rate_limiter was before it moved
-- to a shared dictionary, kept as the other side of bench/run's `ratelimit` figure: every HTTP
-- request asks the master (cluster.worker:request) whether its client may go on; the master keeps
-- one fixed window of counts for the whole cluster, so the limit holds however the connections
-- are spread. The same answers and headers as the example's.
-- Run: build/luacluster -w 2 bench/apps/rate_limiter_rr.lua [limit] [window_ms]
local cluster = require("luacluster.cluster")
local process = require("luacluster.process")
local timer = require("luacluster.timer")

local limit = tonumber(process.argv[1]) or 10        -- requests per client ...
local window_ms = tonumber(process.argv[2]) or 1000  -- ... per window

if cluster.is_master then
  local windows = {} -- client -> { start = ms, count = n }

  -- the one place that counts: handlers in the master run one at a time, so no locking
  cluster.on("request", function(worker, msg)
    if type(msg) ~= "table" or msg.op ~= "take" then
      error("unknown request")
    end
    local now = timer.now()
    local w = windows[msg.client]
    if not w or now - w.start >= window_ms then
      w = { start = now, count = 0 }
      windows[msg.client] = w
    end
    local reset_ms = w.start + window_ms - now
    if w.count >= limit then
      return { allowed = false, remaining = 0, reset_ms = reset_ms }
    end
    w.count = w.count + 1
    return { allowed = true, remaining = limit - w.count, reset_ms = reset_ms }
  end)

  -- forget idle clients now and then
  timer.every(10 * window_ms, function()
    local now = timer.now()
    for client, w in pairs(windows) do
      if now - w.start >= window_ms then
        windows[client] = nil
      end
    end
  end)
end

if cluster.is_worker then
  local http = require("luacluster.http")
  local me = cluster.worker

  http.create_server(function(req, res)
    local client = req.headers["x-client"] or req.remote_address
    local verdict, err = me:request({ op = "take", client = client }, 1000)
    if not verdict then
      return 503, { ["Content-Type"] = "text/plain" }, "rate limiter unavailable: " .. tostring(err) .. "\n"
    end
    local headers = {
      ["Content-Type"] = "text/plain",
      ["X-RateLimit-Limit"] = tostring(limit),
      ["X-RateLimit-Remaining"] = tostring(verdict.remaining),
      ["X-RateLimit-Reset-Ms"] = tostring(math.ceil(verdict.reset_ms)),
    }
    if not verdict.allowed then
      headers["Retry-After"] = tostring(math.ceil(verdict.reset_ms / 1000))
      return 429, headers, "too many requests\n"
    end
    return 200, headers, string.format("hello %s from worker %d\n", client, me.id)
  end):listen()
end
