-- trial (newcomer mistake): a WebSocket server in the master, ws:subscribe there; publish at top level
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
local timer = require("luacluster.timer")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  pubsub.publish("t", "from master top level")      -- before the workers exist
  http.create_server(function(req)
    local ws, err = req:websocket{}
    if not ws then return 400, tostring(err) end
    local ok, e = pcall(ws.subscribe, ws, "t")
    print("master ws:subscribe ->", ok, e)
    ws:send("master here")
    ws:on("message", function(d) pubsub.publish("t", "master relays " .. d) end)
  end):listen(18434)                                   -- the master serves this one itself
  timer.every(1000, function() pubsub.publish("t", "tick") end)
else
  pubsub.subscribe("t", function(d) print("worker got", d) end)
end
