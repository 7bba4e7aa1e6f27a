-- Coroutines for handlers: every handler, event callback and timer callback runs in a
-- coroutine of its own, taken from a pool so that an event costs no coroutine creation
-- once the pool is warm (skynet's pattern). "Waiting" calls yield the current coroutine
-- and are resumed by the event loop; outside such a coroutine they raise.
local log = require("luacluster.lib.log")

local co_create, resume, yield, running = coroutine.create, coroutine.resume, coroutine.yield, coroutine.running
local status = coroutine.status
local traceback = debug.traceback

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


-- fn(...) runs unprotected: no pcall per event, so that the JIT compiles a handler and its
-- return into the library (a return into a pcall frame ends a trace). An error ends the
-- coroutine, its resume (in spawn or wake) returns it, and the dead coroutine is not pooled.
local function call(fn, ...)
  fn(...)
end


-- A new coroutine is started once with no arguments and waits at once, so that every function
-- it runs comes in through yield: arguments given to the first resume would stay in its
-- vararg slots, and keep that first function (a handler of a generation long replaced, the
-- worker object it was called for) alive for as long as the coroutine lives in the pool.
local function body()
  local me = running()
  call(yield(POOLED))
  while true do
    if #pool >= POOL_MAX then
      managed[me] = nil
      return
    end
    pool[#pool + 1] = me
    call(yield(POOLED))
  end
end


local function log_failure(_, co, err)
  log.error(traceback(co, tostring(err)))
end

-- on_fail and its ctx of each coroutine that waits (only those: a function that finishes at
-- once costs no entry); a pooled coroutine has none
local fails = setmetatable({}, { __mode = "k" })
local ctxs = setmetatable({}, { __mode = "k" })


-- after a resume of co: its error to on_fail, or its on_fail kept while it waits
local function settle(co, on_fail, ctx, ok, r)
  if not ok then
    fails[co], ctxs[co] = nil, nil
    on_fail(ctx, co, r)
  elseif r ~= POOLED and status(co) == "suspended" then
    fails[co], ctxs[co] = on_fail, ctx
  else
    fails[co], ctxs[co] = nil, nil
  end
end


-- Runs fn(...) in a pooled coroutine, now, until it finishes or waits. If fn raises (now or
-- after a wait), on_fail(ctx, co, err) is called in its place: debug.traceback(co, err) gives
-- the failed stack.
local function spawn_guarded(on_fail, ctx, fn, ...)
  local co = pool[#pool]
  if co then
    pool[#pool] = nil
  else
    co = co_create(body)
    managed[co] = true
    resume(co) -- to its first yield: it takes fn and its arguments there
  end
  local ok, r = resume(co, fn, ...)
  if r ~= POOLED then -- it did not finish at once (or failed)
    settle(co, on_fail, ctx, ok, r)
  end
  return co
end


-- Runs fn(...) in a pooled coroutine, now, until it finishes or waits; an error is logged
-- with its traceback.
function spawn(fn, ...)
  return spawn_guarded(log_failure, nil, fn, ...)
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
  local on_fail, ctx = fails[co] or log_failure, ctxs[co]
  local ok, r = resume(co, ...)
  settle(co, on_fail, ctx, ok, r)
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
  spawn_guarded = spawn_guarded,
  current = current,
  in_handler = in_handler,
  wait = wait,
  wake = wake,
  waiter = waiter,
}
