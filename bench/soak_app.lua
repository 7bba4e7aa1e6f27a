-- The app bench/soak.lua runs: every answer names the worker pid that made it (X-Worker-Pid),
-- so the soak client knows which worker each connection was on when it fails. Workers also
-- message the master and each other all the time, so the channels are soaked too.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local timer = require("luacluster.timer")
local process = require("luacluster.process")

if cluster.is_master then
  cluster.setup{
    workers = tonumber(os.getenv("SOAK_WORKERS")) or 2,
    drain_timeout = 5000,
    max_requests = tonumber(os.getenv("SOAK_MAX_REQUESTS")) or 0,
    heartbeat_interval = 500,
    heartbeat_timeout = 5000,
  }
  local seen = 0
  cluster.on("message", function(_, msg)
    seen = seen + 1
  end)
  timer.every(1000, function()
    cluster.broadcast({ op = "tick", seen = seen })
  end)
else
  local pid = tostring(process.pid)
  local big = string.rep("x", 65536)
  local headers = { ["X-Worker-Pid"] = pid, ["Content-Type"] = "text/plain" }
  http.create_server(function(req, res)
    if req.path == "/big" then
      return 200, headers, big
    elseif req.method == "POST" then
      return 200, headers, tostring(#req:body())
    elseif req.path == "/stream" then
      for k, v in pairs(headers) do res:header(k, v) end
      for i = 1, 8 do res:write(string.rep(tostring(i), 1000)) end
      return res:finish()
    end
    return 200, headers, "ok"
  end):listen()
  local n = 0
  cluster.worker:on("message", function() end)
  cluster.worker:on("error", function() end) -- a send_to a peer that was just killed
  timer.every(100, function()
    n = n + 1
    cluster.worker:send({ n = n, pad = string.rep("p", n % 200) })
    local peer = cluster.worker.id == 1 and 2 or 1
    cluster.worker:send_to(peer, { from = cluster.worker.id, n = n })
  end)
end
