-- A worker's counters for `luacluster status` and the metrics, sent to the master when it
-- asks (one control frame per scrape, never per request): requests served and open
-- connections of its servers (HTTP and net), the process's HTTP counters kept in C (status classes,
-- duration buckets), its channel's message and byte counts, its access logs'.
local core = require("luacluster.core")
local runtime = require("luacluster.runtime")
local worker = require("luacluster.worker")

worker.control_ops.stats = function(msg)
  local requests, connections = 0, 0
  for server in pairs(runtime.drain_hooks) do
    if type(server) == "table" and server.stats then
      local s = server:stats()
      requests = requests + (s.requests or 0)
      connections = connections + (s.connections or 0)
    end
  end
  local ch = worker.channel()
  local http = core.http_stats()
  http.bounds = nil -- the master's binary has the same
  ch:control({
    op = "stats_result", seq = msg.seq, requests = requests, connections = connections,
    http = http, ipc = ch.handle:stats(), access_log = require("luacluster.access_log").stats(),
  })
end

return {}
