-- luacluster.cluster: the cluster API. The same script runs in the master and in every
-- worker; this module gives each side its functions (master/core.lua, worker/side.lua) and raises a
-- clear error when a script calls one on the wrong side.
local core = require("luacluster.core")
local emitter = require("luacluster.lib.emitter")
local jobs = require("luacluster.lib.jobs")
local runtime = require("luacluster.lib.runtime")

local _M = {}

local role = runtime.role
_M.is_master = role == "master"
_M.is_worker = role == "worker"


function _M.cpu_count()
  return core.cpu_count()
end


-- cluster.job(name, { every = ms } | { cron = "m h dom mon dow" }, fn) at the script's top
-- level, in the master (its schedule, master/jobs.lua) and in the workers (fn, worker/jobs.lua)
function _M.job(name, spec, fn)
  jobs.define(name, spec, fn, _M.worker ~= nil and _M.worker.state == "starting")
end


local MASTER_ONLY = { "setup", "fork", "broadcast", "stop", "keep" }

if _M.is_master then
  local master = require("luacluster.master.core")
  emitter.mixin(_M)
  -- cluster.on(event, fn); cluster:on(event, fn) works too
  _M.on = function(a, b, c)
    if a == _M then
      a, b = b, c
    end
    -- during a reload the new code's handlers wait in the stage until the switch
    emitter.on(runtime.staging and runtime.staging.events or _M, a, b)
    return _M
  end
  for _, name in ipairs(MASTER_ONLY) do
    _M[name] = master[name]
  end
  _M.workers = master.workers
else
  for _, name in ipairs(MASTER_ONLY) do
    _M[name] = function()
      error("cluster." .. name .. " is only available in the master", 2)
    end
  end
  _M.on = function()
    error("cluster.on is only available in the master (a worker uses cluster.worker:on)", 2)
  end
  _M.workers = {}
  if _M.is_worker then
    _M.worker = require("luacluster.worker.side").worker
  end
end


return _M
