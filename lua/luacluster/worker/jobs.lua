-- luacluster.worker.jobs: a worker's side of cluster.job. The master sends a run as the
-- control op "job_run" { id, name, scheduled, attempt, claim }; the worker runs the job's
-- fn(run) (as its own top level defined it, lib/jobs.lua; run: name, scheduled in epoch
-- seconds, attempt 1 or 2, claim: the Redis key) in a coroutine, so it may wait, and answers
-- "job_done" { id, ok, err, ms }. A fn that raises is logged here with its traceback and the
-- worker goes on. A run holds the worker's drain (runtime.hold): a worker told to exit (a
-- reload, a stop) finishes the run first. A worker whose master is gone (SIGKILLed) does not:
-- nobody supervises the run any more, a restarted master (or, with Redis, another host once
-- the lease expires) runs the job again, so the orphaned run lets go of the drain and ends
-- with the process, which would otherwise run it to its end alongside the new one.
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


-- the runs going on: id -> job name (each holds the drain until it ends or is abandoned)
local running = {}


-- the master's channel closed while runs go on: abandon them (see the top)
local function master_gone()
  for id, name in pairs(running) do
    running[id] = nil
    log.warn("job '" .. name .. "': the master is gone; abandoning this run (the worker exits)")
    runtime.release()
  end
end


-- a drain (reload, stop) waits for the runs going on: say which, once
local function draining()
  for _, name in pairs(running) do
    log.info("job '" .. name .. "': the worker drains once this run ends")
  end
end


local hooked = false


local function on_run(msg)
  if type(msg) ~= "table" or type(msg.id) ~= "number" or type(msg.name) ~= "string" then
    return
  end
  if not hooked then
    hooked = true
    side.add_hook("close", master_gone)
    runtime.drain_hooks[running] = draining
  end
  coro.spawn(function()
    runtime.hold()
    running[msg.id] = msg.name
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
    if running[msg.id] == nil then
      return -- abandoned: its hold was given back already
    end
    running[msg.id] = nil
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
