-- bench/apps/ws_idle.lua: figure 16's luacluster side (bench/lib/fig_ws.lua): memory per idle
-- WebSocket. A socket lives on its message handler (which ignores what comes: the bench
-- opens 10,000 and sends nothing on them), as Node's and nginx's peers do.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

if cluster.is_worker then
  http.create_server(function(req)
    if req.path == "/ping" then
      return 200, { ["Content-Type"] = "text/plain" }, "ok"
    end
    local ws = req:websocket()
    if not ws then return end
    ws:on("message", function() end)
  end):listen()
end
