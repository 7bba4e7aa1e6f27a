-- trial (repro): a handler whose req:websocket raised (bad option) or that returns nothing
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
if cluster.is_master then cluster.setup{ workers = 1, drain_timeout = 3000 } return end
http.create_server(function(req)
  if req.path == "/raise" then
    req:websocket{ idle_timeout = "5000" }          -- raises; not caught
  elseif req.path == "/caught" then
    pcall(req.websocket, req, { idle_timeout = "5000" })  -- caught, handler returns nothing
  elseif req.path == "/nothing" then
    return                                          -- a plain request, no answer given
  end
end):listen()
