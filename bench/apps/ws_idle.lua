-- bench/apps/ws_idle.lua: figure 16's luacluster side (bench/lib/fig_ws.lua): memory per idle
-- WebSocket. A socket lives on its message handler, which ignores what comes (the bench opens
-- 10,000 and sends nothing on them), as Node's and nginx's peers hold theirs.
local cluster = require("luacluster.cluster")

if cluster.is_worker then
  require("ws_bench").serve(function(ws)
    ws:on("message", function() end)
  end)
end
