-- bench/apps/ws_echo.lua: figure 14's luacluster side (bench/lib/fig_ws.lua). Every WebSocket
-- echoes each message back as it came (text or binary), through ws:on("message"): the handler
-- returns at once and the socket lives on its message handler. bench/apps/ws_bench.lua serves.
local cluster = require("luacluster.cluster")

if cluster.is_worker then
  require("ws_bench").serve(function(ws)
    ws:on("message", function(data, kind) ws:send(data, kind) end)
  end)
end
