-- A small HTTP load client for the reload specs and bench/reload.lua: K connections on one
-- poll loop, each sending a request, reading its whole response, and sending the next one,
-- so every request is counted (answered with 2xx, or failed and why).
--   luajit spec/load.lua PORT [options]
--     --shape keepalive|close   keep-alive connections (reconnecting after a Connection: close)
--                               or a new connection per request        [keepalive]
--     --conns K                 concurrent connections                  [4]
--     --until FILE              stop sending once FILE exists
--     --max-ms MS               stop sending after MS ms               [20000]
--     --max-requests N          stop sending after N requests           [unlimited]
--     --think MS                pause between a response and the next request on a connection [0]
--     --path PATH               the request target                      [/]
--     --ports P1,P2,...         spread connections over these ports (ports mode) instead of PORT
--     --out FILE                write the result there (else stdout)
-- The result is a Lua chunk: return { ok =, fail =, idle_closed =, reconnects =, bodies = { tag = n },
-- first = { tag = ms }, errors = { "..." }, elapsed_ms = }. A body's tag is its first word;
-- first[tag] is when that tag was first seen (CLOCK_MONOTONIC ms, comparable to load.now()).
-- Also usable as a module: require("load").now().
local ffi = require("ffi")
do -- helper.lua sits beside this file
  local dir = (debug.getinfo(1, "S").source:sub(2)):match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. package.path
end
local H = require("helper")

pcall(ffi.cdef, [[
struct lc_timespec { long sec; long nsec; };
int clock_gettime(int clk, struct lc_timespec *ts);
long send(int fd, const void *buf, unsigned long n, int flags);
int *__errno_location(void);
]])

local C = ffi.C
local POLLIN, POLLERR, POLLHUP = 1, 8, 16
local MSG_NOSIGNAL = 0x4000

local L = {}

local ts = ffi.new("struct lc_timespec")
function L.now()
  C.clock_gettime(1, ts)
  return tonumber(ts.sec) * 1000 + tonumber(ts.nsec) / 1e6
end


local function parse_args(argv)
  local o = { port = tonumber(argv[1]), shape = "keepalive", conns = 4, max_ms = 20000, think = 0, path = "/" }
  local i = 2
  while argv[i] do
    local k, v = argv[i], argv[i + 1]
    if k == "--shape" then o.shape = v
    elseif k == "--conns" then o.conns = tonumber(v)
    elseif k == "--until" then o.until_file = v
    elseif k == "--max-ms" then o.max_ms = tonumber(v)
    elseif k == "--max-requests" then o.max_requests = tonumber(v)
    elseif k == "--think" then o.think = tonumber(v)
    elseif k == "--path" then o.path = v
    elseif k == "--out" then o.out = v
    elseif k == "--ports" then
      o.ports = {}
      for p in v:gmatch("%d+") do o.ports[#o.ports + 1] = tonumber(p) end
    else
      error("load.lua: unknown option " .. tostring(k))
    end
    i = i + 2
  end
  assert(o.port or o.ports, "usage: luajit spec/load.lua PORT [options]")
  return o
end


local function file_exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end


-- a complete response at the start of buf? -> status, body, close_after, rest | nil
local function parse_response(buf)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then
    return nil
  end
  local head = buf:sub(1, head_end + 1)
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then
    return false, "not an HTTP response: " .. ("%q"):format(buf:sub(1, 60))
  end
  local lower = head:lower()
  local close = lower:find("\r\nconnection:%s*close") ~= nil
  local len = tonumber(lower:match("\r\ncontent%-length:%s*(%d+)"))
  if lower:find("\r\ntransfer%-encoding:%s*chunked") then
    local p, parts = head_end + 4, {}
    while true do
      local le = buf:find("\r\n", p, true)
      if not le then return nil end
      local size = tonumber(buf:sub(p, le - 1):match("^%x+"), 16)
      if not size then return false, "bad chunk" end
      if size == 0 then
        local fin = buf:find("\r\n", le + 2, true)
        if not fin then return nil end
        return status, table.concat(parts), close, buf:sub(fin + 2)
      end
      if #buf < le + 2 + size + 2 then return nil end
      parts[#parts + 1] = buf:sub(le + 2, le + 1 + size)
      p = le + 2 + size + 2
    end
  end
  if not len then
    return false, "no content-length"
  end
  if #buf < head_end + 3 + len then
    return nil
  end
  return status, buf:sub(head_end + 4, head_end + 3 + len), close, buf:sub(head_end + 4 + len)
end


function L.run(o)
  local r = { ok = 0, fail = 0, idle_closed = 0, reconnects = 0, bodies = {}, first = {}, errors = {} }
  local start = L.now()
  local sent = 0
  local conns = {}
  local stop_sending = false
  local function fail(c, why)
    r.fail = r.fail + 1
    if #r.errors < 20 then
      r.errors[#r.errors + 1] = string.format("%.0f ms: conn %d: %s", L.now() - start, c.i, why)
    end
  end
  local function close(c)
    if c.sock then c.sock:close() c.sock = nil end
    c.buf, c.busy = "", false
  end
  local function send_next(c)
    if stop_sending then
      return
    end
    if o.max_requests and sent >= o.max_requests then
      stop_sending = true
      return
    end
    sent = sent + 1
    if not c.sock then
      local port = o.ports and o.ports[(c.i - 1) % #o.ports + 1] or o.port
      local s = H.connect(port)
      if not s then
        return fail(c, "connect refused")
      end
      c.sock, c.buf = s, ""
      if c.used then r.reconnects = r.reconnects + 1 end
      c.used = true
    end
    local req = "GET " .. o.path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      .. (o.shape == "close" and "Connection: close\r\n" or "") .. "\r\n"
    local n = C.send(c.sock.fd, req, #req, MSG_NOSIGNAL)
    if n ~= #req then
      close(c)
      return fail(c, "write failed (errno " .. C.__errno_location()[0] .. ")")
    end
    c.busy, c.sent_at = true, L.now()
  end
  local function on_response(c, status, body, close_after)
    if status >= 200 and status < 300 then
      r.ok = r.ok + 1
      local tag = body:match("^(%S+)") or ""
      r.bodies[tag] = (r.bodies[tag] or 0) + 1
      r.first[tag] = r.first[tag] or L.now()
    else
      fail(c, "status " .. status .. " " .. body:sub(1, 80))
    end
    c.busy = false
    if close_after or o.shape == "close" then
      close(c)
    end
    c.next_at = L.now() + o.think
  end
  for i = 1, o.conns do
    conns[i] = { i = i, buf = "", busy = false, next_at = 0 }
  end
  local pfds = ffi.new("struct lc_pollfd[?]", o.conns)
  local rbuf = ffi.new("char[65536]")
  while true do
    local now = L.now()
    if not stop_sending and ((o.until_file and file_exists(o.until_file)) or now - start > o.max_ms) then
      stop_sending = true
    end
    local busy = false
    for _, c in ipairs(conns) do
      if not c.busy and now >= c.next_at then
        send_next(c)
      end
      if c.busy then
        busy = true
        if now - c.sent_at > 5000 then
          close(c)
          fail(c, "no response within 5 s")
        end
      end
    end
    if stop_sending and not busy then
      break
    end
    local n = 0
    local map = {}
    for _, c in ipairs(conns) do
      if c.sock then
        pfds[n].fd, pfds[n].events, pfds[n].revents = c.sock.fd, POLLIN, 0
        n = n + 1
        map[n] = c
      end
    end
    C.poll(pfds, n, o.think > 0 and math.min(o.think, 10) or 10)
    for k = 0, n - 1 do
      local c = map[k + 1]
      if bit.band(pfds[k].revents, POLLIN + POLLERR + POLLHUP) ~= 0 then
        local got = C.read(c.sock.fd, rbuf, 65536)
        if got > 0 then
          c.buf = c.buf .. ffi.string(rbuf, got)
          while c.sock and c.busy do
            local status, body, close_after, rest = parse_response(c.buf)
            if status == nil then
              break
            elseif status == false then
              close(c)
              fail(c, body)
              break
            end
            c.buf = rest
            on_response(c, status, body, close_after)
          end
          if c.sock and not c.busy and #c.buf > 0 then
            fail(c, "unexpected bytes: " .. ("%q"):format(c.buf:sub(1, 40)))
            close(c)
          end
        else
          -- EOF or reset: a failure when a request was waiting for its answer
          local why = got == 0 and "closed" or ("reset (errno " .. C.__errno_location()[0] .. ")")
          if c.busy then
            fail(c, why .. " before the response" .. (#c.buf > 0 and " (partial)" or ""))
          else
            r.idle_closed = r.idle_closed + 1
          end
          close(c)
        end
      end
    end
  end
  for _, c in ipairs(conns) do
    close(c)
  end
  r.elapsed_ms = L.now() - start
  return r
end


local function serialize(v)
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = "[" .. serialize(k) .. "]=" .. serialize(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "string" then
    return ("%q"):format(v)
  end
  return tostring(v)
end
L.serialize = serialize


-- reads the result a load process wrote: -> table | nil
function L.result(path)
  local s = H.read_file(path)
  local fn = s ~= "" and loadstring(s)
  return fn and fn() or nil
end


-- background(port, { shape = "keepalive" | "close", conns =, think =, ports = }) -> handle: this
-- file run as its own process until handle.finish() (-> its result table) tells it to stop
function L.background(port, o)
  o = o or {}
  local dir = H.tmpdir()
  local h = { stop = dir .. "/stop", out = dir .. "/result.lua" }
  local argv = { "luajit", H.root .. "/spec/load.lua", tostring(port), "--shape", o.shape or "keepalive",
    "--conns", tostring(o.conns or 4), "--until", h.stop, "--max-ms", "20000", "--out", h.out }
  if o.think then
    argv[#argv + 1] = "--think"
    argv[#argv + 1] = tostring(o.think)
  end
  if o.ports then
    argv[#argv + 1] = "--ports"
    argv[#argv + 1] = table.concat(o.ports, ",")
  end
  h.p = H.spawn({ "/usr/bin/env", unpack(argv) }, { dir = dir })
  function h.finish()
    H.write_file(h.stop, "")
    h.p:wait(15000)
    local r = L.result(h.out)
    assert(r, "the load client wrote no result: " .. h.p:output())
    return r
  end
  return h
end


if ... == nil or (arg and arg[0] and arg[0]:match("load%.lua$") and ... == arg[1]) then
  local o = parse_args(arg)
  local r = L.run(o)
  local text = "return " .. serialize(r) .. "\n"
  if o.out then
    local f = assert(io.open(o.out .. ".tmp", "w"))
    f:write(text)
    f:close()
    os.rename(o.out .. ".tmp", o.out)
  else
    io.stdout:write(text)
  end
end

return L
