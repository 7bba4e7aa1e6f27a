-- bench/apps/ws_fanout.lua: figure 15's luacluster side with ws:subscribe (bench/lib/fig_ws.lua).
-- Every WebSocket subscribes to "bench" and is told "ok"; GET /publish?DATA publishes DATA to
-- "bench" (bench/apps/ws_bench.lua): through the master to every worker with subscribers, each
-- writing it to its subscribed sockets. A build without ws:subscribe answers "no ws:subscribe"
-- instead of "ok", and the bench leaves this row out.
local cluster = require("luacluster.cluster")

if cluster.is_worker then
  require("ws_bench").serve(function(ws)
    if not ws.subscribe then
      ws:send("no ws:subscribe")
      ws:close(1011, "no ws:subscribe")
      return
    end
    ws:subscribe("bench")
    ws:send("ok")
  end)
end
