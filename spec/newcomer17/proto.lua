-- trial (newcomer): what protocols = { "chat" } does with clients that offer nothing or something else
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
if cluster.is_master then cluster.setup{ workers = 1 } return end
http.create_server(function(req)
  local ws, err = req:websocket{ protocols = { "chat", "v2.chat" } }
  if not ws then print("refused:", err) return end
  ws:send("protocol=" .. tostring(ws.protocol))
  ws:close()
end):listen()
