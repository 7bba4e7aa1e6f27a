-- luacluster.ws.socket: the Lua side of a WebSocket (runtime/ws_conn.c has the frames). accept
-- answers an upgrade (luacluster.ws.handshake) and returns the ws object: ws:send, ws:receive
-- (waits), ws:on("message" | "close"), ws:ping, ws:close, ws.protocol. A message goes to the
-- "message" handlers when there are some, else it waits in a queue for ws:receive.
-- ws:subscribe(topic) / ws:unsubscribe(topic): the runtime queues every publish of topic on
-- the socket (runtime/ws_fanout.c); a closed socket leaves its topics by itself.
-- Backpressure both ways: past QUEUE_BYTES or QUEUE_COUNT of messages not taken, the runtime
-- stops reading the socket (core.ws_read) until ws:receive has taken half; ws:send waits while
-- the client has 1 MiB queued (the connection's send timeout ends a client that reads nothing).
-- The handler's end (http.lua calls handler_returned): a WebSocket with no "message" handler
-- and no subscription is closed with 1000; one kept by a subscription alone drops the client's
-- messages from then on (nobody can take them), so that it keeps reading (pings, the close). A
-- handler that raised (http.lua calls handler_failed) closes its WebSocket with 1011. A
-- draining worker closes its WebSockets with 1001 shortly before its drain_timeout (the drain
-- hook below).
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local emitter = require("luacluster.lib.emitter")
local runtime = require("luacluster.lib.runtime")
local timer0 = require("luacluster.lib.timer0")
local handshake = require("luacluster.ws.handshake")
local log = require("luacluster.lib.log")

local ws_send, ws_close, ws_accept, ws_read = core.ws_send, core.ws_close, core.ws_accept, core.ws_read
local ws_subscribe, ws_unsubscribe = core.ws_subscribe, core.ws_unsubscribe
local http_respond, http_on_drain = core.http_respond, core.http_on_drain
local concat, in_handler = table.concat, coro.in_handler

local M = {}

local ws_mt = {}
ws_mt.__index = ws_mt
emitter.mixin(ws_mt)
local emitter_on, emitter_off = ws_mt.on, ws_mt.off

local OPCODE = { text = 1, binary = 2 }
local DEFAULT_MAX = 1048576
local WRITE_HIGH_WATER = 1048576 -- ws:send waits past this many bytes queued (runtime: LC_WS_MAX_QUEUED)
-- messages not taken (waiting for ws:receive, or with a "message" handler still running):
-- reading stops past either
local QUEUE_BYTES, QUEUE_COUNT = 1048576, 1000
local open = {} -- seq (its request's) -> ws while open: the drain closes them
local gone = false -- the drain has closed them: one accepted later is closed at once
local told_dropped = false -- the first message dropped in this process is logged (a warn line)


-- reading again, from a later loop turn (core.ws_read delivers what waits into Lua: never from
-- inside the coroutine that asked)
local function resume_reading(ws)
  ws._paused = false
  timer0.next_turn(function()
    if not ws._closed and not ws._paused then
      ws_read(ws._c, ws._s, true)
    end
  end)
end


-- the messages not taken: bytes, count
local function pressure(ws)
  return ws._qbytes + ws._hbytes, ws._qt - ws._qh + 1 + ws._held
end


local function maybe_pause(ws)
  if ws._paused or ws._closed then
    return
  end
  local bytes, n = pressure(ws)
  if bytes >= QUEUE_BYTES or n >= QUEUE_COUNT then
    ws._paused = true
    ws_read(ws._c, ws._s, false)
  end
end


local function maybe_resume(ws)
  if not ws._paused then
    return
  end
  local bytes, n = pressure(ws)
  if bytes < QUEUE_BYTES / 2 and n < QUEUE_COUNT / 2 then
    resume_reading(ws)
  end
end


local function enqueue(ws, a, b)
  local t = ws._qt + 1
  ws._qt = t
  ws._queue[t] = { a, b }
  ws._qbytes = ws._qbytes + #a
  maybe_pause(ws)
end


-- the oldest message not taken, or nil
local function dequeue(ws)
  local h = ws._qh
  local m = ws._queue[h]
  if not m then
    return nil
  end
  ws._queue[h] = nil
  ws._qh = h + 1
  ws._qbytes = ws._qbytes - #m[1]
  maybe_resume(ws)
  return m
end


local function on_error(err)
  return debug.traceback(tostring(err), 2)
end


-- A "message" handler as the emitter runs it (in a coroutine of its own): counted as a message
-- not taken until it returns, so that handlers that wait (a database, a slow send) while a
-- client floods stop the reading too.
local function held(ws, fn)
  return function(data, kind)
    local n = #data
    ws._held, ws._hbytes = ws._held + 1, ws._hbytes + n
    local ok, err = xpcall(fn, on_error, data, kind)
    ws._held, ws._hbytes = ws._held - 1, ws._hbytes - n
    maybe_resume(ws)
    if not ok then
      log.error("a WebSocket's message handler failed: " .. err)
    end
  end
end


-- a message that nobody can take: counted (ws._dropped), and the first of the process logged
-- (not one that comes after the server's close frame)
local function drop(ws)
  ws._dropped = (ws._dropped or 0) + 1
  if not told_dropped and ws._returned ~= "closing" then
    told_dropped = true
    log.warn("a WebSocket's message was dropped: its handler has returned and it has no \"message\""
      .. " handler to take it (logged once per process)")
  end
end


local function on_event(ws, event, a, b)
  if event == "message" then
    if emitter.has(ws, "message") then
      emitter.emit(ws, "message", a, b)
      maybe_pause(ws) -- its handlers that wait hold it
      return
    end
    local w = ws._receiver
    if w then
      ws._receiver = nil
      w:wake(a, b)
      return
    end
    if ws._returned then -- its handler is done and it has no "message" handler: nobody takes it
      drop(ws)
      return
    end
    enqueue(ws, a, b)
  else -- close: code, reason
    ws._closed = { a, b }
    open[ws._s] = nil
    local w = ws._receiver
    ws._receiver = nil
    if w then
      w:wake(nil, "closed", a, b)
    end
    emitter.emit(ws, "close", a, b)
  end
end


-- A draining worker (reload, stop): its WebSockets go on until shortly before its drain
-- deadline (worker/side.lua sets runtime.drain_deadline), then get 1001, so that their clients
-- reconnect to the new generation before this worker is ended. Without a deadline: at once.
local function going_away()
  gone = true
  for _, ws in pairs(open) do
    ws:close(1001, "going away")
  end
end


local function on_drain()
  local deadline = runtime.drain_deadline
  if type(deadline) ~= "number" then
    going_away()
    return
  end
  local ms = deadline - core.now()
  local t
  t = core.timer_new(function()
    t:close()
    going_away()
  end)
  t:start(math.max(0, ms - math.min(1000, ms / 10)), 0)
  t:unref() -- the WebSockets keep the worker alive, not this timer
end

runtime.drain_hooks[M] = on_drain
if runtime.drain_deadline then -- loaded by a request that came during a drain: its hooks have run
  on_drain()
end

local OPTS = { max_message_size = true, protocols = true, idle_timeout = true, ping_interval = true,
  compress = true }

-- accept(req, opts) -> ws | nil, err (the client has been answered: 400 or 426). Called by
-- req:websocket (not as a tail call): its errors name the line of the app that called that.
function M.accept(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("req:websocket: opts must be a table", 3)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTS[k] then
      error("req:websocket: unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  local max = opts.max_message_size or DEFAULT_MAX
  if type(max) ~= "number" or not (max >= 0) or (max % 1 ~= 0 and max ~= math.huge) then
    error("req:websocket: max_message_size must be a whole number of bytes >= 0 (0 or math.huge: no limit)", 3)
  end
  if opts.protocols ~= nil and type(opts.protocols) ~= "table" then
    error("req:websocket: protocols must be a list of names", 3)
  end
  local deflate
  if opts.compress then
    local ok, s = pcall(handshake.deflate_settings, opts.compress)
    if not ok then error("req:websocket: " .. s, 3) end
    deflate = s
  end
  for _, k in ipairs({ "idle_timeout", "ping_interval" }) do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or not (v >= 0)) then
      error("req:websocket: " .. k .. " must be a number of ms >= 0", 3)
    end
  end
  local h, protocol, err, extra = handshake.check(req.method, req._m, req.headers, opts.protocols, deflate)
  if not h then
    local status = protocol
    local headers = { ["Content-Type"] = "text/plain", Connection = "close" }
    for k, v in pairs(extra or {}) do
      headers[k] = v
    end
    http_respond(req._c, req._s, status, headers, err .. "\n")
    return nil, err
  end
  local lines = { "HTTP/1.1 101 Switching Protocols" }
  for k, v in pairs(h) do
    lines[#lines + 1] = k .. ": " .. v
  end
  lines[#lines + 1] = "\r\n"
  local ws = setmetatable({ protocol = protocol, _c = req._c, _s = req._s, _queue = {}, _qh = 1, _qt = 0,
    _qbytes = 0, _held = 0, _hbytes = 0 }, ws_mt)
  local pmd = err   -- permessage-deflate's parameters when negotiated (see handshake.check)
  local ok, pending = ws_accept(req._c, req._s, concat(lines, "\r\n"), max, function(event, a, b)
    on_event(ws, event, a, b)
  end, opts.idle_timeout or 0, opts.ping_interval or 0, pmd)
  if not ok then
    return nil, pending
  end
  open[ws._s] = ws
  rawset(req, "_ws", ws) -- http.lua: handler_returned once the handler is done
  if gone then -- accepted after the drain's 1001s (a keep-alive request that came late)
    ws:close(1001, "going away")
  end
  if pending then -- frames the client sent before it read the 101
    resume_reading(ws)
  end
  return ws
end


-- The handler that accepted ws has returned: ws lives on only with a "message" handler or a
-- subscription (_topics, ws:subscribe's); else it is closed (1000). From now on a message
-- that finds no "message" handler (and no coroutine in ws:receive) is dropped (on_event), and
-- so are those that wait: no ws:receive is coming to take them, and a queue that nobody
-- empties would stop the reading (pings, the close).
function M.handler_returned(ws)
  if ws._closed then
    return
  end
  if not emitter.has(ws, "message") and not (ws._topics and next(ws._topics) ~= nil) then
    ws._returned = "closing" -- what the client sends until it answers the close is dropped too
    ws:close(1000, "")
    return
  end
  ws._returned = true
  while dequeue(ws) do
    drop(ws)
  end
end


-- The handler that accepted ws raised: whatever it set up (a "message" handler, subscriptions)
-- is not what it meant, so ws is closed with 1011 (the error is logged by http.lua).
function M.handler_failed(ws)
  if ws._closed then
    return
  end
  ws._returned = "closing"
  ws:close(1011, "the handler failed")
end


-- ws:on("message", fn): the messages that waited for ws:receive go to fn first, in order
function ws_mt:on(event, fn)
  if event ~= "message" then
    return emitter_on(self, event, fn) -- (a tail call: its errors name the caller's line)
  end
  if type(fn) ~= "function" then
    error("handler for 'message' must be a function", 2)
  end
  local h = held(self, fn)
  local wrapped = self._wrapped or {}
  self._wrapped = wrapped
  wrapped[fn] = h
  local r = emitter_on(self, event, h)
  while true do
    local m = dequeue(self)
    if not m then
      break
    end
    emitter.emit(self, "message", m[1], m[2])
  end
  maybe_pause(self) -- (handlers of those that wait)
  return r
end


function ws_mt:off(event, fn)
  local h = event == "message" and self._wrapped and self._wrapped[fn]
  if h then
    self._wrapped[fn] = nil
    return emitter_off(self, event, h)
  end
  return emitter_off(self, event, fn)
end


-- ws:send's backpressure: the coroutine waits until the queue is down to half (or the
-- connection is gone); every sender that waits meanwhile wakes with the first
local function wait_drain(self)
  if not in_handler() then
    return
  end
  local list = self._senders
  local w = coro.waiter("ws:send")
  if list then
    list[#list + 1] = w
    w:wait()
    return
  end
  if not http_on_drain(self._c, self._s, function()
    local l = self._senders
    self._senders = nil
    for i = 1, #l do
      l[i]:wake()
    end
  end) then
    return
  end
  self._senders = { w }
  w:wait()
end

function ws_mt:send(data, kind)
  local op = OPCODE[kind or "text"]
  if not op then
    error("ws:send: kind must be \"text\" or \"binary\"", 2)
  end
  if self._closed then
    return nil, "closed"
  end
  local ok, queued = ws_send(self._c, self._s, tostring(data), op, in_handler())
  if ok == false then -- text that is not UTF-8
    error("ws:send: " .. queued, 2)
  end
  if not ok then
    return nil, queued
  end
  if queued >= WRITE_HIGH_WATER then
    wait_drain(self)
  end
  return true
end

function ws_mt:ping(data)
  if self._closed then
    return nil, "closed"
  end
  local ok, err = ws_send(self._c, self._s, tostring(data or ""), 9, in_handler())
  if not ok then
    return nil, err
  end
  return true
end

-- -> data, kind | nil, "closed", code, reason
function ws_mt:receive()
  local m = dequeue(self)
  if m then
    return m[1], m[2]
  end
  if self._closed then
    return nil, "closed", self._closed[1], self._closed[2]
  end
  if self._receiver then
    error("ws:receive: another coroutine is already receiving on this WebSocket", 2)
  end
  local w = coro.waiter("ws:receive")
  self._receiver = w
  return w:wait()
end

-- ws:subscribe / ws:unsubscribe: fn(conn, seq, topic) in the runtime (runtime/ws_fanout.c).
-- Only a worker's WebSockets get publishes: elsewhere (the master's own servers) the call
-- raises, since it could never work (rather than a true, or a nil, err that goes unread).
local function topic_call(self, fname, fn, topic)
  if type(topic) ~= "string" or topic == "" then
    error("ws:" .. fname .. ": topic must be a non-empty string", 3)
  end
  if runtime.role ~= "worker" then
    error("ws:" .. fname .. ": WebSockets subscribe in workers only (this is a "
      .. tostring(runtime.role or "master") .. " process)", 3)
  end
  if self._closed then
    return nil, "closed"
  end
  if fn == ws_subscribe then
    require("luacluster.pubsub").ready_for_sockets() -- lazy: only apps that subscribe
  end
  return fn(self._c, self._s, topic)
end

-- ws:subscribe(topic) -> true | nil, err: every publish of topic is sent on this socket
function ws_mt:subscribe(topic)
  local done, serr = topic_call(self, "subscribe", ws_subscribe, topic)
  if done then -- (handler_returned: a subscribed socket outlives its handler)
    local t = self._topics or {}
    t[topic] = true
    self._topics = t
  end
  return done, serr
end

function ws_mt:unsubscribe(topic)
  local done, err = topic_call(self, "unsubscribe", ws_unsubscribe, topic)
  if done and self._topics then
    self._topics[topic] = nil
  end
  return done, err
end

function ws_mt:close(code, reason)
  if self._closed then
    return nil, "closed"
  end
  local ok, err = ws_close(self._c, self._s, code or 1000, reason or "")
  if ok == false then -- a reason that is not UTF-8
    error("ws:close: " .. err, 2)
  end
  if not ok then
    return nil, err
  end
  return true
end

return M
