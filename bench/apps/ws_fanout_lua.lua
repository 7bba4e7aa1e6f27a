-- bench/apps/ws_fanout_lua.lua: figure 15's "luacluster (Lua loop)" row (bench/lib/fig_ws.lua):
-- the fan-out a user writes without ws:subscribe. Each worker keeps its WebSockets in a table,
-- subscribes once to "bench" with pubsub.subscribe and sends each publish to every socket in a
-- Lua loop. Every WebSocket is told "ok" once it is in the table; GET /publish?DATA publishes DATA.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")

if cluster.is_worker then
  local text = { ["Content-Type"] = "text/plain" }
  local sockets = {}
  pubsub.subscribe("bench", function(data)
    for ws in pairs(sockets) do
      ws:send(data)
    end
  end)
  http.create_server(function(req)
    if req.path == "/publish" then
      pubsub.publish("bench", req.query or "")
      return 200, text, "ok"
    end
    if req.path == "/ping" then
      return 200, text, "ok"
    end
    local ws = req:websocket()
    if not ws then return end
    sockets[ws] = true
    ws:on("close", function() sockets[ws] = nil end)
    ws:on("message", function() end)
    ws:send("ok")
  end):listen()
end
