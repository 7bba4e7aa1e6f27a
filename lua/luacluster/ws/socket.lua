-- luacluster.ws.socket: the Lua side of a WebSocket (runtime/ws_conn.c has the frames). accept
-- answers an upgrade (luacluster.ws.handshake) and returns the ws object: ws:send, ws:receive
-- (waits), ws:on("message" | "close"), ws:ping, ws:close, ws.protocol. A message goes to the
-- "message" handlers when there are some, else it waits in a queue for ws:receive.
-- ws:subscribe(topic) / ws:unsubscribe(topic): the runtime queues every publish of topic on
-- the socket (runtime/ws_fanout.c); a closed socket leaves its topics by itself.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local emitter = require("luacluster.lib.emitter")
local handshake = require("luacluster.ws.handshake")

local ws_send, ws_close, ws_accept, http_respond = core.ws_send, core.ws_close, core.ws_accept, core.http_respond
local ws_subscribe, ws_unsubscribe = core.ws_subscribe, core.ws_unsubscribe
local concat = table.concat

local M = {}

local ws_mt = {}
ws_mt.__index = ws_mt
emitter.mixin(ws_mt)

local OPCODE = { text = 1, binary = 2 }
local DEFAULT_MAX = 1048576

local function on_event(ws, event, a, b)
  if event == "message" then
    if emitter.has(ws, "message") then
      emitter.emit(ws, "message", a, b)
      return
    end
    local w = ws._receiver
    if w then
      ws._receiver = nil
      w:wake(a, b)
      return
    end
    local q = ws._queue
    q[#q + 1] = { a, b }
  else -- close: code, reason
    ws._closed = { a, b }
    local w = ws._receiver
    ws._receiver = nil
    if w then
      w:wake(nil, "closed", a, b)
    end
    emitter.emit(ws, "close", a, b)
  end
end

-- accept(req, opts) -> ws | nil, err (the client has been answered: 400 or 426)
function M.accept(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("req:websocket: opts must be a table", 3)
  end
  opts = opts or {}
  local max = opts.max_message_size or DEFAULT_MAX
  if type(max) ~= "number" or not (max >= 0) then
    error("req:websocket: max_message_size must be a number >= 0", 3)
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
  local ws = setmetatable({ protocol = protocol, _c = req._c, _s = req._s, _queue = {} }, ws_mt)
  local pmd = err   -- permessage-deflate's parameters when negotiated (see handshake.check)
  local ok, aerr = ws_accept(req._c, req._s, concat(lines, "\r\n"), max, function(event, a, b)
    on_event(ws, event, a, b)
  end, pmd)
  if not ok then
    return nil, aerr
  end
  return ws
end

function ws_mt:send(data, kind)
  local op = OPCODE[kind or "text"]
  if not op then
    error("ws:send: kind must be \"text\" or \"binary\"", 2)
  end
  if self._closed then
    return nil, "closed"
  end
  local ok, err = ws_send(self._c, self._s, tostring(data), op)
  if not ok then
    return nil, err
  end
  return true
end

function ws_mt:ping(data)
  if self._closed then
    return nil, "closed"
  end
  local ok, err = ws_send(self._c, self._s, tostring(data or ""), 9)
  if not ok then
    return nil, err
  end
  return true
end

-- -> data, kind | nil, "closed", code, reason
function ws_mt:receive()
  local q = self._queue
  if #q > 0 then
    local m = table.remove(q, 1)
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

-- ws:subscribe / ws:unsubscribe: fn(conn, seq, topic) in the runtime (runtime/ws_fanout.c)
local function topic_call(self, fname, fn, topic)
  if type(topic) ~= "string" or topic == "" then
    error("ws:" .. fname .. ": topic must be a non-empty string", 3)
  end
  if self._closed then
    return nil, "closed"
  end
  return fn(self._c, self._s, topic)
end

-- ws:subscribe(topic) -> true | nil, err: every publish of topic is sent on this socket
function ws_mt:subscribe(topic)
  local ok, err = require("luacluster.pubsub").ready_for_sockets() -- lazy: only apps that subscribe
  if not ok then
    return nil, err
  end
  return topic_call(self, "subscribe", ws_subscribe, topic)
end

function ws_mt:unsubscribe(topic)
  return topic_call(self, "unsubscribe", ws_unsubscribe, topic)
end

function ws_mt:close(code, reason)
  if self._closed then
    return nil, "closed"
  end
  local ok, err = ws_close(self._c, self._s, code or 1000, reason or "")
  if not ok then
    return nil, err
  end
  return true
end

return M
