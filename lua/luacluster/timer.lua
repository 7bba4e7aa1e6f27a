-- Timers: after(ms, fn), every(ms, fn), t:stop(), sleep(ms), and now(), the clock they count
-- on. Callbacks run in coroutines, so they may wait. A pending timer keeps its process alive,
-- as in Node.js.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local runtime = require("luacluster.lib.runtime")

local spawn = coro.spawn

local after, every, now, sleep

local timer_mt = {}
timer_mt.__index = timer_mt


local function check_ms(ms, what)
  if type(ms) ~= "number" or ms < 0 or ms ~= ms then
    error(what .. ": delay must be a number of milliseconds >= 0", 3)
  end
end


function timer_mt:stop()
  if self.handle then
    self.handle:close()
    self.handle = nil
  end
end


function timer_mt:active()
  return self.handle ~= nil
end


local function start(ms, fn, repeating, what)
  check_ms(ms, what)
  if type(fn) ~= "function" then
    error(what .. ": callback must be a function", 3)
  end
  local t = setmetatable({}, timer_mt)
  t.handle = core.timer_new(function()
    if not repeating then
      t:stop()
    end
    spawn(fn, t)
  end)
  t.handle:start(ms, repeating and math.max(ms, 1) or 0)
  if runtime.role == "master" then
    -- a reload stops the timers of the master's old code
    t._gen = runtime.code_generation
    runtime.master_timers[t] = true
  end
  return t
end


function after(ms, fn)
  return start(ms, fn, false, "timer.after")
end


function every(ms, fn)
  return start(ms, fn, true, "timer.every")
end


-- The event loop's clock in milliseconds: monotonic (a change of the wall clock does not move
-- it), the time the current loop turn started, which is what timers count from. Only
-- differences between two readings mean something.
now = core.now


function sleep(ms)
  check_ms(ms, "timer.sleep")
  local w = coro.waiter("timer.sleep")
  local h
  h = core.timer_new(function()
    h:close()
    w:wake()
  end)
  h:start(ms, 0)
  return w:wait()
end


return {
  after = after,
  every = every,
  now = now,
  sleep = sleep,
}
