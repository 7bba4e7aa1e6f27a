-- trial (newcomer): huge messages: publish 5 MiB and 70 MiB, ws:send 20 MiB
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
if cluster.is_master then cluster.setup{ workers = 2 } return end
http.create_server(function(req)
  if req.path == "/ws" then
    local ws = req:websocket{}
    if not ws then return end
    ws:subscribe("big")
    ws:on("message", function(d)
      local n = tonumber(d)
      if req:args().direct then
        print("ws:send", n, ws:send(string.rep("d", n)))
      else
        print("publish", n, pcall(pubsub.publish, "big", string.rep("p", n)))
      end
    end)
  end
end):listen()
