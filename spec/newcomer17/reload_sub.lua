-- trial (repro): does a master's pubsub.subscribe of the old code survive a reload?
local cluster = require("luacluster.cluster")
local pubsub = require("luacluster.pubsub")
local timer = require("luacluster.timer")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  local gen = cluster.keep("g", { n = 0 }); gen.n = gen.n + 1
  local mine = gen.n
  pubsub.subscribe("t", function(d) print("master subscriber of load " .. mine .. " got " .. d) end)
  timer.every(1000, function() pubsub.publish("t", "tick of load " .. mine) end)
else
  pubsub.subscribe("t", function(d) print("worker gen " .. cluster.worker.generation .. " got " .. d) end)
end
