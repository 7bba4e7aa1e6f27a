-- bench/apps/ws_bench.lua: what the WebSocket apps of figures 14-16 (bench/apps/ws_*.lua) share:
-- GET /ping answers "ok" (the bench's readiness check), GET /publish?DATA publishes DATA to the
-- topic "bench" from the worker that got it, and every other request is a WebSocket upgrade,
-- the WebSocket handed to on_socket(ws).
local http = require("luacluster.http")

local M = {}

function M.serve(on_socket)
  local text = { ["Content-Type"] = "text/plain" }
  http.create_server(function(req)
    if req.path == "/ping" then
      return 200, text, "ok"
    end
    if req.path == "/publish" then
      require("luacluster.pubsub").publish("bench", req.query or "") -- lazy: only the fan-out apps publish
      return 200, text, "ok"
    end
    local ws = req:websocket()
    if ws then
      on_socket(ws)
    end
  end):listen()
end

return M
