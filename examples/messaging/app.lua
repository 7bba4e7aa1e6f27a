-- Master/worker messaging: every worker does some pretend jobs and reports its count to the
-- master; the master adds the counts up and broadcasts the running total to every worker;
-- when a worker is done it asks the master for the total with a request (a reply comes back).
-- Run: luacluster -w 3 examples/messaging/app.lua [rounds]
local cluster = require("luacluster.cluster")
local timer = require("luacluster.timer")
local process = require("luacluster.process")

local rounds = tonumber(process.argv[1]) or 5

if cluster.is_master then
  local counts = {}   -- worker id -> jobs it reported last
  local done = 0

  local function total()
    local sum = 0
    for _, n in pairs(counts) do
      sum = sum + n
    end
    return sum
  end

  local function live_workers()
    local n = 0
    for _ in pairs(cluster.workers) do
      n = n + 1
    end
    return n
  end

  cluster.on("message", function(worker, msg)
    if msg.jobs then
      counts[worker.id] = msg.jobs
      cluster.broadcast({ total = total(), from = worker.id })
    elseif msg.done then
      done = done + 1
      if done == live_workers() then
        print(string.format("all %d workers done: %d jobs", done, total()))
        cluster.stop()
      end
    end
  end)

  cluster.on("request", function(worker, msg)
    if msg == "total" then
      return total()
    end
  end)
else
  local me = cluster.worker
  local jobs, round = 0, 0

  me:on("message", function(msg)
    print(string.format("total so far: %d (worker %d reported)", msg.total, msg.from))
  end)

  local ticker
  ticker = timer.every(50, function()
    jobs = jobs + me.id -- pretend work: worker N does N jobs a round
    round = round + 1
    me:send({ jobs = jobs })
    if round == rounds then
      ticker:stop()
      local total, err = me:request("total") -- waits for the master's reply
      print(string.format("done with %d jobs; the cluster's total was %s", jobs, total or err))
      me:send({ done = true })
    end
  end)
end
