-- luacluster.worker.jobs: a worker's side of cluster.job. The master sends a run as the
-- control op "job_run" { id, name, scheduled, attempt, claim }; the worker runs the job's
-- fn(run) (as its own top level defined it, lib/jobs.lua; run: name, scheduled in epoch
-- seconds, attempt 1 or 2, claim: the Redis key) in a coroutine, so it may wait, and answers
-- "job_done" { id, ok, err, ms }. A fn that raises is logged here with its traceback and the
-- worker goes on. A run holds the worker's drain (runtime.hold): a worker told to exit (a
-- reload, a stop) finishes the run first.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local jobs = require("luacluster.lib.jobs")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local side = require("luacluster.worker.side")

local hrtime = core.hrtime


local function traceback(err)
  return debug.traceback(tostring(err), 2)
end


local function on_run(msg)
  if type(msg) ~= "table" or type(msg.id) ~= "number" or type(msg.name) ~= "string" then
    return
  end
  coro.spawn(function()
    runtime.hold()
    local def = jobs.get(msg.name)
    local t0 = hrtime()
    local ok, err
    if not def then
      ok, err = false, "worker " .. side.worker.id .. " has no job named '" .. msg.name
        .. "' (call cluster.job at the top level of the script in the workers too)"
    else
      ok, err = xpcall(def.fn, traceback, { name = msg.name, scheduled = msg.scheduled, attempt = msg.attempt,
        claim = msg.claim })
    end
    local ms = hrtime() - t0
    if not ok then
      log.error("job '" .. msg.name .. "' failed: " .. tostring(err))
    end
    local ch = side.channel()
    if not ch:is_closed() then
      ch:control({ op = "job_done", id = msg.id, ok = ok, err = not ok and tostring(err):match("^[^\n]*") or nil,
        ms = ms })
    end
    runtime.release()
  end)
end


return {
  on_run = on_run,
}
