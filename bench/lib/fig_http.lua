-- Figures 1 and 4: HTTP "Hello, World!\n" under wrk -t1 -c64, keep-alive and
-- `Connection: close`, every system started once and measured in turn, repeat after repeat,
-- with the order rotated each repeat (A B C .. then B C .. A), so that the machine's noise
-- lands on every system alike. Figure 4 (workers 1 -> 2) comes from the same loop.
local S = require("sys")
local Sys = require("systems")
local Rounds = require("rounds")

local F = {}

-- id, label, kind, how to start it; `scale` marks the 1-worker systems of figure 4
local function all_systems(cfg)
  local list = {
    { id = "lc_dispatch", label = "luacluster dispatch", kind = "luacluster", start = function() return Sys.luacluster{ mode = "dispatch" } end },
    { id = "lc_shared", label = "luacluster shared", kind = "luacluster", start = function() return Sys.luacluster{ mode = "shared" } end },
    { id = "lc_reuseport", label = "luacluster reuseport", kind = "luacluster", start = function() return Sys.luacluster{ mode = "reuseport" } end },
    { id = "lc_ports", label = "luacluster ports (slot 1's port only)", kind = "luacluster", start = function() return Sys.luacluster{ mode = "ports" } end },
    { id = "node_rr", label = "Node cluster, round robin", kind = "peer", needs_node = true, start = function() return Sys.node{ sched = "rr" } end },
    { id = "node_shared", label = "Node cluster, shared socket", kind = "peer", needs_node = true, start = function() return Sys.node{ sched = "none" } end },
    { id = "node_single", label = "Node single process", kind = "peer", needs_node = true, start = function() return Sys.node{ sched = "single" } end },
    { id = "nginx", label = "nginx return 200", kind = "peer", needs_nginx = true, start = function() return Sys.nginx{} end },
    { id = "nginx_lua", label = "nginx content_by_lua", kind = "peer", needs_nginx = true, start = function() return Sys.nginx{ lua = true } end, needs_lua = true },
    { id = "probe_hello", label = "probe: raw libuv hello", kind = "probe", start = function() return Sys.probe{ name = "uv_hello" } end },
    { id = "probe_dispatch", label = "probe: raw uv_write2 dispatcher", kind = "probe", start = function() return Sys.probe{ name = "uv_dispatch" } end },
    { id = "lc_dispatch_w1", label = "luacluster dispatch, 1 worker", kind = "luacluster", scale = true, start = function() return Sys.luacluster{ mode = "dispatch", workers = 1 } end },
    { id = "lc_reuseport_w1", label = "luacluster reuseport, 1 worker", kind = "luacluster", scale = true, start = function() return Sys.luacluster{ mode = "reuseport", workers = 1 } end },
    { id = "node_rr_w1", label = "Node cluster rr, 1 worker", kind = "peer", needs_node = true, scale = true, start = function() return Sys.node{ sched = "rr", workers = 1 } end },
    { id = "nginx_w1", label = "nginx return 200, 1 worker", kind = "peer", needs_nginx = true, scale = true, start = function() return Sys.nginx{ workers = 1 } end },
    { id = "probe_hello_w1", label = "probe: raw libuv hello, 1 process", kind = "probe", scale = true, start = function() return Sys.probe{ name = "uv_hello", workers = 1 } end },
  }
  return Sys.select(list, cfg.http_only)
end

F.systems = all_systems

-- -> data[id] = { label=, kind=, ka = {rps...}, close = {rps...}, failed = {ka=n, close=n} }
function F.run(cfg, R)
  local systems = all_systems(cfg)
  local servers, data = {}, {}
  local ok, err = pcall(function()
    S.log("http: starting %d servers", #systems)
    for _, s in ipairs(systems) do
      servers[s.id] = s.start()
    end
    for _, s in ipairs(systems) do
      Sys.ready(servers[s.id])
      data[s.id] = { label = s.label, kind = s.kind, scale = s.scale, ka = {}, close = {}, failed = { ka = 0, close = 0 } }
    end
    if cfg.warmup > 0 then
      for _, s in ipairs(systems) do
        S.wrk{ port = servers[s.id].port, seconds = cfg.warmup }
      end
    end
    local runs = {}
    for _, s in ipairs(systems) do
      for _, conn in ipairs(cfg.http_conns) do
        runs[#runs + 1] = { s = s, conn = conn }
      end
    end
    Rounds.run(runs, cfg.repeats, "http", cfg.duration, function(run, rep)
      local r, werr = S.wrk{ port = servers[run.s.id].port, seconds = cfg.duration, close = run.conn == "close" }
      Rounds.record(data[run.s.id], run.conn, rep, run.s.label, r, werr)
    end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  R.http = data
  return data
end

return F
