-- A message channel to another process: Lua values over the C runtime's framed IPC pipe
-- (runtime/ipc.c), with the frame kinds kept apart (user messages, the runtime's control
-- messages, requests and their replies). The same code serves master<->worker and
-- parent<->forked child.
local core = require("luacluster.core")
local codec = require("luacluster.lib.codec")
local coro = require("luacluster.lib.coro")
local log = require("luacluster.lib.log")
local timer0 = require("luacluster.lib.timer0")

local encode, decode_string, decode_error = codec.encode, codec.decode_string, codec.decode_error
local K = core.kind
local MSG, CTRL, REQ, REPLY, ROUTE, BCAST, ROUTE_FAIL = K.MSG, K.CTRL, K.REQ, K.REPLY, K.ROUTE, K.BCAST, K.ROUTE_FAIL

local set_handle_wrappers, new, open_fd, fail_request

-- a socket or server a message carries: the core handle is wrapped as a net socket or server
-- when it arrives (adopt) and unwrapped when it is sent (raw): luacluster.net's adopt and raw,
-- which boot.lua registers here (net loads at the first socket); this layer is below net
local adopt = function(h) return h end
local raw = function(obj) return obj end


function set_handle_wrappers(wrap, unwrap)
  adopt, raw = wrap, unwrap
end


local channel_mt = {}
channel_mt.__index = channel_mt

local DEFAULT_REQUEST_TIMEOUT = 30000


local now = core.now


-- A pending request: { w = waiter | cb = function, at = deadline (loop ms) or nil }.
-- Timeouts share one timer per channel, armed for the earliest deadline (a timer per request
-- cost a fifth of the round trip rate): settling a request leaves the timer alone, and when
-- it fires it expires what is due and re-arms itself for the next deadline.
local function settle(self, seq, ok, value)
  local p = self.pending[seq]
  if not p then
    return
  end
  self.pending[seq] = nil
  local n = self.npending - 1
  self.npending = n
  if n == 0 and self.timer_at then
    self.timer:stop() -- nothing left to time out: the loop need not wait for it
    self.timer_at = nil
  end
  local cb = p.cb
  if cb then
    if ok then
      coro.spawn(cb, value)
    else
      coro.spawn(cb, nil, value)
    end
  elseif ok then
    p.w:wake(value)
  else
    p.w:wake(nil, value)
  end
end


local sweep


local function arm(self, at)
  local t = self.timer
  if not t then
    t = core.timer_new(function() sweep(self) end)
    self.timer = t
  end
  self.timer_at = at
  local delay = at - now()
  t:start(delay > 0 and delay or 0, 0)
end


function sweep(self)
  self.timer_at = nil
  local t = now()
  local due, earliest = nil, nil
  for seq, p in pairs(self.pending) do
    local at = p.at
    if at then
      if at <= t then
        due = due or {}
        due[#due + 1] = seq
      elseif not earliest or at < earliest then
        earliest = at
      end
    end
  end
  if earliest then
    arm(self, earliest)
  end
  if due then
    table.sort(due)
    for i = 1, #due do
      settle(self, due[i], false, "timeout")
    end
  end
end


local function on_handler_error(err)
  log.error("request handler failed: " .. debug.traceback(tostring(err), 2))
  return tostring(err)
end


local function answer_body(self, seq, from, handler, msg)
  local reply
  if not handler then
    reply = { false, "no request handler" }
  else
    local ok, value = xpcall(handler, on_handler_error, msg, from)
    reply = ok and { true, value } or { false, "request handler failed: " .. value }
  end
  local bytes, err = encode(reply)
  if not bytes then
    bytes = encode({ false, "cannot send the reply: " .. err })
  end
  if not self.handle:is_closed() then
    self.handle:send(REPLY, from or 0, seq, bytes)
  end
end


local function answer(self, seq, from, handler, msg)
  coro.spawn(answer_body, self, seq, from, handler, msg)
end


-- a frame whose payload does not decode: its socket is closed, the error reported
local function bad_payload(h, err, handle)
  if handle then handle:close() end
  if h.error then h.error(decode_error(err)) end
end


local function on_frame(self, kind, peer, seq, payload, handle)
  local h = self.handlers
  if kind == MSG and handle == nil then -- the hot path: a message without a socket
    local ok, msg = decode_string(payload)
    if not ok then
      return bad_payload(h, msg, nil)
    end
    local message = h.message
    if message then
      message(msg, nil, peer ~= 0 and peer or nil)
    end
    return
  end
  if kind == "close" then
    self.closed = true
    local seqs = {}
    for s in pairs(self.pending) do
      seqs[#seqs + 1] = s
    end
    table.sort(seqs)
    for i = 1, #seqs do
      settle(self, seqs[i], false, "channel closed before the reply came")
    end
    if self.timer then
      self.timer:close()
      self.timer, self.timer_at = nil, nil
    end
    if h.close then h.close() end
    return
  elseif kind == "error" then
    if h.error then h.error(peer) end
    return
  end
  if kind == ROUTE_FAIL then
    if h.route_fail then h.route_fail(peer, seq) end
    return
  end
  local ok, msg = decode_string(payload)
  if not ok then
    return bad_payload(h, msg, handle)
  end
  if handle and (kind == MSG or kind == REQ) then
    handle = adopt(handle)
  end
  if kind == MSG then
    if h.message then
      h.message(msg, handle, peer ~= 0 and peer or nil)
    elseif handle then
      handle:close()
    end
  elseif kind == CTRL then
    h.control(msg, handle)
  elseif kind == REQ then
    answer(self, seq, peer ~= 0 and peer or nil, h.request, msg)
  elseif kind == REPLY then
    if type(msg) == "table" then
      settle(self, seq, msg[1] == true, msg[2])
    end
  elseif h.error then
    h.error("unexpected frame kind " .. tostring(kind))
  end
end


-- handlers: message(msg, handle, from), control(msg, handle), request(msg, from) -> reply,
-- error(err), close(), route_fail(target, seq). Either an open fd or an existing core ipc
-- handle (one created for a spawn) is wrapped.
function new(handlers)
  local self = setmetatable({ handlers = handlers, pending = {}, npending = 0, seq = 0, closed = false }, channel_mt)
  return self, function(kind, peer, seq, payload, handle)
    return on_frame(self, kind, peer, seq, payload, handle)
  end
end


function open_fd(fd, handlers)
  local self, cb = new(handlers)
  local h, err = core.ipc_open(fd, cb)
  if not h then
    return nil, err
  end
  self.handle = h
  return self
end


function channel_mt:is_closed()
  return self.closed or self.handle:is_closed()
end


-- (the C send refuses a channel that is closing: "channel closed"; no second check here)
local function write(self, kind, peer, seq, msg, handle)
  if self.closed then
    return nil, "channel closed"
  end
  if type(handle) == "table" then
    handle = raw(handle)
  end
  local bytes, err = encode(msg)
  if not bytes then
    return nil, err
  end
  return self.handle:send(kind, peer, seq, bytes, handle)
end


function channel_mt:send(msg, handle)
  return write(self, MSG, 0, 0, msg, handle)
end


-- a message already encoded once for many channels (broadcast)
function channel_mt:send_encoded(bytes)
  if self:is_closed() then
    return nil, "channel closed"
  end
  return self.handle:send(MSG, 0, 0, bytes)
end


function channel_mt:control(msg, handle)
  return write(self, CTRL, 0, 0, msg, handle)
end


function channel_mt:route(to, msg)
  self.seq = (self.seq % 4294967295) + 1
  return write(self, ROUTE, to, self.seq, msg)
end


function channel_mt:broadcast(msg)
  return write(self, BCAST, 0, 0, msg)
end


-- A request that cannot be sent: returns nil, err, and in the callback form also calls
-- cb(nil, err) in a later loop turn, so that cb is called exactly once whatever happens.
function fail_request(timeout, cb, err)
  if type(timeout) == "function" then
    cb = timeout
  end
  if type(cb) == "function" then
    timer0.next_turn(function()
      coro.spawn(cb, nil, err)
    end)
  end
  return nil, err
end


-- request(msg [, timeout_ms] [, cb]): with cb, returns true at once and calls cb(reply) or
-- cb(nil, err) exactly once (a request that cannot be sent also returns nil, err); without,
-- waits and returns reply | nil, err. Replies are matched to requests by a sequence number,
-- so any number may be in flight on one channel.
function channel_mt:request(msg, timeout, cb)
  if type(timeout) == "function" then
    timeout, cb = nil, timeout
  end
  timeout = timeout or DEFAULT_REQUEST_TIMEOUT
  if type(timeout) ~= "number" or timeout < 0 then
    error("request: timeout must be a number of milliseconds", 3)
  end
  if cb ~= nil and type(cb) ~= "function" then
    error("request: the callback must be a function", 3)
  end
  local w
  if cb == nil then
    w = coro.waiter("request")
  end
  self.seq = (self.seq % 4294967295) + 1
  local seq = self.seq
  local ok, err = write(self, REQ, 0, seq, msg)
  if not ok then
    return fail_request(nil, cb, err)
  end
  local p = { w = w, cb = cb }
  if timeout > 0 then
    local at = now() + timeout
    p.at = at
    local armed = self.timer_at
    if not armed or at < armed then
      arm(self, at)
    end
  end
  self.pending[seq] = p
  self.npending = self.npending + 1
  if cb then
    return true
  end
  return w:wait()
end


function channel_mt:close()
  if self.handle then
    self.handle:close()
  end
end


return {
  set_handle_wrappers = set_handle_wrappers,
  new = new,
  open_fd = open_fd,
  fail_request = fail_request,
}
