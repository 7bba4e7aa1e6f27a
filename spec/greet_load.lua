-- A load of new connections to a server that greets: K connections on one poll loop, each
-- read until its end (EOF) or --max-wait ms, then replaced by a new one. It counts, per
-- connection, the greeting lines ("hello ...\n") it read, so that a connection served twice
-- (two workers given the same socket) shows as two greetings.
--   luajit spec/greet_load.lua PORT --conns K --until FILE --max-ms MS --max-wait MS --out FILE
-- The result is a Lua chunk: return { conns =, one =, none =, twice =, waited =, samples = { "..." } }
-- (none: EOF or reset without a greeting; waited: no EOF within --max-wait).
local ffi = require("ffi")
do -- helper.lua sits beside this file
  local dir = (debug.getinfo(1, "S").source:sub(2)):match("^(.*)/[^/]*$") or "."
  package.path = dir .. "/?.lua;" .. package.path
end
local H = require("helper")
local C = ffi.C

local o = { port = tonumber(arg[1]), conns = 8, max_ms = 20000, max_wait = 5000 }
do
  local i = 2
  while arg[i] do
    local k, v = arg[i], arg[i + 1]
    if k == "--conns" then o.conns = tonumber(v)
    elseif k == "--until" then o.until_file = v
    elseif k == "--max-ms" then o.max_ms = tonumber(v)
    elseif k == "--max-wait" then o.max_wait = tonumber(v)
    elseif k == "--out" then o.out = v
    else error("greet_load.lua: unknown option " .. tostring(k)) end
    i = i + 2
  end
end

local function exists(path)
  local f = path and io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local r = { conns = 0, one = 0, none = 0, twice = 0, waited = 0, samples = {} }
local function sample(s)
  if #r.samples < 20 then r.samples[#r.samples + 1] = s end
end

local slots = {}
local function open_one(i)
  local s = H.connect(o.port)
  slots[i] = s and { sock = s, buf = "", since = H.now() } or nil
  if s then r.conns = r.conns + 1 end
end

local function finish(i, how)
  local c = slots[i]
  local _, n = c.buf:gsub("hello[^\n]*\n", "")
  if how == "waited" then
    r.waited = r.waited + 1
    sample("waited: " .. ("%q"):format(c.buf))
  elseif n == 1 then
    r.one = r.one + 1
  elseif n == 0 then
    r.none = r.none + 1
  else
    r.twice = r.twice + 1
    sample(n .. " greetings: " .. ("%q"):format(c.buf))
  end
  c.sock:close()
  slots[i] = nil
end

local start = H.now()
local buf = ffi.new("char[4096]")
local pfds = ffi.new("struct lc_pollfd[?]", o.conns)
while true do
  local stopping = exists(o.until_file) or H.now() - start > o.max_ms
  local n, map = 0, {}
  for i = 1, o.conns do
    if not slots[i] and not stopping then open_one(i) end
    if slots[i] then
      pfds[n].fd, pfds[n].events, pfds[n].revents = slots[i].sock.fd, 1, 0
      n = n + 1
      map[n] = i
    end
  end
  if n == 0 then break end
  C.poll(pfds, n, 50)
  for k = 1, n do
    local i = map[k]
    local c = slots[i]
    if pfds[k - 1].revents ~= 0 then
      local got = C.read(c.sock.fd, buf, 4096)
      if got > 0 then
        c.buf = c.buf .. ffi.string(buf, got)
      else
        finish(i, got == 0 and "eof" or "reset")
      end
    elseif H.now() - c.since > o.max_wait then
      finish(i, "waited")
    end
  end
end

local out = string.format("return { conns = %d, one = %d, none = %d, twice = %d, waited = %d, samples = { %s } }\n",
  r.conns, r.one, r.none, r.twice, r.waited, (function()
    local t = {}
    for _, s in ipairs(r.samples) do t[#t + 1] = ("%q"):format(s) end
    return table.concat(t, ", ")
  end)())
if o.out then
  local f = assert(io.open(o.out .. ".tmp", "w"))
  f:write(out)
  f:close()
  os.rename(o.out .. ".tmp", o.out)
else
  io.write(out)
end
