-- trial (newcomer): close this worker's WebSockets as soon as it drains, not at drain_timeout
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
if cluster.is_master then cluster.setup{ workers = 1 } return end
local open = {}
cluster.worker:on("disconnect", function()
  for ws in pairs(open) do ws:close(1001, "server restarting") end
end)
http.create_server(function(req)
  local ws = req:websocket{}
  if not ws then return end
  open[ws] = true
  ws:on("close", function() open[ws] = nil end)
  ws:on("message", function(d) ws:send(d) end)
end):listen()
