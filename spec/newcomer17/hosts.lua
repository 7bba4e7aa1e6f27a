-- trial 3 (newcomer): two instances on one Redis; GET /say?msg=... publishes, /ws subscribes
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
local process = require("luacluster.process")

if cluster.is_master then
  cluster.setup{ workers = 2, pubsub = { redis = process.env.REDIS or "127.0.0.1:6379" } }
  return
end

http.create_server(function(req, res)
  if req.path == "/say" then
    pubsub.publish("news", (process.env.HOSTNAME_TAG or "?") .. ": " .. (req:args().msg or ""))
    return 200, "published\n"
  elseif req.path == "/ws" then
    local ws = req:websocket{}
    if not ws then return end
    ws:subscribe("news")
    ws:on("message", function(d) pubsub.publish("news", d) end)
  end
  return 404, "not found\n"
end):listen()
