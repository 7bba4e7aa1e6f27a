-- luacluster.lib.jobs: the jobs this process's script defines with cluster.job(name, spec,
-- fn) at its top level. The same script runs in the master and in every worker: the master
-- keeps the schedule (master/jobs.lua), a worker runs fn when the master names the job
-- (worker/jobs.lua). This module checks the arguments, parses a cron spec (lib/cron.lua) and
-- keeps the definitions; a reload's new top level (in the master) defines into its stage,
-- which master/jobs.lua takes when the new generation serves.
local coro = require("luacluster.lib.coro")
local runtime = require("luacluster.lib.runtime")

local error_at_caller = coro.error_at_caller

local defined = { defs = {}, order = {} } -- this generation's: name -> def, and the names in order
local staged = {}   -- a reload's generation -> its definitions (master)
local started = false -- the master's schedule runs: a call now is outside the top level


-- def: { name =, every = ms | nil, cron = parsed | nil, schedule = "every 500 ms" | "cron ...",
-- fn =, where = "file:line" }
local function check(name, spec, fn)
  if type(name) ~= "string" or name == "" or name:find("[%c%s]") then
    error_at_caller("cluster.job: the name must be a non-empty string without spaces, not " .. tostring(name))
  end
  if type(spec) ~= "table" then
    error_at_caller("cluster.job('" .. name .. "'): expected { every = ms } or { cron = \"m h dom mon dow\" }")
  end
  for k in pairs(spec) do
    if k ~= "every" and k ~= "cron" then
      error_at_caller("cluster.job('" .. name .. "'): unknown option '" .. tostring(k)
        .. "' (expected { every = ms } or { cron = \"m h dom mon dow\" })")
    end
  end
  if type(fn) ~= "function" then
    error_at_caller("cluster.job('" .. name .. "'): the third argument must be a function")
  end
  local def = { name = name, fn = fn }
  if spec.every ~= nil and spec.cron ~= nil then
    error_at_caller("cluster.job('" .. name .. "'): give every or cron, not both")
  elseif spec.every ~= nil then
    local ms = spec.every
    if type(ms) ~= "number" or ms ~= ms or ms < 1 or ms > 2 ^ 53 then -- (the timer takes a 64-bit integer)
      error_at_caller("cluster.job('" .. name .. "'): every must be a number of milliseconds >= 1 (at most 2^53)")
    end
    def.every, def.schedule = ms, "every " .. ms .. " ms"
  elseif spec.cron ~= nil then
    local cron = require("luacluster.lib.cron") -- lazy: only an app with a cron job loads the parser
    local c, err = cron.parse(spec.cron)
    if not c then
      error_at_caller("cluster.job('" .. name .. "'): " .. err)
    end
    if not cron.next(c, os.time()) then
      error_at_caller("cluster.job('" .. name .. "'): cron '" .. spec.cron .. "' matches no date")
    end
    def.cron, def.schedule = c, "cron " .. spec.cron
  else
    error_at_caller("cluster.job('" .. name .. "'): expected { every = ms } or { cron = \"m h dom mon dow\" }")
  end
  local info = debug.getinfo(4, "Sl")
  def.where = info and (info.short_src .. ":" .. tostring(info.currentline)) or "?"
  return def
end


-- cluster.job(name, spec, fn); worker_top_level: in a worker, whether its top level is running
local function define(name, spec, fn, worker_top_level)
  local role = runtime.role
  local top
  if role == "master" then
    top = runtime.staging ~= nil or (not started and not coro.in_handler())
  elseif role == "worker" then
    top = worker_top_level and not coro.in_handler()
  else
    error_at_caller("cluster.job is for a cluster's master and workers, not a process started by child_process.fork")
  end
  if not top then
    error_at_caller("cluster.job must be called at the script's top level (the master reads the schedule when it"
      .. " starts), not inside a function that runs later")
  end
  local def = check(name, spec, fn)
  local into = defined
  if role == "master" and runtime.staging then
    local gen = runtime.staging.gen
    staged[gen] = staged[gen] or { defs = {}, order = {} }
    into = staged[gen]
  end
  local old = into.defs[name]
  if old then
    error_at_caller("cluster.job: a job named '" .. name .. "' is defined already (at " .. old.where .. ")")
  end
  into.defs[name] = def
  into.order[#into.order + 1] = name
end


-- the master's schedule starts: cluster.job raises from now on (but in a reload's top level)
local function start()
  started = true
  return defined.order, defined.defs
end


-- a reload's generation serves: its definitions are this process's now -> order, defs
local function take_staged(gen)
  local s = staged[gen] or { defs = {}, order = {} }
  staged = {}
  defined = s
  return s.order, s.defs
end


-- a reload was refused: what its top level defined goes
local function drop_staged()
  staged = {}
end


-- the definition of the job named name in this process, or nil
local function get(name)
  return defined.defs[name]
end


return {
  define = define,
  start = start,
  take_staged = take_staged,
  drop_staged = drop_staged,
  get = get,
}
