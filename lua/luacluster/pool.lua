-- luacluster.pool: run a list of tasks on the workers, from the master or from a worker.
--
--   -- in the worker (at its top level):
--   pool.handle(function(task, index) return result end)    -- runs in a coroutine, may wait
--   -- in the master or a worker (inside a handler or callback):
--   local results, err = pool.map(tasks [, opts])            -- waits
--   pool.map(tasks [, opts], function(results, err) end)     -- callback form
--
-- A worker's map is the master's: the worker sends the tasks and options to the master (a
-- runtime control frame, "pool_map"), the master runs the map over the ready workers (the
-- asking worker included) and sends back the results or the error ("pool_map_done"). Its
-- options are the master's, but a scheduler must be a name there (a function cannot travel).
-- A map in flight fails when the channel to the master closes.
--
-- The scheduling policy (cluster.setup{scheduler=}, or opts.scheduler) picks the worker for
-- the next task among the ready workers (online or listening, not draining) that have fewer
-- than opts.per_worker tasks of this map in flight; the policy sees each worker's count of
-- tasks in flight as `connections`, so "least_connections" balances tasks. Results come back
-- in the order of the tasks (results.n = #tasks). A task whose worker dies is run again on
-- another worker (opts.retries times, default 1), then the map fails with an error that names
-- the task and the workers. A task whose handler raises, or that runs longer than
-- opts.timeout ms, fails the map at once: pool.map returns nil, err, partial_results (tasks
-- still running are left to finish and their results dropped).
-- Tasks and results are messages (see Messages in the contract). Tasks travel as runtime
-- control frames, so pool tasks never reach a worker's on("message") or on("request").
-- A map with no live worker at all fails at once when workers are not restarted
-- (cluster.setup{restart=false}), else after opts.worker_wait ms (default 30000); a map still
-- running when the cluster stops fails once its running tasks are done.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local sched = require("luacluster.sched.load")
local tables = require("luacluster.lib.tables")
local timer0 = require("luacluster.lib.timer0")
local worker = require("luacluster.worker.side")

local _M = {}

-- ---- the worker's side ----

local handler


-- pool.handle(fn): fn(task, index) -> result answers this worker's tasks.
function _M.handle(fn)
  if runtime.role ~= "worker" then
    error("pool.handle is for workers; the master calls pool.map", 2)
  end
  if type(fn) ~= "function" then
    error("pool.handle: expected a function", 2)
  end
  handler = fn
end


local function traceback(err)
  log.error("pool task failed: " .. debug.traceback(tostring(err), 2))
  return tostring(err)
end


-- a task from the master (the worker's control op "task")
local function on_task(msg)
  if type(msg) ~= "table" or type(msg.id) ~= "number" then
    return
  end
  coro.spawn(function()
    runtime.hold() -- a drain waits for the task to finish and its result to be sent
    local ok, value
    if not handler then
      ok, value = false, "worker " .. tostring(worker.worker.id) .. " has no pool.handle(fn) task handler"
    else
      ok, value = xpcall(handler, traceback, msg.task, msg.index)
    end
    local ch = worker.channel()
    if not ch:is_closed() then
      local sent, err = ch:control({ op = "task_done", id = msg.id, ok = ok, value = value })
      if not sent then
        ch:control({ op = "task_done", id = msg.id, ok = false, value = "cannot send the result: " .. tostring(err) })
      end
    end
    runtime.release()
  end)
end


-- ---- the master's side ----

local master
local in_flight = {}   -- task id -> { run =, index =, worker =, timer = }
local runs = {}        -- active runs
local next_id = 0
local ROUND_ROBIN = require("luacluster.sched.round_robin")


local function make_policy(s)
  local mod, err = sched.load(s)
  if not mod then
    coro.error_at_caller("pool.map: " .. err)
  end
  return type(mod) == "function" and mod or mod.new()
end




local function finish(run, err)
  if run.finished then
    return
  end
  run.finished = true
  for i = #runs, 1, -1 do
    if runs[i] == run then
      table.remove(runs, i)
    end
  end
  if run.no_worker_timer then
    run.no_worker_timer:close()
    run.no_worker_timer = nil
  end
  for id, t in pairs(in_flight) do
    if t.run == run then
      if t.timer then
        t.timer:close()
        t.timer = nil
      end
      in_flight[id] = nil
    end
  end
  if err then
    run.done(nil, err, run.results)
  else
    run.done(run.results)
  end
end


local function describe(w)
  return string.format("worker %d (pid %s)", w.id, tostring(w.pid))
end


local pump


local function settle(id, ok, value)
  local t = in_flight[id]
  if not t then
    return -- late: its map has finished already
  end
  in_flight[id] = nil
  if t.timer then
    t.timer:close()
  end
  local run = t.run
  run.load[t.worker] = (run.load[t.worker] or 1) - 1
  if ok then
    run.results[t.index] = value
    run.completed = run.completed + 1
    if run.completed == run.n then
      return finish(run)
    end
  else
    return finish(run, string.format("task %d failed on %s: %s", t.index, describe(t.worker), tostring(value)))
  end
  pump(run)
end


-- the worker that ran task t is gone: run it again elsewhere, or give up
local function lost(t)
  local run = t.run
  local index = t.index
  run.load[t.worker] = nil
  local tried = run.tried[index]
  tried[#tried + 1] = t.worker
  if #tried > run.retries then
    local names = {}
    for i, w in ipairs(tried) do
      names[i] = describe(w)
    end
    return finish(run, string.format("task %d was lost: its worker died %d time%s (%s)", index, #tried,
      #tried == 1 and "" or "s", table.concat(names, ", ")))
  end
  log.warn(string.format("pool: %s died while running task %d; running it again elsewhere", describe(t.worker), index))
  table.insert(run.retry, index)
end


local function dispatch(run, w, index)
  next_id = next_id + 1
  local id = next_id
  local t = { run = run, index = index, worker = w }
  in_flight[id] = t
  run.load[w] = (run.load[w] or 0) + 1
  local ok, err = w:_control({ op = "task", id = id, index = index, task = run.tasks[index] })
  if not ok then
    in_flight[id] = nil
    run.load[w] = run.load[w] - 1
    if not w:is_dead() and not (w._ch and w._ch:is_closed()) then
      -- the task itself cannot be sent (a function in it, too big): a programming mistake
      finish(run, string.format("task %d cannot be sent: %s", index, tostring(err)))
      return false
    end
    lost(t)
    return true
  end
  if run.timeout > 0 then
    t.timer = core.timer_new(function()
      t.timer:close()
      t.timer = nil
      settle(id, false, "timeout after " .. run.timeout .. " ms")
    end)
    t.timer:start(run.timeout, 0)
  end
  return true
end


-- the ready workers that can take one more task of this run, as the policy sees them
local function candidates(run, index)
  local list, fresh = {}, {}
  local tried = run.tried[index]
  local ids_tried = {}
  for _, w in ipairs(tried or {}) do
    ids_tried[w.id] = true
  end
  for _, w in pairs(master.workers) do
    local load = run.load[w] or 0
    if w:is_up() and load < run.per_worker then
      local view = setmetatable({ connections = load, tasks = load, worker = w }, { __index = w })
      list[#list + 1] = view
      if not ids_tried[w.id] then
        fresh[#fresh + 1] = view
      end
    end
  end
  if #fresh > 0 then
    list = fresh -- a retried task goes to another worker id when there is one
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end


local function pick(run, list, index)
  local info = {
    task = run.tasks[index], index = index,
    remote_address = tostring(index), remote_port = 0, local_port = 0,
  }
  local ok, v = pcall(run.policy, list, info)
  if ok and type(v) == "table" then
    for _, view in ipairs(list) do
      if view == v or view.worker == v then
        return view.worker
      end
    end
  end
  if not run.warned then
    run.warned = true
    log.warn("pool: the scheduler " .. (ok and "returned no worker of the list" or ("failed: " .. tostring(v)))
      .. "; using round robin")
  end
  return run.fallback(list).worker
end


function pump(run)
  while not run.finished do
    local index = run.retry[1]
    local from_retry = index ~= nil
    if not index then
      if run.next_index > run.n then
        break
      end
      index = run.next_index
    end
    local list = candidates(run, index)
    if #list == 0 then
      break
    end
    if from_retry then
      table.remove(run.retry, 1)
    else
      run.next_index = run.next_index + 1
    end
    if not dispatch(run, pick(run, list, index), index) then
      return
    end
  end
  if run.finished then
    return
  end
  local busy = false
  for _, t in pairs(in_flight) do
    if t.run == run then
      busy = true
      break
    end
  end
  if busy then
    return
  end
  if master.is_stopping() then
    return finish(run, string.format("the cluster is stopping; %d of %d tasks done", run.completed, run.n))
  end
  -- nothing of this run is running and no worker can take the next task: with no live worker
  -- at all, fail (the next loop turn, so that a map called at the top level sees the first
  -- workers) when none can come back, else after opts.worker_wait ms
  local live = next(master.workers) ~= nil
  if live then
    if run.no_worker_timer then
      run.no_worker_timer:close()
      run.no_worker_timer = nil
    end
    return
  end
  if run.no_worker_timer then
    return
  end
  local restart = master.config().restart ~= false
  local t = core.timer_new(function()
    run.no_worker_timer:close()
    run.no_worker_timer = nil
    if not run.finished and next(master.workers) == nil then
      finish(run, string.format("no live worker to run task %d on%s; %d of %d tasks done", run.retry[1] or run.next_index,
        restart and " within " .. run.worker_wait .. " ms" or " (restart = false)", run.completed, run.n))
    end
  end)
  t:start(restart and run.worker_wait or 0, 0)
  run.no_worker_timer = t
end


local function pump_all()
  local list = { unpack(runs) }
  for _, run in ipairs(list) do
    pump(run)
  end
end


local on_asked -- a worker's map, in the master (below)


-- plugs the master's half into the master (master/plugins.lua)
local function attach(m)
  master = m
  m.register_op("task_done", function(w, msg)
    if type(msg.id) == "number" then
      local t = in_flight[msg.id]
      if t and t.worker == w then
        settle(msg.id, msg.ok == true, msg.value)
      end
    end
  end)
  m.register_op("pool_map", function(...) return on_asked(...) end) -- a worker's pool.map
  m.add_hook("online", pump_all)
  m.add_hook("gone", function(w)
    local affected = {}
    for id, t in pairs(in_flight) do
      if t.worker == w then
        in_flight[id] = nil
        if t.timer then
          t.timer:close()
        end
        affected[#affected + 1] = t
      end
    end
    table.sort(affected, function(a, b) return a.index < b.index end)
    for _, t in ipairs(affected) do
      if not t.run.finished then
        lost(t)
      end
    end
    pump_all()
  end)
end


local OPTS = { per_worker = "number", scheduler = true, timeout = "number", retries = "number", worker_wait = "number" }


-- Raises (at the caller of pool.map) for a programming mistake in its arguments.
local function check_args(tasks, opts, cb)
  if type(tasks) ~= "table" then
    coro.error_at_caller("pool.map: tasks must be a table (an array of tasks)")
  end
  if type(opts) ~= "table" then
    coro.error_at_caller("pool.map: opts must be a table")
  end
  for k, v in pairs(opts) do
    local want = OPTS[k]
    if not want then
      coro.error_at_caller("pool.map: unknown option '" .. tostring(k) .. "'")
    end
    if want ~= true and type(v) ~= want then
      coro.error_at_caller("pool.map: " .. k .. " must be a " .. want)
    end
  end
  local per_worker = opts.per_worker or 1
  if per_worker < 1 or per_worker % 1 ~= 0 then
    coro.error_at_caller("pool.map: per_worker must be a whole number >= 1")
  end
  if opts.retries and (opts.retries < 0 or opts.retries % 1 ~= 0) then
    coro.error_at_caller("pool.map: retries must be a whole number >= 0")
  end
  if opts.timeout and opts.timeout < 0 then
    coro.error_at_caller("pool.map: timeout must be >= 0 ms")
  end
  if cb ~= nil and type(cb) ~= "function" then
    coro.error_at_caller("pool.map: the callback must be a function")
  end
end


-- ---- a worker's map: asked of the master ----

local asked = {}   -- id -> { w = waiter | cb = function } (the worker's maps in flight)
local asked_seq = 0


local function answer_asked(id, ...)
  local a = asked[id]
  if not a then
    return
  end
  asked[id] = nil
  if a.cb then
    coro.spawn(a.cb, ...)
  else
    a.w:wake(...)
  end
end


local worker_side_ready = false


local function init_worker_side()
  if worker_side_ready then
    return
  end
  worker_side_ready = true
  worker.register_op("pool_map_done", function(msg)
    if type(msg.id) == "number" then
      if msg.err ~= nil then
        answer_asked(msg.id, nil, msg.err, msg.partial)
      else
        answer_asked(msg.id, msg.results)
      end
    end
  end)
  -- the channel to the master closed (it died): no answer will come
  runtime.drain_hooks[asked] = function()
    if worker.channel():is_closed() then
      for _, id in ipairs(tables.sorted_keys(asked)) do
        answer_asked(id, nil, "the channel to the master closed before the map finished")
      end
    end
  end
end


local function map_from_worker(tasks, opts, cb)
  if opts.scheduler ~= nil and type(opts.scheduler) ~= "string" then
    coro.error_at_caller("pool.map: in a worker, scheduler must be a built-in name (a function cannot be sent to the master)")
  end
  init_worker_side()
  local w
  if not cb then
    w = coro.waiter("pool.map")
  end
  local ch = worker.channel()
  asked_seq = asked_seq + 1
  local id = asked_seq
  local ok, err = ch:control({ op = "pool_map", id = id, tasks = tasks, opts = opts })
  if not ok then
    err = "pool.map: cannot ask the master: " .. tostring(err)
    if cb then
      timer0.next_turn(function() coro.spawn(cb, nil, err) end)
      return true
    end
    return nil, err
  end
  asked[id] = { w = w, cb = cb }
  if cb then
    return true
  end
  return w:wait()
end


-- the master's side of a worker's map: run it, send back what it gives
function on_asked(w, msg)
  if type(msg.id) ~= "number" then
    return
  end
  local function reply(results, err, partial)
    local ok, serr = w:_control({ op = "pool_map_done", id = msg.id, results = results, err = err, partial = partial })
    if not ok and not w:is_dead() then
      w:_control({ op = "pool_map_done", id = msg.id, err = "pool.map: cannot send the results: " .. tostring(serr) })
    end
  end
  local ok, err = pcall(_M.map, msg.tasks, type(msg.opts) == "table" and msg.opts or {}, reply)
  if not ok then
    reply(nil, tostring(err))
  end
end


-- pool.map(tasks [, opts] [, cb]) -> results | nil, err, partial_results
function _M.map(tasks, opts, cb)
  if runtime.role ~= "master" and runtime.role ~= "worker" then
    error("pool.map is only available in the master and in workers", 2)
  end
  if type(opts) == "function" then
    opts, cb = nil, opts
  end
  opts = opts or {}
  check_args(tasks, opts, cb)
  if runtime.role == "worker" then
    return map_from_worker(tasks, opts, cb)
  end
  local per_worker = opts.per_worker or 1
  local w
  if not cb then
    w = coro.waiter("pool.map")
  end
  local run = {
    tasks = tasks, n = tasks.n or #tasks, per_worker = per_worker, timeout = opts.timeout or 0,
    retries = opts.retries or 1, worker_wait = opts.worker_wait or 30000, policy = make_policy(opts.scheduler or master.config().scheduler or "round_robin"),
    fallback = ROUND_ROBIN.new(), results = {}, completed = 0, next_index = 1, retry = {}, load = {}, tried = {},
  }
  run.results.n = run.n
  for i = 1, run.n do
    run.tried[i] = {}
  end
  if cb then
    run.done = function(...) coro.spawn(cb, ...) end
  else
    run.done = function(...) w:wake(...) end
  end
  if run.n == 0 then
    if cb then
      timer0.next_turn(function() finish(run) end)
      return true
    end
    return run.results
  end
  runs[#runs + 1] = run
  pump(run)
  if cb then
    return true
  end
  return w:wait()
end


-- the master attaches its half at start (master/plugins.lua), so that a worker's map is
-- answered whatever the master's own code requires
return {
  handle = _M.handle,
  map = _M.map,
  attach = attach,
  on_task = on_task, -- a worker's op "task" (worker/plugins.lua)
}
