-- bench/apps/pool_idle.lua: figure 10 of bench/run, memory per idle pooled outbound
-- connection. Run with one worker; bench/lib/fig_pool.lua drives it over HTTP:
--   /fill/N    opens N connections to Redis at once (at most 64 connecting at a time) with
--              Debian's nginx.redis on luacluster.ngx, GETs REDIS_KEY (a 16 KiB value, so that
--              a read buffer kept per connection would have grown to hold it) on each, and once
--              all N are open returns every one to the pool "held" (set_keepalive, 10 minutes
--              idle, a pool of N): "pooled N in MS ms"
--   /warm/N    the same into the pool "warm", idle 100 ms: the code paths run once before the
--              figure is taken, and those connections close by themselves
--   /open/N    the same, but the N connections stay open in use, not pooled (kept in a table):
--              the control, what a connection costs while it still has its read buffer
--   /stats     after two full Lua collections and malloc_trim(0): "heap_kb H lua_kb L", the
--              bytes in use in the C heap (glibc mallinfo2: uordblks + hblkhd) and in Lua's
--   /          "ok"
-- REDIS_PORT: the redis-server on 127.0.0.1; REDIS_KEY (default "big"), REDIS_SIZE: its length.
local ngx = require("luacluster.ngx") -- first: the driver uses the global ngx
local redis = require("nginx.redis")
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local timer = require("luacluster.timer")
local ffi = require("ffi")

local PORT = tonumber(os.getenv("REDIS_PORT") or "6379")
local KEY = os.getenv("REDIS_KEY") or "big"
local SIZE = tonumber(os.getenv("REDIS_SIZE") or "16384")
local WAVE = 64 -- connects in flight at once (redis-server's accept queue is 511)

pcall(ffi.cdef, [[
struct bench_mallinfo2 { size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; };
struct bench_mallinfo2 mallinfo2(void);
int malloc_trim(size_t pad);
]])

local function stats()
  collectgarbage("collect")
  collectgarbage("collect")
  ffi.C.malloc_trim(0)
  local mi = ffi.C.mallinfo2()
  return string.format("heap_kb %.1f lua_kb %.1f\n", tonumber(mi.uordblks + mi.hblkhd) / 1024, collectgarbage("count"))
end

local kept_open = {} -- /open's connections

-- n connections open at once, each after one GET; then all into pool `pool` (idle_ms nil: all
-- kept open in kept_open instead) -> count | nil, err
local function fill(n, pool, idle_ms)
  local reds, failed = {}, {}
  local done = 0
  local function one(k)
    local red = redis:new()
    red:set_timeout(10000)
    local ok, err = red:connect("127.0.0.1", PORT, { pool = pool, pool_size = n })
    if ok then
      local v
      v, err = red:get(KEY)
      if v and v ~= ngx.null and #v == SIZE then
        reds[k] = red
      else
        ok, err = false, err or ("a value of " .. tostring(v and #tostring(v)) .. " bytes")
        red:close()
      end
    end
    if not ok then failed[#failed + 1] = tostring(err) end
    done = done + 1
  end
  for k = 1, n do
    while (k - 1) - done >= WAVE do timer.sleep(1) end
    timer.after(0, function() one(k) end)
  end
  while done < n do timer.sleep(2) end
  if #failed > 0 then
    for _, red in pairs(reds) do red:close() end
    return nil, #failed .. " of " .. n .. " failed, the first: " .. failed[1]
  end
  if not idle_ms then
    for k = 1, n do kept_open[#kept_open + 1] = reds[k] end
    return n
  end
  -- all n are open: now every one goes to the pool
  local kept = 0
  for k = 1, n do
    local ok, err = reds[k]:set_keepalive(idle_ms, n)
    if not ok then return nil, "set_keepalive: " .. tostring(err) end
    kept = kept + 1
  end
  return kept
end

if cluster.is_worker then
  local text = { ["Content-Type"] = "text/plain" }
  http.create_server(function(req)
    local what, n = req.path:match("^/(%a+)/(%d+)$")
    n = tonumber(n)
    if (what == "fill" or what == "warm" or what == "open") and n >= 1 then
      local t0 = timer.now()
      local kept, err
      if what == "fill" then
        kept, err = fill(n, "held", 600000)
      elseif what == "open" then
        kept, err = fill(n, "open")
      else
        kept, err = fill(n, "warm", 100)
      end
      if not kept then return 500, text, err .. "\n" end
      return 200, text, string.format("pooled %d in %d ms\n", kept, timer.now() - t0)
    elseif req.path == "/stats" then
      return 200, text, stats()
    end
    return 200, text, "ok\n"
  end, { keepalive_timeout = 75000 }):listen()
end
