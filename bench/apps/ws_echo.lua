-- bench/apps/ws_echo.lua: figure 14's luacluster side (bench/lib/fig_ws.lua). Every WebSocket
-- on any path echoes each message back as it came (text or binary), through ws:on("message"):
-- the handler returns at once and the socket lives on its message handler. GET /ping (no
-- upgrade) answers "ok" for the bench's readiness check.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

if cluster.is_worker then
  http.create_server(function(req)
    if req.path == "/ping" then
      return 200, { ["Content-Type"] = "text/plain" }, "ok"
    end
    local ws = req:websocket()
    if not ws then return end
    ws:on("message", function(data, kind) ws:send(data, kind) end)
  end):listen()
end
