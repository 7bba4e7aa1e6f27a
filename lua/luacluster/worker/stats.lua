-- luacluster.worker.stats: a worker's counters for `luacluster status` and the metrics, sent
-- to the master when it asks (one control frame per scrape, never per request): requests
-- served and open connections of its servers (HTTP and net), the process's HTTP counters kept
-- in C (status classes, duration buckets), its channel's message and byte counts, its access
-- logs', its publish/subscribe counts (runtime/ps_route.c).
local core = require("luacluster.core")
local access_log = require("luacluster.lib.access_log")
local runtime = require("luacluster.lib.runtime")


-- requests served and connections open, summed over this process's servers
local function totals()
  local requests, connections = 0, 0
  for server in pairs(runtime.drain_hooks) do
    if type(server) == "table" and server.stats then
      local s = server:stats()
      requests = requests + (s.requests or 0)
      connections = connections + (s.connections or 0)
    end
  end
  return requests, connections
end


-- plugs op stats into the worker's side (worker/plugins.lua)
local function attach_worker(worker)
  worker.register_op("stats", function(msg)
    local requests, connections = totals()
    local ch = worker.channel()
    local http = core.http_stats()
    http.bounds = nil -- the master's binary has the same
    ch:control({
      op = "stats_result", seq = msg.seq, requests = requests, connections = connections,
      http = http, ipc = ch.handle:stats(), access_log = access_log.stats(), pubsub = core.ps_stats(),
    })
  end)
end


return {
  attach_worker = attach_worker,
  totals = totals,
}
