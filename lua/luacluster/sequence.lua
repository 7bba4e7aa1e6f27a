-- Ordered start and stop: cluster.setup{ start = "sequential" }.
-- Start: the master forks worker 1, waits until it is ready, then forks worker 2, and so on.
-- Ready is master.lua's one rule (the same for the first start, a reload and a replacement):
-- one loop turn after its top level ran, serving what its slot served before, or when it
-- says so with cluster.worker:ready() under cluster.setup{ ready = "manual" }.
-- A worker that exits before it is ready does not hold the others back (a crashed one is
-- restarted as usual, on its own).
-- Stop (and any drain that goes through disconnect_in_order): workers are disconnected one at a
-- time in reverse id order, each after the previous one has exited.
local core = require("luacluster.core")
local master = require("luacluster.master")

local _M = {}

local on_ready = setmetatable({}, { __mode = "k" })  -- worker -> fn, while waiting for it
local on_gone = setmetatable({}, { __mode = "k" })   -- worker -> fn, while waiting for its exit


local function next_turn(fn)
  local t
  t = core.timer_new(function()
    t:close()
    fn()
  end)
  t:start(0, 0)
end


master.hooks.ready[#master.hooks.ready + 1] = function(w)
  local fn = on_ready[w]
  if fn then
    on_ready[w] = nil
    fn()
  end
end
master.hooks.gone[#master.hooks.gone + 1] = function(w)
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
end


-- Calls fn (in a later loop turn) once w is ready or gone.
function _M.when_ready(w, fn)
  local function go()
    next_turn(fn)
  end
  if w._ready or w.state == "dead" then
    return go()
  end
  on_ready[w] = go
end


-- Forks n workers one at a time; done() (optional) runs once the last is ready.
function _M.start(n, done)
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
      return next_turn(step)
    end
    _M.when_ready(w, step)
  end
  step()
end


-- Disconnects the workers with these ids one at a time, in the order given, each after the
-- previous one has exited; done() (optional) runs after the last.
function _M.disconnect_in_order(ids, done)
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
      next_turn(step)
    end
    w:disconnect()
  end
  step()
end


return _M
