-- Figure 3: the life of a cluster.
--   start:   from the fork of the command to the first 200 on a new connection (polled every
--            millisecond), 2 workers; then, idle, the RSS of the master and of each worker
--   restart: a worker that has served for a while (cfg.restart_after_ms) is SIGKILLed; from the
--            kill to the first answer from a new worker (GET /pid on a new connection each time;
--            the other worker keeps answering meanwhile)
--   reload:  bench/reload.lua (luacluster reload next to PM2 reload, N reloads each under load),
--            and luacluster alone under wrk -t1 -c64 keep-alive load: `luacluster reload`'s wall
--            time (it exits 0 once the new generation serves) and every request wrk did not get
--            a 2xx for (socket errors + non-2xx)
--   upgrade: luacluster alone under wrk -t1 -c64 keep-alive load, per repeat one cluster that
--            is reloaded (`luacluster reload`) and then upgraded (`luacluster upgrade`: a new
--            master from the same binary takes the sockets over, the old one drains), each under
--            its own wrk run: the command's wall time and every request without a 2xx
-- Every repeat starts each system afresh; systems alternate within a repeat.
local S = require("sys")
local Sys = require("systems")

local F = {}

local function rss_of(srv)
  local master = S.rss_kb(srv.pid)
  local workers = {}
  for _, c in ipairs(S.children(srv.pid)) do
    local kb = S.rss_kb(c)
    if kb then workers[#workers + 1] = kb end
  end
  local sum = 0
  for _, kb in ipairs(workers) do sum = sum + kb end
  return master, #workers > 0 and sum / #workers or nil, #workers
end

local START_SYSTEMS = {
  { id = "lc", label = "luacluster dispatch", kind = "luacluster", start = function() return Sys.luacluster{} end },
  { id = "node_rr", label = "Node cluster, round robin", kind = "peer", needs_node = true, start = function() return Sys.node{ sched = "rr" } end },
  { id = "node_single", label = "Node single process", kind = "peer", needs_node = true, start = function() return Sys.node{ sched = "single" } end, single = true },
  { id = "nginx", label = "nginx return 200", kind = "peer", needs_nginx = true, start = function() return Sys.nginx{} end },
  { id = "nginx_lua", label = "nginx content_by_lua", kind = "peer", needs_nginx = true, start = function() return Sys.nginx{ lua = true } end, needs_lua = true },
}

function F.start_and_rss(cfg, R)
  local data = {}
  local systems = {}
  for _, s in ipairs(START_SYSTEMS) do
    if Sys.available(s) and (not cfg.life_only or cfg.life_only[s.id]) then
      systems[#systems + 1] = s
      data[s.id] = { label = s.label, kind = s.kind, single = s.single, start_ms = {}, master_kb = {}, worker_kb = {} }
    end
  end
  for rep = 1, cfg.life_repeats do
    S.log("start/rss: repeat %d/%d", rep, cfg.life_repeats)
    local n = #systems
    for k = 0, n - 1 do
      local s = systems[((k + rep - 1) % n) + 1]
      local srv = s.start()
      local ok, err = pcall(function()
        local ms = Sys.ready(srv, 15000)
        local d = data[s.id]
        d.start_ms[rep] = ms
        for _ = 1, 20 do S.get(srv.port, "/") end -- every worker has answered once or more
        S.sleep(cfg.idle_ms)
        local m, w = rss_of(srv)
        d.master_kb[rep] = m
        if s.single then d.master_kb[rep], d.worker_kb[rep] = m, m else d.worker_kb[rep] = w end
      end)
      Sys.stop(srv, 3000)
      if not ok then S.log("start/rss %s: %s", s.label, err) end
    end
  end
  R.start = data
  return data
end

-- ---- SIGKILL a worker ----

local function pid_of_answer(port)
  local status, body = S.get(port, "/pid", 2000)
  if status ~= 200 then return nil, status or body end
  return tonumber(body:match("%d+"))
end

local function kill_once(srv)
  local old = {}
  for _, c in ipairs(S.children(srv.pid)) do old[c] = true end
  -- the victim: a worker that has answered
  local victim
  for _ = 1, 50 do
    local p = pid_of_answer(srv.port)
    if p and old[p] then victim = p break end
  end
  if not victim then return nil, "no worker answered /pid" end
  local t0 = S.now()
  S.kill(victim, 9)
  local failed, deadline = 0, t0 + 10000
  while S.now() < deadline do
    local p, err = pid_of_answer(srv.port)
    if p and not old[p] then
      return S.now() - t0, failed
    elseif not p then
      failed = failed + 1
      if err == "refused" then S.sleep(1) end
    end
  end
  return nil, "no new worker answered within 10 s"
end

local KILL_SYSTEMS = {
  { id = "lc", label = "luacluster dispatch", kind = "luacluster", start = function() return Sys.luacluster{} end },
  { id = "lc_reuseport", label = "luacluster reuseport", kind = "luacluster", start = function() return Sys.luacluster{ mode = "reuseport" } end },
  { id = "node_rr", label = "Node cluster rr, restart on exit", kind = "peer", needs_node = true, start = function() return Sys.node{ sched = "rr" } end },
}

function F.restart(cfg, R)
  local data = {}
  local systems = {}
  for _, s in ipairs(KILL_SYSTEMS) do
    if Sys.available(s) and (not cfg.life_only or cfg.life_only[s.id]) then
      systems[#systems + 1] = s
      data[s.id] = { label = s.label, kind = s.kind, ms = {}, failed = 0 }
    end
  end
  for rep = 1, cfg.life_repeats do
    S.log("restart: repeat %d/%d", rep, cfg.life_repeats)
    local n = #systems
    for k = 0, n - 1 do
      local s = systems[((k + rep - 1) % n) + 1]
      local srv = s.start()
      local ok, err = pcall(function()
        Sys.ready(srv, 15000)
        -- both workers up, and past their first second: luacluster restarts a worker that dies
        -- within a second of starting with a backoff (a crash loop); a crash of a worker that
        -- has been serving is restarted at once, and that is the figure
        S.sleep(cfg.restart_after_ms)
        local ms, failed = kill_once(srv)
        if not ms then error(failed, 0) end
        data[s.id].ms[rep] = ms
        data[s.id].failed = data[s.id].failed + failed
      end)
      Sys.stop(srv, 3000)
      if not ok then S.log("restart %s: %s", s.label, err) data[s.id].ms[rep] = 0 / 0 end
    end
  end
  R.restart = data
  return data
end

-- ---- reload under load ----

local function load_during(srv, cfg, reload_fn)
  local dir = S.mkdir(srv.dir .. "/wrk")
  local wrk = S.wrk_bg({ port = srv.port, seconds = cfg.reload_load_s }, dir)
  S.sleep(cfg.reload_at_ms)
  local t0 = S.now()
  local out, rc = reload_fn()
  local ms = S.now() - t0
  wrk:wait((cfg.reload_load_s + 20) * 1000)
  local r = S.parse_wrk(wrk:output())
  S.stop(wrk)
  return { ms = ms, rc = rc, out = out, wrk = r }
end

local function lc_reload(cfg)
  local srv = Sys.luacluster{ copy_app = true }
  local ok, res = pcall(function()
    Sys.ready(srv, 15000)
    -- new code: the reload must load it (a comment changes nothing the handler does)
    S.sh("echo '-- reloaded " .. S.now() .. "' >> '" .. srv.app .. "'")
    return load_during(srv, cfg, function()
      return S.sh(string.format("timeout -k 2 60 '%s' reload --control '%s'", Sys.ctx().bin, srv.control))
    end)
  end)
  Sys.stop(srv, 3000)
  if not ok then error(res, 0) end
  return res
end

-- bench/reload.lua (another part of this bench, runnable alone): N reloads in a row of
-- luacluster and of Node.js under PM2 (cluster mode, -i 2, --wait-ready, the graceful SIGINT
-- handler PM2's docs ask for), each under spec/load.lua's load (4 keep-alive and 4 new-connection
-- clients counting every response). Parsed from its BENCH_RELOAD_LINES output.
local function reload_lua(cfg)
  local ctx = Sys.ctx()
  local cmd = string.format("cd '%s' && BENCH_RELOAD_LINES=1 LUACLUSTER_BIN='%s' timeout -k 5 %d luajit bench/reload.lua --reloads %d%s",
    ctx.root, ctx.bin, 120 + cfg.reloads * 30, cfg.reloads, ctx.pm2 and (" --pm2 '" .. ctx.pm2_dir .. "'") or "")
  local out, rc = S.sh(cmd)
  local r = {}
  for id, key, value in out:gmatch("\nreload%.([%w_]+)%.([%w_]+) ([^\n]*)") do
    r[id] = r[id] or {}
    if key == "label" then
      r[id].label = value
    elseif key == "cmd_ms" or key == "new_ms" then
      local list = {}
      for v in value:gmatch("[^,]+") do list[#list + 1] = tonumber(v) end
      r[id][key] = list
    else
      r[id][key] = tonumber(value)
    end
  end
  if not r.lc_dispatch then
    error("bench/reload.lua failed (exit " .. tostring(rc) .. "): " .. out:sub(-1500), 0)
  end
  return r
end

function F.reload(cfg, R)
  local data = {}
  S.log("reload: bench/reload.lua, %d reloads each%s", cfg.reloads, Sys.ctx().pm2 and " (luacluster, PM2)" or " (luacluster; no PM2)")
  local ok, r = pcall(reload_lua, cfg)
  if ok then
    for id, d in pairs(r) do
      data[id] = {
        label = id == "pm2" and "pm2 reload (Node cluster mode, --wait-ready)" or ("luacluster reload (" .. id:gsub("^lc_", "") .. ")"),
        version = d.label, kind = id == "pm2" and "peer" or "luacluster", ms = d.cmd_ms or {}, new_ms = d.new_ms or {},
        requests = d.requests, lost = d.lost, failed_cmds = d.failed_cmds, reloads = #(d.cmd_ms or {}),
      }
    end
  else
    S.log("%s", r)
    R.notes[#R.notes + 1] = tostring(r):sub(1, 300)
  end
  -- the same claim under saturation: wrk -t1 -c64 keep-alive, luacluster alone
  local sat = { label = "luacluster reload under wrk -c64 keep-alive", kind = "luacluster", ms = {}, failed = {}, requests = {} }
  for rep = 1, cfg.reload_repeats do
    S.log("reload under wrk -c64: repeat %d/%d", rep, cfg.reload_repeats)
    local ok2, res = pcall(lc_reload, cfg)
    if ok2 and res.rc == 0 and res.wrk.rps then
      sat.ms[rep], sat.failed[rep], sat.requests[rep] = res.ms, res.wrk.failed, res.wrk.requests
      S.debug("  %.0f ms, %d failed of %d", res.ms, res.wrk.failed, res.wrk.requests)
    else
      sat.ms[rep], sat.failed[rep] = 0 / 0, 0 / 0
      S.log("reload under wrk failed: %s", ok2 and ("exit " .. tostring(res.rc) .. ": " .. tostring(res.out)) or tostring(res))
    end
  end
  data.lc_wrk = sat
  R.reload = data
  return data
end

-- ---- binary upgrade under load, next to a reload of the same cluster ----

local function lc_upgrade(cfg)
  local srv = Sys.luacluster{ copy_app = true }
  local ok, res = pcall(function()
    Sys.ready(srv, 15000)
    S.sh("echo '-- reloaded " .. S.now() .. "' >> '" .. srv.app .. "'")
    local reload = load_during(srv, cfg, function()
      return S.sh(string.format("timeout -k 2 60 '%s' reload --control '%s'", Sys.ctx().bin, srv.control))
    end)
    local upgrade = load_during(srv, cfg, function()
      return S.sh(string.format("timeout -k 2 120 '%s' upgrade --control '%s'", Sys.ctx().bin, srv.control))
    end)
    return { reload = reload, upgrade = upgrade }
  end)
  -- the new master (not srv.proc's child): stopped through the control socket it took over
  S.sh(string.format("timeout -k 2 20 '%s' stop --control '%s'", Sys.ctx().bin, srv.control))
  Sys.stop(srv, 3000)
  if not ok then error(res, 0) end
  return res
end

function F.upgrade(cfg, R)
  local data = {
    lc_upgrade = { label = "luacluster upgrade under wrk -c64 keep-alive", kind = "luacluster", ms = {}, failed = {}, requests = {} },
    lc_reload = { label = "luacluster reload under wrk -c64 keep-alive (same cluster)", kind = "luacluster", ms = {}, failed = {}, requests = {} },
  }
  for rep = 1, cfg.reload_repeats do
    S.log("upgrade under wrk -c64: repeat %d/%d", rep, cfg.reload_repeats)
    local ok, res = pcall(lc_upgrade, cfg)
    for id, key in pairs({ lc_upgrade = "upgrade", lc_reload = "reload" }) do
      local d, r = data[id], ok and res[key]
      if r and r.rc == 0 and r.wrk.rps then
        d.ms[rep], d.failed[rep], d.requests[rep] = r.ms, r.wrk.failed, r.wrk.requests
        S.debug("  %s: %.0f ms, %d failed of %d", key, r.ms, r.wrk.failed, r.wrk.requests)
      else
        d.ms[rep], d.failed[rep] = 0 / 0, 0 / 0
        S.log("%s under wrk failed: %s", key, r and ("exit " .. tostring(r.rc) .. ": " .. tostring(r.out)) or tostring(res))
      end
    end
  end
  R.upgrade = data
  return data
end

return F
