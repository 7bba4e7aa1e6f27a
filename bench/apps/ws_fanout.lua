-- bench/apps/ws_fanout.lua: figure 15's luacluster side with ws:subscribe (bench/lib/fig_ws.lua).
-- Every WebSocket subscribes to "bench" and is told "ok"; GET /publish?DATA publishes DATA to
-- "bench" from the worker that got the request (pubsub: through the master to every worker
-- with subscribers, each writing it to its subscribed sockets). A build without ws:subscribe
-- answers "no ws:subscribe" instead of "ok", and the bench leaves this row out.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")

if cluster.is_worker then
  local text = { ["Content-Type"] = "text/plain" }
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
    if not ws.subscribe then
      ws:send("no ws:subscribe")
      ws:close(1011, "no ws:subscribe")
      return
    end
    ws:subscribe("bench")
    ws:send("ok")
  end):listen()
end
