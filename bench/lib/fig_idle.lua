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

-- hold(srv, argv, n, settle_ms): one measurement of a server that is ready and warm: its RSS
-- (all its processes), then the client argv (a probe that prints "held N in MS ms" once it holds
-- n connections, and "closed K" when the server has closed K of them), the RSS again after
-- settle_ms: -> kB per connection, { before=, held=, procs=, ms= } | nil, err (figures 7 and 16)
function F.hold(srv, argv, n, settle_ms)
  S.sleep(settle_ms)
  local before, procs = S.tree_rss_kb(srv.pid)
  local probe = S.spawn(argv, { dir = S.mkdir(srv.dir .. "/idle") })
  local ok, res = pcall(function()
    local deadline = S.now() + 70000
    local ms
    while S.now() < deadline do
      ms = tonumber(probe:output():match("held %d+ in (%d+) ms"))
      if ms or probe:poll() then break end
      S.sleep(20)
    end
    if not ms then error(argv[1]:match("[^/]*$") .. ": " .. probe:output():sub(-600), 0) end
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

local function measure(srv, n, settle_ms)
  Sys.ready(srv, 15000)
  for _ = 1, 20 do S.get(srv.port, "/plaintext") end -- every worker has answered
  return F.hold(srv, { Sys.ctx().probes .. "/idle_conns", tostring(srv.port), tostring(n), "/plaintext" }, n, settle_ms)
end

-- rounds(systems, repeats, what, measure): each repeat starts every system afresh (the order
-- rotated), measure(srv) -> kB, info | nil, err, stops it: -> data[id] = { label=, kind=,
-- kb = { per repeat }, before = {...}, held = {...} } (a failed measurement: NaN, logged)
function F.rounds(systems, repeats, what, measure_fn)
  local data = {}
  for _, s in ipairs(systems) do data[s.id] = { label = s.label, kind = s.kind, kb = {}, before = {}, held = {} } end
  for rep = 1, repeats do
    S.log("%s: repeat %d/%d", what, rep, repeats)
    local k = #systems
    for j = 0, k - 1 do
      local s = systems[((j + rep - 1) % k) + 1]
      local srv = s.start()
      local ok, kb, info = pcall(measure_fn, srv)
      Sys.stop(srv, 3000)
      local d = data[s.id]
      if ok and kb then
        d.kb[rep], d.before[rep], d.held[rep] = kb, info.before, info.held
        S.debug("  %-50s %6.2f kB per connection (RSS %d -> %d kB over %d processes; held in %d ms)",
          s.label, kb, info.before, info.held, info.procs, info.ms)
      else
        d.kb[rep] = 0 / 0
        S.log("  %s, %s: %s", what, s.label, tostring(ok and info or kb))
      end
    end
  end
  return data
end

-- raise_nofile(n, what): room for n connections in this process and the servers it starts
function F.raise_nofile(n, what)
  local limit = S.raise_nofile(n + 1024)
  if not limit or limit < n + 64 then
    error(string.format("RLIMIT_NOFILE is %s, below the %d connections of %s", tostring(limit), n, what), 0)
  end
end

-- -> data[id] = { label=, kind=, kb = { per repeat }, before = {...}, held = {...} }
function F.run(cfg, R)
  local n = cfg.idle_conns
  -- the servers inherit it: each of their workers may hold all n (nginx sets its own, too)
  F.raise_nofile(n, "figure 7")
  local data = F.rounds(all_systems(cfg), cfg.idle_repeats, string.format("idle connections (%d held per server)", n),
    function(srv) return measure(srv, n, cfg.idle_settle_ms) end)
  R.idle = { data = data, conns = n }
  return data
end

return F
