-- Ordered start and stop: cluster.setup{ start = "sequential" }.
-- Start: the master forks worker 1, waits until it is ready, then forks worker 2, and so on.
-- Ready is master/core.lua's one rule (the same for the first start, a reload and a replacement):
-- one loop turn after its top level ran, serving what its slot served before, or when it
-- says so with cluster.worker:ready() under cluster.setup{ ready = "manual" }.
-- A worker that exits before it is ready does not hold the others back (a crashed one is
-- restarted as usual, on its own).
-- Stop (and any drain that goes through disconnect_in_order): workers are disconnected one at a
-- time in reverse id order, each after the previous one has exited.
-- The master's core (master/core.lua) calls it and passes itself: this module is below it.
local timer0 = require("luacluster.lib.timer0")

local on_ready = setmetatable({}, { __mode = "k" })  -- worker -> fn, while waiting for it
local on_gone = setmetatable({}, { __mode = "k" })   -- worker -> fn, while waiting for its exit
local attached -- the master these hooks are on (hooked at the first use)


local function attach(master)
  if attached then
    return
  end
  attached = master
  master.add_hook("ready", function(w)
    local fn = on_ready[w]
    if fn then
      on_ready[w] = nil
      fn()
    end
  end)
  master.add_hook("gone", function(w)
    local fn = on_ready[w]
    on_ready[w] = nil
    if fn then
      fn()
    end
    fn = on_gone[w]
    on_gone[w] = nil
    if fn then
      fn()
    end
  end)
end


-- Calls fn (in a later loop turn) once w is ready or gone.
local function when_ready(w, fn)
  local function go()
    timer0.next_turn(fn)
  end
  if w:is_ready() or w.state == "dead" then
    return go()
  end
  on_ready[w] = go
end


-- Forks n workers one at a time; done() (optional) runs once the last is ready.
local function start(master, n, done)
  attach(master)
  local i = 0
  local function step()
    if i >= n or master.is_stopping() then
      if done then
        done()
      end
      return
    end
    i = i + 1
    local w = master.fork()
    if not w then
      return timer0.next_turn(step)
    end
    when_ready(w, step)
  end
  step()
end


-- Disconnects the workers with these ids one at a time, in the order given, each after the
-- previous one has exited; done() (optional) runs after the last.
local function disconnect_in_order(master, ids, done)
  attach(master)
  local k = 0
  local function step()
    k = k + 1
    local id = ids[k]
    if id == nil then
      if done then
        done()
      end
      return
    end
    local w = type(id) == "table" and id or master.workers[id]
    if not w or w.state == "dead" then
      return step()
    end
    on_gone[w] = function()
      timer0.next_turn(step)
    end
    w:disconnect()
  end
  step()
end


return {
  start = start,
  disconnect_in_order = disconnect_in_order,
}
