-- trial (repro): at which file:line do argument errors of the WebSocket and pubsub calls point?
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
if cluster.is_master then cluster.setup{ workers = 1 } return end
http.create_server(function(req)
  if req.path == "/opt" then
    req:websocket{ idle_timeout = "5000" }   -- line 8
  elseif req.path == "/opt2" then
    local ws = req:websocket{ idle_timeout = "5000" }   -- line 10
    return ws
  elseif req.path == "/sub" then
    local ws = req:websocket{}
    ws:subscribe(nil)                        -- line 14
  elseif req.path == "/pub" then
    pubsub.publish("t", 1)                   -- line 16
    return 200, "x"
  end
end):listen()
