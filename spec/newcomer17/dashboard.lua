-- trial 2 (newcomer): the master publishes a metric every second; WebSocket clients subscribe;
-- a worker keeps the last value for GET /last
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
local timer = require("luacluster.timer")
local cjson = require("cjson")

if cluster.is_master then
  cluster.setup{ workers = 2 }
  local n = 0
  timer.every(1000, function()
    n = n + 1
    local f = io.open("/proc/loadavg")
    local load = f and f:read("*l")
    if f then f:close() end
    pubsub.publish("metrics", cjson.encode{ n = n, t = os.time(), load = load })
  end)
  -- newcomer: does the master get its own publishes?
  local got = 0
  pubsub.subscribe("metrics", function(data) got = got + 1; if got % 5 == 1 then print("master saw", data) end end)
  return
end

local last, count = nil, 0
pubsub.subscribe("metrics", function(data, topic, kind) last = data; count = count + 1 end)

http.create_server(function(req, res)
  if req.path == "/last" then
    if not last then return 503, "no value yet\n" end
    return 200, { ["Content-Type"] = "application/json" }, last .. "\n"
  elseif req.path == "/count" then
    return 200, "worker " .. cluster.worker.id .. " got " .. count .. "\n"
  elseif req.path == "/live" then
    local ws, err = req:websocket{ idle_timeout = tonumber(req:args().idle) or 0 }
    if not ws then return end
    ws:subscribe("metrics")
    if last then ws:send(last) end   -- the current value first
  else
    return 404, "not found\n"
  end
end):listen()
