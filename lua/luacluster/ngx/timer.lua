-- luacluster.ngx.timer: ngx.timer.at(delay, fn, ...) with lua-nginx-module's rules on
-- luacluster.timer: fn(premature, ...) runs in a coroutine of its own (so it may wait), at
-- most 1024 timers wait at once (lua_max_pending_timers), and when the worker drains (a
-- reload, a stop) every timer still waiting with a delay runs at once with premature = true,
-- as nginx's do when a worker exits; from then on a timer with a delay is refused with
-- "process exiting" (a zero-delay one still runs, and the drain waits for it). A drain waits
-- for the callbacks that run, as for requests in flight.
local coro = require("luacluster.lib.coro")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local timer = require("luacluster.timer")

local type, tonumber, select, unpack = type, tonumber, select, unpack
local fmt = string.format
local traceback = debug.traceback

local _M = {}

local MAX_PENDING = 1024

local pending = {} -- entry -> true: { fn =, args =, ms =, t = }
local npending, nrunning = 0, 0
local exiting = false


local function run(entry, premature)
  nrunning = nrunning + 1
  runtime.hold() -- a drain waits for the callback
  local args = entry.args
  local ok, err = xpcall(entry.fn, traceback, premature, unpack(args, 1, args.n))
  nrunning = nrunning - 1
  runtime.release()
  if not ok then
    log.error("ngx.timer.at callback failed: " .. tostring(err))
  end
end


local function fire(entry)
  if not pending[entry] then
    return -- it ran already, prematurely
  end
  pending[entry] = nil
  npending = npending - 1
  run(entry, false)
  if entry.held then
    runtime.release()
  end
end


-- ok, err = ngx.timer.at(delay_s, fn, ...): 1 | nil, "process exiting" | nil, "too many pending timers"
function _M.at(...)
  local nargs = select("#", ...)
  if nargs < 2 then
    error(fmt("expecting at least 2 arguments but got %d", nargs), 2)
  end
  local delay, fn = ...
  local d = tonumber(delay)
  if d == nil or (type(delay) ~= "number" and type(delay) ~= "string") then
    error(fmt("bad argument #1 to 'at' (number expected, got %s)", type(delay)), 2)
  end
  if type(fn) ~= "function" then
    error("bad argument #2 to 'at' (Lua function expected)", 2)
  end
  local ms = math.floor(d * 1000)
  if ms < 0 then
    error("bad argument #1 to 'at' (the delay must be >= 0)", 2)
  end
  if exiting and ms > 0 then
    return nil, "process exiting"
  end
  if npending >= MAX_PENDING then
    return nil, "too many pending timers"
  end
  local entry = { fn = fn, args = { n = nargs - 2, select(3, ...) }, ms = ms }
  entry.t = timer.after(ms, function()
    fire(entry)
  end)
  pending[entry] = true
  npending = npending + 1
  if exiting then -- a zero-delay timer made during a drain: the drain waits for it
    entry.held = true
    runtime.hold()
  end
  return 1
end


function _M.pending_count()
  return npending
end


function _M.running_count()
  return nrunning
end


function _M.exiting()
  return exiting
end


-- the worker drains: the timers that wait with a delay run now, prematurely
runtime.drain_hooks[_M] = function()
  exiting = true
  local list = {} -- first the list: a premature callback may make new timers
  for entry in pairs(pending) do
    list[#list + 1] = entry
  end
  for _, entry in ipairs(list) do
    if entry.ms > 0 then
      entry.t:stop()
      pending[entry] = nil
      npending = npending - 1
      coro.spawn(run, entry, true)
    elseif not entry.held then -- a zero-delay one runs as due, and the drain waits for it
      entry.held = true
      runtime.hold()
    end
  end
end


return _M
