-- trial (newcomer): a receive()-style handler that raises mid-conversation: what does the client see?
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
if cluster.is_master then cluster.setup{ workers = 1 } return end
http.create_server(function(req)
  local ws = req:websocket{}
  if not ws then return end
  while true do
    local d = ws:receive()
    if not d then return end
    ws:send("echo " .. d)
    if d == "boom" then undefined_function() end
  end
end):listen()
