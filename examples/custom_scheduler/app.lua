-- A custom scheduling policy in plain Lua: smooth weighted round robin (nginx's upstream
-- algorithm) over the ready workers. Worker 1 gets WEIGHT1 connections (default 3) for every
-- one that each other worker gets; a worker that is draining or dead is never in `workers`.
-- Run:  build/luacluster -w 2 examples/custom_scheduler/app.lua
-- then: for i in 1 2 3 4 5 6 7 8; do curl -s http://127.0.0.1:8080/; done
--       (worker 1, 1, 2, 1, 1, 1, 2, 1)
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local process = require("luacluster.process")

if cluster.is_master then
  local weights = { [1] = tonumber(process.env.WEIGHT1) or 3 } -- the others weigh 1
  local current = {}                                            -- worker id -> running weight

  cluster.setup({
    -- called by the master for each new connection: `workers` is the array of ready workers
    -- (by id), `conn` has remote_address, remote_port and local_port; return one of `workers`
    scheduler = function(workers, conn)
      local total, best = 0, nil
      for _, w in ipairs(workers) do
        local weight = weights[w.id] or 1
        current[w.id] = (current[w.id] or 0) + weight
        total = total + weight
        if best == nil or current[w.id] > current[best.id] then
          best = w
        end
      end
      current[best.id] = current[best.id] - total
      return best
    end,
  })

  -- a policy that raises or returns something else is reported here (and round robin is used)
  cluster.on("error", function(err)
    io.stderr:write("cluster error: ", tostring(err), "\n")
  end)
else
  http.create_server(function(req, res)
    return 200, { ["Content-Type"] = "text/plain" }, "worker " .. cluster.worker.id .. "\n"
  end):listen()
end
