-- Figure 10: memory per idle pooled outbound connection. Each repeat starts luacluster afresh
-- with one worker running bench/apps/pool_idle.lua against a redis-server started here, which
-- holds a 16 KiB value. The worker first fills and lets expire a small pool (the code paths
-- run once), then: /stats (two full Lua collections and malloc_trim(0), then the C heap and
-- the Lua heap in use) and the RSS of the server (master and worker, summed); /fill/N: N
-- connections open at once, each GETs the 16 KiB value (a read buffer kept per connection would
-- have grown to hold it), then all N go to the pool; /stats and the RSS again, and Redis's
-- connected_clients must show the N held. The figures are the growth divided by N, in kB: the
-- RSS, and the bytes in use in the C heap plus Lua's (exact: what the allocators keep free does
-- not count). A kept 16 KiB read buffer would be 16 kB or more per connection in both. The
-- control: N more connections, the same GET on each, held open in use and not pooled (their
-- read buffers still there): the heap in use per connection again, so that the figure shows the
-- method sees a read buffer where there is one.
-- Kernel socket buffers are not in a process's RSS.
local S = require("sys")
local Sys = require("systems")

local F = {}

F.KEY, F.SIZE = "big", 16384
F.WARM = 64

-- "heap_kb H lua_kb L" -> H, L | nil, err
local function stats(port)
  local status, body = S.get(port, "/stats", 10000)
  local heap, lua = tostring(body):match("^heap_kb ([%d%.]+) lua_kb ([%d%.]+)")
  if status ~= 200 or not heap then return nil, "/stats: " .. tostring(status) .. " " .. tostring(body) end
  return tonumber(heap), tonumber(lua)
end

local function clients(redis_port)
  local info = Sys.redis_cmd(redis_port, { "INFO", "clients" })
  return tonumber(tostring(info):match("connected_clients:(%d+)"))
end

-- one repeat: -> { rss =, heap =, lua = (kB per connection), ... } | raises
local function measure(redis_port, n, settle_ms)
  local srv = Sys.luacluster{ mode = "dispatch", workers = 1, app = Sys.ctx().root .. "/bench/apps/pool_idle.lua",
    env = { REDIS_PORT = tostring(redis_port), REDIS_KEY = F.KEY, REDIS_SIZE = tostring(F.SIZE) } }
  local ok, res = pcall(function()
    Sys.ready(srv, 15000)
    local status, body = S.get(srv.port, "/warm/" .. F.WARM, 30000)
    if status ~= 200 then error("/warm: " .. tostring(status) .. " " .. tostring(body), 0) end
    S.sleep(300 + settle_ms) -- the warm pool's 100 ms idle time is up: those connections are closed
    local heap0, lua0 = assert(stats(srv.port))
    local rss0, procs = S.tree_rss_kb(srv.pid)
    local c0 = clients(redis_port) or 0
    status, body = S.get(srv.port, "/fill/" .. n, 120000)
    if status ~= 200 then error("/fill: " .. tostring(status) .. " " .. tostring(body), 0) end
    local ms = tonumber(body:match("in (%d+) ms"))
    S.sleep(settle_ms)
    local heap1, lua1 = assert(stats(srv.port))
    local rss1 = S.tree_rss_kb(srv.pid)
    local c1 = clients(redis_port) or 0
    if c1 - c0 < n then
      error(string.format("Redis holds %d connections more, not the %d pooled", c1 - c0, n), 0)
    end
    -- the control: n more connections, the same GET on each, kept open in use (not pooled)
    status, body = S.get(srv.port, "/open/" .. n, 120000)
    if status ~= 200 then error("/open: " .. tostring(status) .. " " .. tostring(body), 0) end
    S.sleep(settle_ms)
    local heap2, lua2 = assert(stats(srv.port))
    return {
      rss = (rss1 - rss0) / n, heap = (heap1 - heap0) / n, lua = (lua1 - lua0) / n,
      open = (heap2 + lua2 - heap1 - lua1) / n,
      rss0 = rss0, rss1 = rss1, heap0 = heap0, heap1 = heap1, lua0 = lua0, lua1 = lua1, procs = procs, ms = ms,
    }
  end)
  Sys.stop(srv, 3000)
  if not ok then error(res, 0) end
  return res
end

-- -> R.pool = { conns = n, data = { lc = { label=, kind=, rss = {}, heap = {} } } }
function F.run(cfg, R)
  if not Sys.have_redis() then error("redis-server is not installed (vendor/install-deps.sh): no pool figure", 0) end
  local n = cfg.pool_conns
  -- the worker and redis-server inherit it: the worker holds 2n (pooled, then the control's
  -- open ones), Redis serves them
  local limit = S.raise_nofile(2 * n + 1024)
  if not limit or limit < 2 * n + 256 then
    error(string.format("RLIMIT_NOFILE is %s, below the %d connections of figure 10", tostring(limit), n), 0)
  end
  local redis = Sys.redis()
  local d = { label = "luacluster worker, nginx.redis + set_keepalive", kind = "luacluster", rss = {}, heap = {}, lua = {}, open = {} }
  local ok, err = pcall(function()
    local set, serr = Sys.redis_cmd(redis.port, { "SET", F.KEY, string.rep("x", F.SIZE) })
    if set ~= "+OK\r\n" then error("redis SET: " .. tostring(set or serr), 0) end
    for rep = 1, cfg.pool_repeats do
      S.log("pooled connections: repeat %d/%d (%d pooled)", rep, cfg.pool_repeats, n)
      local rok, r = pcall(measure, redis.port, n, cfg.idle_settle_ms)
      if rok then
        d.rss[rep], d.heap[rep], d.lua[rep], d.open[rep] = r.rss, r.heap + r.lua, r.lua, r.open
        S.debug("  %6.2f kB RSS per pooled connection (%d -> %d kB over %d processes), %.2f kB heap in use (C %.0f -> %.0f kB, Lua %.0f -> %.0f kB); filled in %s ms",
          r.rss, r.rss0, r.rss1, r.procs, r.heap + r.lua, r.heap0, r.heap1, r.lua0, r.lua1, tostring(r.ms))
        S.debug("  %6.2f kB heap in use per connection held open, not pooled (the control)", r.open)
      else
        d.rss[rep], d.heap[rep], d.lua[rep], d.open[rep] = 0 / 0, 0 / 0, 0 / 0, 0 / 0
        S.log("  pooled connections: %s", tostring(r))
      end
    end
  end)
  Sys.stop(redis, 2000)
  if not ok then error(err, 0) end
  R.pool = { conns = n, size = F.SIZE, data = { lc = d } }
  return R.pool
end

return F
