-- spec/upgrade_util.lua: what the upgrade specs (upgrade, upgrade_switch, newcomer19, review19)
-- share: the control commands of a running app and a stand-in for a new binary.
-- app: { port =, ctl = (its control socket's path) }
local H = require("helper")

local U = {}

-- `luacluster CMD --control app.ctl [extra]` -> its output (stderr too), exit code
function U.ctl(app, cmd, extra)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. app.ctl .. " " .. (extra or "") .. " 2>&1")
end

-- the pid of the master that answers the control socket, and status's output
function U.status_pid(app)
  local out = U.ctl(app, "status")
  return tonumber(out:match("master pid (%d+)")), out
end

-- GET path (default /): the body of a 200, else nil
function U.get(app, path)
  local body, status = H.curl("http://127.0.0.1:" .. app.port .. (path or "/"))
  return status == 200 and body or nil
end

-- stops the cluster by its control socket and waits until its master is gone: the master left
-- running by an upgrade is not the process the spec spawned
function U.stop(app)
  local pid = U.status_pid(app)
  U.ctl(app, "stop")
  if pid then
    H.wait_for(function() return not H.pid_alive(pid) end, 10000)
  end
end

-- an app with a cluster.job "tick" every every_ms whose run takes run_ms, counting in a shared
-- dictionary the runs going on at once: GET / answers "running N runs N overlaps N"
function U.job_app(every_ms, run_ms)
  return ([[
local http = require("luacluster.http")
local shared = require("luacluster.shared")
if cluster.is_master then
  cluster.setup({ shared_dicts = { j = "1m" } })
else
  http.create_server(function()
    return 200, string.format("running %%d runs %%d overlaps %%d\n", shared.j:get("running") or 0,
      shared.j:get("runs") or 0, shared.j:get("overlaps") or 0)
  end):listen()
end
cluster.job("tick", { every = %d }, function()
  if shared.j:incr("running", 1, 0) > 1 then shared.j:incr("overlaps", 1, 0) end
  timer.sleep(%d)
  shared.j:incr("running", -1)
  shared.j:incr("runs", 1, 0)
end)
]]):format(every_ms, run_ms)
end

-- a stand-in for a new binary: a shell script with body (exits 1, or starts the real one late)
function U.script(body)
  local path = H.tmpdir() .. "/luacluster-new"
  H.write_file(path, "#!/bin/sh\n" .. body .. "\n")
  H.sh("chmod +x " .. path)
  return path
end

return U
