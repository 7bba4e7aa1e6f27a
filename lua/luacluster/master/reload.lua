-- Zero-downtime reload: a new generation of the app, as DESIGN.md describes.
--  1. load-check the new app.lua; run its top level in the master with what it registers
--     (cluster.on handlers, setup, forks, the master's own servers) held in a stage;
--  2. start the new generation's workers and wait until each is ready (master/core.lua's rule:
--     it serves what its slot served, or it said so under ready = "manual"), with a
--     deadline; any failure stops them and changes nothing;
--  3. switch: the master's kept state (cluster.keep, lib/keep.lua) is carried into the new code,
--     the staged master state takes effect, new workers take their slots
--     (connections, cluster.workers, routed messages), the master's servers hand their
--     listening sockets to the new code's servers;
--  4. drain the old generation (killed after drain_timeout); fire reload(generation).
local core = require("luacluster.core")
local cluster = require("luacluster.cluster")
local emitter = require("luacluster.lib.emitter")
local error_line = require("luacluster.lib.error_line")
local keep = require("luacluster.lib.keep")
local listen = require("luacluster.serve.listen")
local log = require("luacluster.lib.log")
local master = require("luacluster.master.core")
local master_listen = require("luacluster.master.listen")
local registry = require("luacluster.lib.registry")
local runtime = require("luacluster.lib.runtime")

local _M = {}

local in_progress = false
local reload_gen = setmetatable({}, { __mode = "k" }) -- a new worker -> the reload that started it
local counted = setmetatable({}, { __mode = "k" })    -- a new worker -> true once counted ready
local DEFAULT_READY_TIMEOUT = 30000

-- reloads done and refused (metrics), and functions(event, generation | err) run when a
-- reload "start"s, is "done" or is "refused" (systemd's RELOADING=1 / READY=1: master/ops.lua)
_M.counts = { done = 0, refused = 0 }
local plugs = registry.new("reload", { "event" })


-- add_hook(fn(event, generation | err)) -> remover
function _M.add_hook(fn)
  return plugs:hook("event", fn)
end


local function run_hooks(event, arg)
  plugs:run("event", event, arg)
end


local function traceback(err)
  return debug.traceback(tostring(err), 2)
end


-- modules the app loaded (not luacluster's own): unloaded so the new code is read again
local function unload_app_modules()
  local saved = {}
  for name, mod in pairs(package.loaded) do
    if runtime.preloaded[name] == nil and not name:match("^luacluster%.") then
      saved[name] = mod
      package.loaded[name] = nil
    end
  end
  return saved
end


local function restore_modules(saved)
  for name, mod in pairs(saved) do
    package.loaded[name] = mod
  end
end


local function stop_timers(pred)
  for t in pairs(runtime.master_timers) do
    if pred(t._gen) then
      t:stop()
      runtime.master_timers[t] = nil
    end
  end
end


-- Runs the new code's top level in the stage: -> stage | nil, err
local function stage_new_code(gen)
  local chunk, err = loadfile(runtime.app)
  if not chunk then
    return nil, error_line.line(err)
  end
  local stage = { gen = gen, cfg = master.default_config(), setup_called = false, forks = {}, listens = {}, events = {} }
  local saved = unload_app_modules()
  master.set_staging(stage)
  local old_gen = runtime.code_generation
  runtime.code_generation = gen
  local ok, rerr = xpcall(chunk, traceback, unpack(runtime.argv))
  master.set_staging(nil)
  if ok and stage.keep_error then
    ok, rerr = false, stage.keep_error
  end
  if ok and stage.listen_error then -- a master's server whose certificate does not load
    ok, rerr = false, stage.listen_error
  end
  if not ok then
    runtime.code_generation = old_gen
    stop_timers(function(g) return g == gen end)
    restore_modules(saved)
    return nil, error_line.line(rerr) -- the reason and its file:line, not a traceback through master/reload.lua
  end
  stage.old_gen = old_gen
  return stage
end


local function abort(stage, new_workers, err, gen)
  for _, w in ipairs(new_workers) do
    master.abandon(w)
  end
  master.discard_unstarted(stage.forks) -- forks of the new top level never started
  runtime.code_generation = stage.old_gen
  stop_timers(function(g) return g == gen end)
  log.warn("reload to generation " .. gen .. " failed: " .. err .. "; generation " .. master.generation() .. " keeps serving")
  return err
end


local function switch(stage, new_workers, gen)
  -- the master's new state
  master.replace_config(stage.cfg, stage.setup_called)
  emitter.take_over(cluster, stage.events)
  master.set_generation(gen)
  master_listen.reset_policies()
  stop_timers(function(g) return g < gen end)
  -- the master's own servers: the new ones take the old ones' sockets
  local old_servers = {}
  for server in pairs(listen.take_master_servers()) do
    server._retiring = true
    old_servers[#old_servers + 1] = server
  end
  for _, l in ipairs(stage.listens) do
    listen.listen_here(l.server, l.port, l.host)
  end
  for _, server in ipairs(old_servers) do
    server:close()
  end
  -- workers: the new generation takes the slots, the old one drains
  log.info("reload: switching to generation " .. gen .. "; the older generation drains")
  local old = {}
  for _, w in pairs(master.workers) do
    old[#old + 1] = w
  end
  for _, w in ipairs(new_workers) do
    master.adopt(w)
  end
  master_listen.close_unused(new_workers)
  for _, w in ipairs(old) do
    if w.generation < gen then
      master.retire(w)
    end
  end
  master.emit_cluster("reload", gen)
end


-- reload(cb): cb(nil, generation) once the new generation serves, or cb(err)
function _M.reload(cb)
  if in_progress or master.is_stopping() then
    local err = in_progress and "a reload is already in progress; try again when it has finished" or "the cluster is stopping"
    _M.counts.refused = _M.counts.refused + 1
    log.warn("reload refused: " .. err)
    return cb(err)
  end
  in_progress = true
  run_hooks("start")
  local function done(err, gen)
    in_progress = false
    if err then
      _M.counts.refused = _M.counts.refused + 1
      log.warn("reload refused: " .. err)
      run_hooks("refused", err)
    else
      _M.counts.done = _M.counts.done + 1
      log.info("reload: generation " .. gen .. " serves")
      run_hooks("done", gen)
    end
    cb(err, gen)
  end
  local gen = master.generation() + 1
  log.info("reload: loading " .. runtime.app .. " as generation " .. gen)
  local stage, err = stage_new_code(gen)
  if not stage then
    return done(err)
  end
  local n = master.wanted_workers(stage.cfg, stage.setup_called, #stage.forks)
  local new_workers, waiting, finished = {}, 0, false
  local deadline
  -- start = "sequential": one new worker at a time, each once the previous is ready
  local sequential, next_id = stage.cfg.start == "sequential", 1
  local spawn_next
  local function finish_with(ferr)
    if finished then
      return
    end
    finished = true
    if deadline then
      deadline:close()
    end
    if not ferr then
      local ok, kerr = keep.carry(stage)
      ferr = not ok and kerr or nil
    end
    if ferr then
      return done(abort(stage, new_workers, ferr, gen))
    end
    switch(stage, new_workers, gen)
    master.end_boot()
    master.discard_unstarted(stage.forks) -- forks past the workers the new setup asked for
    done(nil, gen)
  end
  local function on_ready(w)
    if reload_gen[w] == gen and not counted[w] then
      counted[w] = true
      waiting = waiting - 1
      if waiting == 0 then
        finish_with(nil)
      elseif sequential and not finished then
        spawn_next()
      end
    end
  end
  local function on_gone(w)
    if reload_gen[w] == gen and not finished then
      local how = w._exit_signal and ("signal " .. w._exit_signal) or ("code " .. tostring(w._exit_code))
      finish_with("new worker " .. w.id .. " exited with " .. how .. " before it was ready"
        .. (w._failed and (": " .. error_line.line(w._failed_detail or w._failed)) or ""))
    end
  end
  local unhook_ready = master.add_hook("ready", on_ready)
  local unhook_gone = master.add_hook("gone", on_gone)
  local function unhook()
    unhook_ready()
    unhook_gone()
  end
  local inner = finish_with
  finish_with = function(ferr)
    unhook()
    inner(ferr)
  end
  deadline = core.timer_new(function()
    finish_with("the new generation was not ready within " .. (stage.cfg.reload_timeout or DEFAULT_READY_TIMEOUT) .. " ms")
  end)
  deadline:start(stage.cfg.reload_timeout or DEFAULT_READY_TIMEOUT, 0)
  if n == 0 then
    return finish_with(nil)
  end
  -- -> true, or false once the reload has failed
  function spawn_next()
    local id = next_id
    next_id = id + 1
    local forked = stage.forks[id] -- the object cluster.fork() returned to the new top level
    local env
    if forked then
      env = forked._env
    else
      env = master.workers[id] and master.workers[id]._env or nil
    end
    -- with the new code's setup: its max_message_size, drain_timeout, ... (not the live one)
    local w, serr = master.spawn(id, env, gen, true, forked, stage.cfg)
    if not w then
      finish_with("cannot start worker " .. id .. ": " .. tostring(serr))
      return false
    end
    reload_gen[w] = gen
    new_workers[#new_workers + 1] = w
    return true
  end
  waiting = n
  log.info(string.format("reload: starting %d worker%s of generation %d%s", n, n == 1 and "" or "s", gen,
    sequential and n > 1 and ", one at a time" or ""))
  if sequential then
    spawn_next()
    return
  end
  for _ = 1, n do
    if not spawn_next() then
      return
    end
  end
end


function _M.in_progress()
  return in_progress
end


return {
  counts = _M.counts,
  add_hook = _M.add_hook,
  reload = _M.reload,
  in_progress = _M.in_progress,
}
