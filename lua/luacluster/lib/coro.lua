-- Coroutines for handlers: every handler, event callback and timer callback runs in a
-- coroutine of its own, taken from a pool so that an event costs no coroutine creation
-- once the pool is warm (skynet's pattern). "Waiting" calls yield the current coroutine
-- and are resumed by the event loop; outside such a coroutine they raise.
local log = require("luacluster.lib.log")

local co_create, resume, yield, running = coroutine.create, coroutine.resume, coroutine.yield, coroutine.running
local status = coroutine.status
local xpcall, traceback = xpcall, debug.traceback

local error_at_caller, spawn, current, in_handler, wait, wake, waiter

local managed = setmetatable({}, { __mode = "k" })
local pool = {}
local POOL_MAX = 256
local WAITING, POOLED = {}, {}

-- the library's own folder (".../luacluster/", this file being in its lib/), to tell its
-- frames from the app's
local LIB_DIR = debug.getinfo(1, "S").source:match("^@(.*/)lib/[^/]*$")


local function in_library(info)
  if info.what == "C" then
    return true
  end
  local src = info.source
  return LIB_DIR ~= nil and src:sub(1, 1) == "@" and src:sub(2, #LIB_DIR + 1) == LIB_DIR
end


-- Raises msg at the first Lua function up the stack that is not the library's own: the app's
-- line that made the call, whichever library functions are between.
function error_at_caller(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then
      error(msg, 0) -- no app frame at all (the library called itself): no position
    end
    if not in_library(info) then
      error(msg, level)
    end
    level = level + 1
  end
end


local function on_error(err)
  return traceback(tostring(err), 2)
end


local function run(fn, ...)
  local ok, err = xpcall(fn, on_error, ...)
  if not ok then
    log.error(err)
  end
end


-- A new coroutine is started once with no arguments and waits at once, so that every function
-- it runs comes in through yield: arguments given to the first resume would stay in its
-- vararg slots, and keep that first function (a handler of a generation long replaced, the
-- worker object it was called for) alive for as long as the coroutine lives in the pool.
local function body()
  local me = running()
  run(yield(POOLED))
  while true do
    if #pool >= POOL_MAX then
      managed[me] = nil
      return
    end
    pool[#pool + 1] = me
    run(yield(POOLED))
  end
end


-- Runs fn(...) in a pooled coroutine, now, until it finishes or waits.
function spawn(fn, ...)
  local co = pool[#pool]
  if co then
    pool[#pool] = nil
  else
    co = co_create(body)
    managed[co] = true
    resume(co) -- to its first yield: it takes fn and its arguments there
  end
  local ok, err = resume(co, fn, ...)
  if not ok then
    log.error(traceback(co, tostring(err)))
  end
  return co
end


-- The current coroutine if luacluster runs it; otherwise raises, naming the call, at the
-- app's line that made it.
function current(what)
  local co = running()
  if co == nil or not managed[co] then
    error_at_caller((what or "this call") .. " waits, so it can only be called inside a handler or callback"
      .. " that luacluster runs (a request, message or event handler, or a timer callback),"
      .. " not at a script's top level")
  end
  return co
end


function in_handler()
  local co = running()
  return co ~= nil and managed[co] == true
end


-- Suspends the current coroutine until wake(co, ...) is called; returns wake's arguments.
function wait()
  return yield(WAITING)
end


function wake(co, ...)
  if status(co) ~= "suspended" then
    return false
  end
  local ok, err = resume(co, ...)
  if not ok then
    log.error(traceback(co, tostring(err)))
  end
  return true
end


-- A one-shot rendezvous: the first of wake / timeout wins, later ones are ignored.
-- Usage: local w = coro.waiter("name"); ...arrange for w:wake(...) ...; return w:wait()
local waiter_mt = {}
waiter_mt.__index = waiter_mt

function waiter(what)
  return setmetatable({ co = current(what), done = false }, waiter_mt)
end


function waiter_mt:wake(...)
  if self.done then
    return false
  end
  self.done = true
  if self.waiting then
    return wake(self.co, ...)
  end
  self.result = { n = select("#", ...), ... }
  return true
end


function waiter_mt:wait()
  if self.done then
    local r = self.result
    return unpack(r, 1, r.n)
  end
  self.waiting = true
  return wait()
end


return {
  error_at_caller = error_at_caller,
  spawn = spawn,
  current = current,
  in_handler = in_handler,
  wait = wait,
  wake = wake,
  waiter = waiter,
}
