-- trial (newcomer): subscribe twice, on("message") and receive() together, unsubscribe, binary
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
if cluster.is_master then cluster.setup{ workers = 1 } return end
http.create_server(function(req)
  local ws = req:websocket{}
  if not ws then return end
  if req.path == "/twice" then
    ws:subscribe("x"); print("second subscribe ->", pcall(ws.subscribe, ws, "x"))
    ws:on("message", function(d, kind) pubsub.publish("x", d, kind) end)
  elseif req.path == "/both" then
    ws:on("message", function(d) print("on(message) got", d) end)
    print("receive ->", pcall(ws.receive, ws))
  elseif req.path == "/unsub" then
    ws:subscribe("x")
    ws:on("message", function(d) if d == "unsub" then print("unsubscribe ->", ws:unsubscribe("x")) else pubsub.publish("x", d) end end)
  elseif req.path == "/badtopic" then
    print("subscribe(nil) ->", pcall(ws.subscribe, ws, nil))
    print("subscribe('') ->", pcall(ws.subscribe, ws, ""))
    print("publish(1) ->", pcall(pubsub.publish, "x", 1))
    print("publish kind bogus ->", pcall(pubsub.publish, "x", "d", "bogus"))
    print("send kind text invalid utf8 ->", pcall(ws.send, ws, "\255\254"))
  end
end):listen()
