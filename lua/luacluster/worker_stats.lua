-- A worker's counters for `luacluster status`: requests served and open connections of its
-- servers, sent to the master when it asks.
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
  worker.channel():control({ op = "stats_result", seq = msg.seq, requests = requests, connections = connections })
end

return {}
