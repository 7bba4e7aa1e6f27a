-- bench/apps/ws_fanout_lua.lua: figure 15's "luacluster (Lua loop)" row (bench/lib/fig_ws.lua):
-- the fan-out a user writes without ws:subscribe. Each worker keeps its WebSockets in a table,
-- subscribes once to "bench" with pubsub.subscribe and sends each publish to every socket in a
-- Lua loop. Every WebSocket is told "ok" once it is in the table; GET /publish?DATA publishes
-- DATA (bench/apps/ws_bench.lua).
local cluster = require("luacluster.cluster")
local pubsub = require("luacluster.pubsub")

if cluster.is_worker then
  local sockets = {}
  pubsub.subscribe("bench", function(data)
    for ws in pairs(sockets) do
      ws:send(data)
    end
  end)
  require("ws_bench").serve(function(ws)
    sockets[ws] = true
    ws:on("close", function() sockets[ws] = nil end)
    ws:on("message", function() end)
    ws:send("ok")
  end)
end
