-- A raw WebSocket client for spec/ws_conformance_spec.lua: plays one vector of spec/ws_vectors.lua
-- on a fresh TCP connection (the upgrade, then its frames exactly as written there, masked or not,
-- in the writes it asks for) and returns what the server did against what the vector expects:
-- run(port, vector [, timeout_ms]) -> problems (a list of strings; empty when the outcome is the expected one).
-- Every server frame is checked on the way (RFC 6455 5.1-5.5: unmasked, no RSV bit, a known
-- opcode, control frames whole and <= 125 bytes, nothing after its close).
local ffi = require("ffi")
local bit = require("bit")
local H = require("helper")
local zlib = require("ws_zlib")

pcall(ffi.cdef, "long send(int fd, const void *buf, unsigned long n, int flags);")
local C = ffi.C
local MSG_NOSIGNAL, IPPROTO_TCP, TCP_NODELAY = 0x4000, 6, 1

local M = {}

local char, concat, floor = string.char, table.concat, math.floor

local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = char(n % 256)
    n = floor(n / 256)
  end
  return concat(t)
end

local function xor(payload, key)
  local n = #payload
  if n == 0 then return "" end
  local buf = ffi.new("uint8_t[?]", n)
  ffi.copy(buf, payload, n)
  local k = { key:byte(1, 4) }
  for i = 0, n - 1 do
    buf[i] = bit.bxor(buf[i], k[i % 4 + 1])
  end
  return ffi.string(buf, n)
end

-- the frame's bytes as a client writes them: header (with its length field), mask, payload
local function encode(f, nth)
  if f.bytes then return f.bytes, f.hlen end
  local n = f.len or #f.payload
  local b0 = (f.fin and 0x80 or 0) + f.rsv * 16 + f.op
  local m = f.mask and 0x80 or 0
  local h
  if f.len_raw then
    h = char(b0, m + 127) .. f.len_raw
  elseif f.len_bytes == 8 or (not f.len_bytes and n > 65535) then
    h = char(b0, m + 127) .. be(n, 8)
  elseif f.len_bytes == 2 or n > 125 then
    h = char(b0, m + 126) .. be(n, 2)
  else
    h = char(b0, m + n)
  end
  local payload = f.payload
  if f.mask then
    local key = f.key or char(0x37, 0xfa, (0x21 + nth * 7) % 256, (0x3d + nth * 13) % 256)
    h = h .. key
    payload = xor(payload, key)
  end
  f.bytes, f.hlen = h .. payload, #h
  return f.bytes, f.hlen
end

-- the vector's steps as actions: { write = bytes } | { pause | wait_close | wait_events | shutdown }
local function actions(v)
  local out, pending = {}, {}
  local per_frame = v.write == "frames"
  local function flush()
    if #pending > 0 then
      out[#out + 1] = { write = concat(pending) }
      pending = {}
    end
  end
  for i, s in ipairs(v.send) do
    if s.op then
      pending[#pending + 1] = (encode(s, i))
      if per_frame then flush() end
    elseif s.raw then
      pending[#pending + 1] = s.raw
      if per_frame then flush() end
    elseif s.piece then
      local bytes, hlen = encode(s.piece, i)
      local from = s.from == 0 and 1 or hlen + s.from
      local to = s.to and hlen + s.to or #bytes
      flush()
      out[#out + 1] = { write = bytes:sub(from, to) }
    else
      flush()
      out[#out + 1] = s
    end
  end
  flush()
  if type(v.write) == "number" then   -- every write cut into writes of v.write bytes
    local chopped = {}
    for _, a in ipairs(out) do
      if a.write then
        for i = 1, #a.write, v.write do
          chopped[#chopped + 1] = { write = a.write:sub(i, i + v.write - 1) }
          if v.chop_pause then chopped[#chopped + 1] = { pause = v.chop_pause } end
        end
      else
        chopped[#chopped + 1] = a
      end
    end
    out = chopped
  end
  return out
end

local function raw_send(fd, s)
  local off = 0
  while off < #s do
    local n = C.send(fd, ffi.cast("const char *", s) + off, #s - off, MSG_NOSIGNAL)
    if n <= 0 then return false end
    off = off + n
  end
  return true
end

-- ---- the server's side of the connection ----

-- RFC 3629 UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF)
local function utf8_valid(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local need, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then need = 0
    elseif c >= 0xC2 and c <= 0xDF then need = 1
    elseif c >= 0xE0 and c <= 0xEF then
      need = 2
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      need = 3
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else
      return false
    end
    for k = 1, need do
      local d = s:byte(i + k)
      if not d or d < (k == 1 and lo or 0x80) or d > (k == 1 and hi or 0xBF) then return false end
    end
    i = i + need + 1
  end
  return true
end
M.utf8_valid = utf8_valid

local reader_mt = {}
reader_mt.__index = reader_mt

local OPNAME = { [1] = "text", [2] = "binary", [8] = "close", [9] = "ping", [10] = "pong" }

-- parses the complete frames in self.parts
function reader_mt:parse()
  local buf = concat(self.parts)
  self.parts = { buf }
  local pos = self.pos
  while true do
    if #buf - pos + 1 < 2 then break end
    local b0, b1 = buf:byte(pos, pos + 1)
    local n, h = b1 % 128, 2
    if n == 126 then
      if #buf - pos + 1 < 4 then break end
      local x, y = buf:byte(pos + 2, pos + 3)
      n, h = x * 256 + y, 4
    elseif n == 127 then
      if #buf - pos + 1 < 10 then break end
      n = 0
      for i = 2, 9 do n = n * 256 + buf:byte(pos + i) end
      h = 10
    end
    if b1 >= 128 then
      self:problem("the server masked a frame (5.1)")
      h = h + 4
    end
    if #buf - pos + 1 < h + n then break end
    local op, fin, rsv = b0 % 16, b0 >= 128, floor(b0 / 16) % 8
    local payload = buf:sub(pos + h, pos + h + n - 1)
    pos = pos + h + n
    local compressed = rsv == 4 and self.inflater and (op == 1 or op == 2)
    if rsv ~= 0 and not compressed then self:problem("the server set RSV bits " .. rsv) end
    if compressed then   -- RFC 7692 7.2.2
      local plain, err = self.inflater:message(payload)
      if not plain then self:problem("the server's compressed message does not inflate: " .. err) end
      payload = plain or ""
    end
    if not fin then self:problem("the server fragmented a frame (opcode " .. op .. ")") end
    if not OPNAME[op] then self:problem("the server sent opcode " .. op) end
    if op >= 8 and n > 125 then self:problem("the server sent a control frame of " .. n .. " bytes") end
    if self.close then self:problem("the server sent a frame (" .. tostring(OPNAME[op]) .. ") after its close") end
    if op == 8 then
      if n == 1 then self:problem("the server's close has a 1-byte payload") end
      self.close = n >= 2 and payload:byte(1) * 256 + payload:byte(2) or 1005
      self.close_bytes = payload:sub(1, 2)
      self.reason = payload:sub(3)
      if not utf8_valid(self.reason) then self:problem("the server's close reason is not UTF-8 (8.1)") end
    elseif op == 9 then
      if self.pings_ok then   -- answered at once, as a client must (5.5.2)
        self.pings = self.pings + 1
        raw_send(self.sock.fd, (encode({ op = 10, payload = payload, fin = true, rsv = 0, mask = true }, 97)))
      else
        self:problem("the server sent a ping")
      end
    elseif OPNAME[op] then
      if op == 1 and not utf8_valid(payload) then self:problem("the server sent text that is not UTF-8 (8.1)") end
      self.events[#self.events + 1] = { OPNAME[op], payload }
    end
  end
  self.pos = pos
  if pos > 1048576 and pos > #buf / 2 then   -- drop what is parsed
    self.parts = { buf:sub(pos) }
    self.pos = 1
  end
end

-- a close from the server gets the client's close back (5.5.1), unless the vector says not to
function reader_mt:answer_close()
  if self.close and not self.close_sent and not self.no_reply then
    self.close_sent = true
    local code = self.close == 1005 and "" or self.close_bytes
    raw_send(self.sock.fd, (encode({ op = 8, payload = code, fin = true, rsv = 0, mask = true }, 98)))
  end
end

function reader_mt:problem(s)
  self.problems[#self.problems + 1] = s
end

-- reads until cond() holds, EOF or timeout_ms; -> cond()
function reader_mt:wait(cond, timeout_ms)
  local deadline = H.now() + timeout_ms
  while not cond() and not self.eof do
    local left = deadline - H.now()
    if left <= 0 then break end
    local d, err = self.sock:recv(left)
    if d == nil and err ~= "read failed" then break end
    if d == nil or d == "" then   -- EOF, or a reset after the server closed
      self.reset = d == nil
      self.eof = true
    else
      self.parts[#self.parts + 1] = d
      self:parse()
      self:answer_close()
    end
  end
  return cond()
end

-- ---- one vector ----

local KEY, ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

local function show(ev)
  local kind, data = ev[1], ev[2]
  local head = data:sub(1, 24):gsub("[^%w%p ]", function(c) return ("\\x%02x"):format(c:byte()) end)
  return ("%s(%d bytes: %s%s)"):format(kind, #data, head, #data > 24 and "..." or "")
end

local function show_list(list)
  local t = {}
  for i, e in ipairs(list) do t[i] = show(e) end
  return "{" .. concat(t, ", ") .. "}"
end

-- the runtime has permessage-deflate when luacluster.ws.socket knows opts.compress (another
-- piece of issue 17 adds it): until then vectors that need it are pending
function M.has_compress()
  local src = H.read_file(H.root .. "/lua/luacluster/ws/socket.lua") or ""
  return src:find("compress", 1, true) ~= nil
end

function M.run(port, v, timeout_ms)
  timeout_ms = v.timeout or timeout_ms or 10000
  local sock, err = H.connect(port, timeout_ms)
  if not sock then return { "connect: " .. tostring(err) } end
  local one = ffi.new("int[1]", 1)
  C.setsockopt(sock.fd, IPPROTO_TCP, TCP_NODELAY, one, ffi.sizeof("int"))
  local r = setmetatable({ sock = sock, parts = {}, pos = 1, events = {}, problems = {}, no_reply = v.no_reply,
    pings_ok = v.server_pings ~= nil, pings = 0 }, reader_mt)
  local expect = v.expect or {}
  local acts = actions(v)
  local upgrade = "GET " .. (v.path or "/") .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Key: " .. KEY .. "\r\nSec-WebSocket-Version: 13\r\n"
    .. (v.compress and "Sec-WebSocket-Extensions: permessage-deflate\r\n" or "") .. "\r\n"
  for _, s in ipairs(v.send) do   -- a vector that sends its own close: the server's is its answer
    if s.op == 8 then r.close_sent = true end
  end
  local first = 1
  if v.pipelined and acts[1] and acts[1].write then
    upgrade = upgrade .. acts[1].write
    first = 2
  end
  raw_send(sock.fd, upgrade)
  local head, how = sock:read_until(function(d) return d:find("\r\n\r\n", 1, true) end, timeout_ms)
  local e = head:find("\r\n\r\n", 1, true)
  if not e or not head:match("^HTTP/1%.1 101 ") or not head:find("\r\nSec%-WebSocket%-Accept: " .. ACCEPT:gsub("%p", "%%%0") .. "\r\n") then
    sock:close()
    return { "no 101 with the right Sec-WebSocket-Accept (" .. tostring(how) .. "): " .. head:sub(1, 200) }
  end
  local ext = head:sub(1, e):lower():match("\r\nsec%-websocket%-extensions:%s*([^\r]*)")
  if v.compress then
    if not (ext and ext:match("^permessage%-deflate")) then
      sock:close()
      return { "permessage-deflate offered, the 101 did not accept it: " .. head:sub(1, e) }
    end
    r.inflater = zlib.new_inflater(ext:find("server_no_context_takeover", 1, true) ~= nil)
  elseif ext then
    r:problem("the 101 names an extension nobody offered: " .. ext)
  end
  r.parts[1] = head:sub(e + 4)
  r:parse()
  for i = first, #acts do
    local a = acts[i]
    if a.write then
      if not raw_send(sock.fd, a.write) and not r.close and not r.eof then
        r:problem("a write failed before the server closed")
      end
    elseif a.pause then   -- reading meanwhile, as a client does (pings are answered at once)
      r:wait(function() return false end, a.pause)
    elseif a.shutdown then
      sock:shutdown_write()
    elseif a.wait_close then
      if not r:wait(function() return r.close ~= nil end, timeout_ms) then
        r:problem("no close from the server before the rest was sent (fail fast)")
      end
    elseif a.wait_events then
      if not r:wait(function() return #r.events >= a.wait_events end, timeout_ms) then
        r:problem(("%d event(s) expected before the rest was sent, got %s"):format(a.wait_events, show_list(r.events)))
      end
    end
  end
  if v.close == nil and not v.drop then
    -- the clean close: once the expected events are in, the runner closes with 1000
    r:wait(function() return #r.events >= #expect or r.close ~= nil end, timeout_ms)
    if not r.close and not r.eof then
      local f = { op = 8, payload = be(1000, 2), fin = true, rsv = 0, mask = true }
      r.close_sent = true
      raw_send(sock.fd, (encode(f, 99)))
    end
  end
  r:wait(function() return false end, timeout_ms)   -- until the server ends the connection
  sock:close()
  local problems = r.problems
  if not r.eof then problems[#problems + 1] = "the server did not end the connection within " .. timeout_ms .. " ms" end
  local same = #r.events == #expect
  for i = 1, #expect do
    if not same then break end
    same = r.events[i][1] == expect[i][1] and r.events[i][2] == expect[i][2]
  end
  if not same then
    problems[#problems + 1] = "events " .. show_list(r.events) .. ", expected " .. show_list(expect)
  end
  if v.server_pings and r.pings < v.server_pings then
    problems[#problems + 1] = ("%d ping(s) from the server, expected at least %d"):format(r.pings, v.server_pings)
  end
  if v.drop_ok and not r.close then   -- ended without a close frame: allowed here
    return problems
  end
  if v.drop then
    if r.close then problems[#problems + 1] = "a close frame (" .. r.close .. "), expected the connection dropped without one" end
  else
    local allowed = v.close or { 1000 }
    local found = false
    for _, c in ipairs(allowed) do found = found or c == r.close end
    if v.close_reason and r.reason ~= v.close_reason then
      problems[#problems + 1] = ("close reason %q, expected %q"):format(r.reason or "", v.close_reason)
    end
    if not found then
      problems[#problems + 1] = ("close %s (%q), expected one of %s"):format(tostring(r.close or "none"), r.reason or "",
        concat(allowed, ", "))
    end
  end
  return problems
end

return M
