-- bench/apps/shdict_ops.lua: the shared-dictionary loops of bench/run's `shdict` figures, one
-- file run unchanged by both sides: luacluster (bench/apps/shdict.lua, on
-- require("luacluster.shared")) and OpenResty (nginx + libnginx-mod-http-lua, on ngx.shared:
-- bench/lib/fig_shdict.lua), so that both time the identical loop. Plain Lua and LuaJIT's FFI
-- (the monotonic clock); nothing of either server.
--   handle(dicts, path, query, pid) -> body, for the requests:
--   /                          "ok"
--   /prepare                   fills the `bench` dictionary with the keys `get` reads
--   /run?op=OP&ms=T            operations OP (get, get_hot, set, incr) on `bench` for T ms,
--                              in rounds of 1000: "OP COUNT SECONDS PID"
--   /fill?n=N&size=S           flushes the `mem` dictionary, stores N entries of an S-byte
--                              string: "BYTES_PER_ENTRY PID" (the drop of free_space over N)
local ffi = require("ffi")

pcall(ffi.cdef, [[
struct shdict_bench_ts { long sec; long nsec; };
int clock_gettime(int clock, struct shdict_bench_ts *ts);
]])

local C = ffi.C
local ts = ffi.new("struct shdict_bench_ts")
local CLOCK_MONOTONIC = 1
local tonumber, format = tonumber, string.format

local M = {}

M.KEYS = 1000            -- distinct keys the loops cycle over
M.VALUE = "0123456789abcdef" -- what `get` reads and `set` writes: 16 bytes

local get_keys, set_keys, incr_keys = {}, {}, {}
for i = 1, M.KEYS do
  get_keys[i] = "get:" .. i
  set_keys[i] = "set:" .. i
  incr_keys[i] = "incr:" .. i
end


local function now()
  C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) * 1e-9
end


function M.prepare(dict)
  for i = 1, M.KEYS do
    assert(dict:set(get_keys[i], M.VALUE))
  end
end


-- one round: n operations op, from key i0 on -> failed count | nil (an unknown op)
local function round(dict, op, n, i0)
  local K, value = M.KEYS, M.VALUE
  local bad = 0
  if op == "get" then
    for i = i0, i0 + n - 1 do
      if dict:get(get_keys[i % K + 1]) ~= value then bad = bad + 1 end
    end
  elseif op == "get_hot" then
    local key = get_keys[1]
    for _ = 1, n do
      if dict:get(key) ~= value then bad = bad + 1 end
    end
  elseif op == "set" then
    for i = i0, i0 + n - 1 do
      if not dict:set(set_keys[i % K + 1], value) then bad = bad + 1 end
    end
  elseif op == "incr" then
    for i = i0, i0 + n - 1 do
      if not dict:incr(incr_keys[i % K + 1], 1, 0) then bad = bad + 1 end
    end
  else
    return nil
  end
  return bad
end


-- run(dict, op, ms) -> operations, seconds | nil, err: rounds of M.ROUND operations until ms
-- have passed (a time, not a count, so that two workers started together run side by side
-- for as long whatever their speed). Each round checks what it got, so that nothing can be
-- optimised away and a failing dictionary is not timed as a fast one.
M.ROUND = 1000
function M.run(dict, op, ms)
  local limit = ms / 1000
  local count = 0
  local t0 = now()
  local secs
  repeat
    local bad = round(dict, op, M.ROUND, count)
    if bad == nil then
      return nil, "unknown op " .. tostring(op)
    elseif bad > 0 then
      return nil, format("%d of %d %s operations failed", bad, M.ROUND, op)
    end
    count = count + M.ROUND
    secs = now() - t0
  until secs >= limit
  return count, secs
end


-- fill(dict, n, size) -> bytes per entry | nil, err
function M.fill(dict, n, size)
  dict:flush_all()
  dict:flush_expired()
  local before = dict:free_space()
  local value = string.rep("v", size)
  for i = 1, n do
    local ok, err, forcible = dict:set("m:" .. i, value)
    if not ok or forcible then
      return nil, "entry " .. i .. ": " .. tostring(err or "an entry was evicted")
    end
  end
  return (before - dict:free_space()) / n
end


local function args(query)
  local q = {}
  for k, v in query:gmatch("([^&=]+)=([^&]*)") do q[k] = v end
  return q
end


function M.handle(dicts, path, query, pid)
  local q = args(query or "")
  if path == "/prepare" then
    M.prepare(dicts.bench)
    return "ok"
  elseif path == "/run" then
    local count, secs = M.run(dicts.bench, q.op, tonumber(q.ms) or 100)
    if not count then return "error " .. secs end
    return format("%s %d %.9f %d", q.op, count, secs, pid)
  elseif path == "/fill" then
    local per, err = M.fill(dicts.mem, tonumber(q.n) or 10000, tonumber(q.size) or 16)
    if not per then return "error " .. err end
    return format("%.3f %d", per, pid)
  end
  return "ok"
end


return M
