-- Event handlers with :on(event, fn). emit runs each handler in its own coroutine, in the
-- order they were added; a handler that raises is logged and the others still run.
local coro = require("luacluster.lib.coro")
local log = require("luacluster.lib.log")

local spawn = coro.spawn
local resume, yield, traceback = coroutine.resume, coroutine.yield, debug.traceback

local on, off, has, emit, emit3, first, request_handler, take_over, mixin


-- the handlers of event on self (the one reader of the private _events besides on), or nil
local function list_of(self, event)
  local handlers = rawget(self, "_events")
  return handlers and handlers[event]
end


function on(self, event, fn)
  if type(event) ~= "string" then
    error("event name must be a string", 2)
  end
  if type(fn) ~= "function" then
    error("handler for '" .. event .. "' must be a function", 2)
  end
  local handlers = rawget(self, "_events")
  if not handlers then
    handlers = {}
    rawset(self, "_events", handlers)
  end
  local list = handlers[event]
  if not list then
    list = {}
    handlers[event] = list
  end
  list[#list + 1] = fn
  return self
end


function off(self, event, fn)
  local list = list_of(self, event)
  if not list then
    return self
  end
  for i = #list, 1, -1 do
    if fn == nil or list[i] == fn then
      table.remove(list, i)
    end
  end
  return self
end


function has(self, event)
  local handlers = rawget(self, "_events") -- (inline: the hot path of every event)
  local list = handlers and handlers[event]
  return list ~= nil and #list > 0
end


-- Runs every handler of event; returns true when there was at least one.
function emit(self, event, ...)
  local handlers = rawget(self, "_events") -- (inline: the hot path of every event)
  local list = handlers and handlers[event]
  if not list or #list == 0 then
    return false
  end
  if #list == 1 then
    spawn(list[1], ...)
    return true
  end
  local copy = { unpack(list) }
  for i = 1, #copy do
    spawn(copy[i], ...)
  end
  return true
end


-- emit3's dispatcher: one coroutine from coro's pool that runs handlers one after another, with
-- three arguments each, for as long as none waits. A resume with fixed arguments and a loop
-- without a vararg call cost ~520 instructions where coro.spawn's (vararg) costs ~800: the
-- worker's message path, a message at a time. A handler that waits keeps the coroutine: the
-- dispatcher is given up (gone, the next emit3 takes another), and when that handler ends, the
-- coroutine leaves the loop and goes back to coro's pool.
local DONE = {}
local idle -- the dispatcher not running a handler now, or nil


local function on_error(err)
  return traceback(tostring(err), 2)
end


local function new_dispatcher()
  local d = { gone = false }
  d.co = spawn(function()
    local fn, a, b, c = yield(DONE)
    while true do
      local ok, err = xpcall(fn, on_error, a, b, c)
      if not ok then
        log.error(err)
      end
      if d.gone then
        return
      end
      fn, a, b, c = nil, nil, nil, nil -- (nothing kept alive while it waits for the next)
      fn, a, b, c = yield(DONE)
    end
  end)
  return d
end


local function dispatch3(fn, a, b, c)
  local d = idle or new_dispatcher()
  idle = nil -- (a handler that emits meanwhile takes another)
  local ok, r = resume(d.co, fn, a, b, c)
  if ok and r == DONE then
    idle = d
  else -- it waits (or yielded by itself): the coroutine is that handler's now
    d.gone = true
    if not ok then
      log.error(traceback(d.co, tostring(r)))
    end
  end
end


-- emit(self, event, a, b, c) for exactly three arguments (each handler gets three, nils
-- included), on a path that costs less per event: for the hot events (a worker's messages).
function emit3(self, event, a, b, c)
  local handlers = rawget(self, "_events")
  local list = handlers and handlers[event]
  local n = list and #list or 0
  if n == 0 then
    return false
  end
  if n == 1 then
    dispatch3(list[1], a, b, c)
    return true
  end
  local copy = { unpack(list) }
  for i = 1, n do
    dispatch3(copy[i], a, b, c)
  end
  return true
end


-- The first handler of event, or nil (a request is answered by one handler: the first).
function first(self, event)
  local list = list_of(self, event)
  return list and list[1]
end


-- A channel's request handler that answers with self's first `event` handler (called with
-- the arguments before msg, then msg), or raises `missing` when there is none.
function request_handler(self, missing, ...)
  local n, pre = select("#", ...), { ... }
  return function(msg)
    local fn = first(self, "request")
    if not fn then
      error(missing, 0)
    end
    if n == 0 then
      return fn(msg)
    end
    local args = { unpack(pre, 1, n) }
    args[n + 1] = msg
    return fn(unpack(args, 1, n + 1))
  end
end


-- Gives `to` every handler of `from` (what it had is dropped): a reload's new code takes over.
function take_over(to, from)
  rawset(to, "_events", rawget(from, "_events") or {})
end


-- Adds on/off/emit to a table or a metatable's __index.
function mixin(t)
  t.on, t.off, t.emit, t.has_listeners = on, off, emit, has
  return t
end


return {
  on = on,
  off = off,
  has = has,
  emit = emit,
  emit3 = emit3,
  first = first,
  request_handler = request_handler,
  take_over = take_over,
  mixin = mixin,
}
