-- Figure 7: memory per idle keep-alive connection. Each repeat starts every system afresh
-- (luacluster runs bench/apps/techempower.lua, whose keepalive_timeout is nginx's 75 s; nginx
-- its TechEmpower config, with room for the connections), warms it with a few requests, reads
-- the RSS of the server (master and workers, and every other process of it, summed), then
-- bench/probes/idle_conns opens N connections, sends one request on each, reads the answer and
-- holds them all, idle; the RSS is read again. The figure is (RSS held - RSS before) / N in kB.
-- This process raises its RLIMIT_NOFILE first, so that the servers it starts inherit room for N.
-- A run where the server closed a held connection before the RSS was read is not counted.
local S = require("sys")
local Sys = require("systems")

local F = {}

local function all_systems(cfg)
  local app = Sys.ctx().root .. "/bench/apps/techempower.lua"
  local list = {
    { id = "lc_dispatch", label = "luacluster dispatch", kind = "luacluster", start = function() return Sys.luacluster{ mode = "dispatch", app = app } end },
    { id = "lc_reuseport", label = "luacluster reuseport", kind = "luacluster", start = function() return Sys.luacluster{ mode = "reuseport", app = app } end },
    { id = "nginx", label = "nginx return 200", kind = "peer", needs_nginx = true, start = function() return Sys.nginx{ te = true } end },
  }
  return Sys.select(list, cfg.idle_only)
end

F.systems = all_systems

-- one measurement: -> kB per connection, { before=, held=, procs=, ms= } | nil, err
local function measure(srv, n, settle_ms)
  Sys.ready(srv, 15000)
  for _ = 1, 20 do S.get(srv.port, "/plaintext") end -- every worker has answered
  S.sleep(settle_ms)
  local before, procs = S.tree_rss_kb(srv.pid)
  local probe = S.spawn({ Sys.ctx().probes .. "/idle_conns", tostring(srv.port), tostring(n), "/plaintext" },
    { dir = S.mkdir(srv.dir .. "/idle") })
  local ok, res = pcall(function()
    local deadline = S.now() + 60000
    local ms
    while S.now() < deadline do
      ms = tonumber(probe:output():match("held %d+ in (%d+) ms"))
      if ms or probe:poll() then break end
      S.sleep(20)
    end
    if not ms then error("idle_conns: " .. probe:output():sub(-600), 0) end
    S.sleep(settle_ms)
    local held = S.tree_rss_kb(srv.pid)
    local closed = probe:output():match("closed (%d+)%s*$")
    if closed then error(string.format("the server closed %s of the %d held connections", closed, n), 0) end
    return { kb = (held - before) / n, before = before, held = held, procs = procs, ms = ms }
  end)
  S.stop(probe, 1000)
  if not ok then return nil, res end
  return res.kb, res
end

-- -> data[id] = { label=, kind=, kb = { per repeat }, before = {...}, held = {...} }
function F.run(cfg, R)
  local systems = all_systems(cfg)
  local n = cfg.idle_conns
  -- the servers inherit it: each of their workers may hold all n (nginx sets its own, too)
  local limit = S.raise_nofile(n + 1024)
  if not limit or limit < n + 64 then
    error(string.format("RLIMIT_NOFILE is %s, below the %d connections of figure 7", tostring(limit), n), 0)
  end
  local data = {}
  for _, s in ipairs(systems) do data[s.id] = { label = s.label, kind = s.kind, kb = {}, before = {}, held = {} } end
  for rep = 1, cfg.idle_repeats do
    S.log("idle connections: repeat %d/%d (%d held per server)", rep, cfg.idle_repeats, n)
    local k = #systems
    for j = 0, k - 1 do
      local s = systems[((j + rep - 1) % k) + 1]
      local srv = s.start()
      local ok, kb, info = pcall(measure, srv, n, cfg.idle_settle_ms)
      Sys.stop(srv, 3000)
      local d = data[s.id]
      if ok and kb then
        d.kb[rep], d.before[rep], d.held[rep] = kb, info.before, info.held
        S.debug("  %-30s %6.2f kB per connection (RSS %d -> %d kB over %d processes; held in %d ms)",
          s.label, kb, info.before, info.held, info.procs, info.ms)
      else
        d.kb[rep] = 0 / 0
        S.log("  idle connections, %s: %s", s.label, tostring(ok and info or kb))
      end
    end
  end
  R.idle = { data = data, conns = n }
  return data
end

return F
