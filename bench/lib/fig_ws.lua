-- Figures 14-16 (issue 17): WebSocket, with bench/probes/ws_load.c as the client (one libuv
-- loop, client-masked frames, everything on 127.0.0.1).
-- 14. echo round trips per second, 64 connections, closed loop (a 32-byte text message, the
--     next one sent when its echo is back): luacluster (bench/apps/ws_echo.lua), Node.js `ws` in
--     a cluster of 2 (bench/peers/node_ws_echo.js) and OpenResty's lua-resty-websocket server as
--     Debian has it (nginx + libnginx-mod-http-lua + lua-nginx-websocket, the loop below), 2
--     workers each, and bench/probes/ws_server.c (the same in C on libuv: the ceiling). Every
--     system is started once and the runs rotated repeat after repeat.
-- 15. fan-out: 10,000 WebSockets subscribed to one topic, spread over 2 workers; GET
--     /publish?DATA on one keep-alive connection publishes DATA; the client takes the time from
--     the write of the GET to the last (and the first) subscriber having it, for each of several
--     publishes (the first a warm-up), and the figure of a repeat is the median over them:
--     deliveries per second (10,000 / time to the last) and the time to the last. luacluster with
--     ws:subscribe (bench/apps/ws_fanout.lua; left out with a note while the build has none),
--     luacluster with a Lua loop over its sockets (bench/apps/ws_fanout_lua.lua), Node.js `ws`
--     with socket.io's cluster-adapter relay over the cluster IPC (bench/peers/node_ws_fanout.js),
--     and bench/probes/ws_server.c (master relay, one frame written to each socket, in C).
-- 16. memory per idle WebSocket: each repeat starts every system afresh, reads the RSS of its
--     process tree, opens 10,000 WebSockets and holds them idle; (RSS held - RSS before) / N.
local S = require("sys")
local Sys = require("systems")
local Rounds = require("rounds")
local Idle = require("fig_idle")

local F = {}

F.ECHO_CONNS = 64

local OPENRESTY_HTTP = [[
  lua_package_path "/usr/share/lua/5.1/?.lua;;";
  init_by_lua_block { require("nginx.websocket.server") }]]

-- lua-resty-websocket's own server example, echoing (Debian names the module nginx.websocket)
local OPENRESTY_SERVER = [[
    location = /ping { return 200 "ok"; }
    location / {
      content_by_lua_block {
        local wb, err = require("nginx.websocket.server"):new({ timeout = 600000, max_payload_len = 1048576 })
        if not wb then
          ngx.log(ngx.ERR, "websocket: ", err)
          return ngx.exit(444)
        end
        while true do
          local data, typ = wb:recv_frame()
          if not data then
            return ngx.exit(444)
          end
          if typ == "close" then
            wb:send_close()
            return
          elseif typ == "ping" then
            wb:send_pong(data)
          elseif typ == "text" then
            wb:send_text(data)
          elseif typ == "binary" then
            wb:send_binary(data)
          end
        end
      }
    }]]

local function peers_env()
  return { NODE_PATH = Sys.ctx().root .. "/bench/.peers/node_modules" }
end

local function lc(app)
  return function() return Sys.luacluster{ mode = "dispatch", app = Sys.ctx().root .. "/bench/apps/" .. app } end
end

local function node(script)
  return function() return Sys.node{ script = Sys.ctx().root .. "/bench/peers/" .. script, env = peers_env() } end
end

-- bench/probes/ws_server.c: the same work in C on libuv with nothing else (the ceiling)
local function probe()
  return Sys.probe{ name = "ws_server", workers = 2 }
end

local function openresty(nofile)
  return function()
    return Sys.nginx{ lua = true, name = "openresty-ws", http = OPENRESTY_HTTP, server = OPENRESTY_SERVER, nofile = nofile }
  end
end

-- whether Node's `ws` package is installed (bench/run installs it into bench/.peers)
function F.have_ws()
  return io.open(Sys.ctx().root .. "/bench/.peers/node_modules/ws/package.json") ~= nil
end

local function select(list, only)
  local out = {}
  for _, s in ipairs(Sys.select(list, only)) do
    if not s.needs_ws or F.have_ws() then out[#out + 1] = s end
  end
  return out
end

local function ready(srv)
  local ms, err = S.wait_200(srv.port, 15000, srv.t0, "/ping")
  if not ms then
    error(string.format("%s (pid %d) is not serving: %s\n%s", srv.id, srv.pid, err, srv.proc:output():sub(-2000)), 0)
  end
end

local function load(args, seconds)
  local cmd = string.format("timeout -k 2 %d '%s/ws_load' %s 2>&1", seconds, Sys.ctx().probes, args)
  local out, rc = S.sh(cmd)
  return out, rc
end

-- ---- 14. echo ----

function F.echo(cfg, R)
  local list = select({
    { id = "lc", label = "luacluster, ws:on(\"message\")", kind = "luacluster", start = lc("ws_echo.lua") },
    { id = "node", label = "Node.js ws, cluster of 2", kind = "peer", needs_node = true, needs_ws = true, start = node("node_ws_echo.js") },
    { id = "openresty", label = "OpenResty lua-resty-websocket (nginx + lua module)", kind = "peer", needs_nginx = true, needs_lua = true,
      start = openresty() },
    { id = "probe", label = "probe: raw libuv WebSocket server (C)", kind = "probe", start = probe },
  }, cfg.ws_only)
  local servers, data = {}, {}
  local ok, err = pcall(function()
    S.log("websocket echo: starting %d servers", #list)
    for _, s in ipairs(list) do servers[s.id] = s.start() end
    for _, s in ipairs(list) do
      ready(servers[s.id])
      data[s.id] = { label = s.label, kind = s.kind, rt = {}, cpu = {}, failed = { rt = 0 } }
    end
    -- -> round trips/s, server CPU us per round trip (its whole tree, warm-up included) | nil, err
    local function run(s, seconds, warm)
      local srv = servers[s.id]
      local t0 = S.tree_cpu_ticks(srv.pid)
      local out, rc = load(string.format("echo %d /echo %d %g %g", srv.port, F.ECHO_CONNS, seconds, warm), seconds + warm + 75)
      local t1 = S.tree_cpu_ticks(srv.pid)
      local count, rate = out:match("echo (%d+) round trips in [%d%.]+ s: ([%d%.]+)/s")
      if rc ~= 0 or not rate then return nil, out:gsub("\n", " | "):sub(1, 400) end
      return tonumber(rate), (t1 - t0) * 10000 / tonumber(count)
    end
    if (cfg.out_warmup or 0) > 0 then
      for _, s in ipairs(list) do run(s, cfg.out_warmup, 0) end
    end
    Rounds.run(list, cfg.repeats, "websocket echo", cfg.duration, function(s, rep)
      local rate, cpu = run(s, cfg.duration, 0)
      data[s.id].rt[rep] = rate or 0 / 0
      data[s.id].cpu[rep] = rate and cpu or 0 / 0
      if rate then
        S.debug("  %-50s %10.0f round trips/s, %.2f us of server CPU each", s.label, rate, cpu)
      else
        data[s.id].failed.rt = data[s.id].failed.rt + 1
        S.log("  websocket echo, %s: %s", s.label, cpu)
      end
    end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  R.ws_echo = { data = data, conns = F.ECHO_CONNS }
  return R.ws_echo
end

-- ---- 15. fan-out ----

local median = require("stats").median

function F.fanout(cfg, R)
  local n, pubs = cfg.ws_subscribers, cfg.ws_publishes
  local list = select({
    { id = "lc_sub", label = "luacluster, ws:subscribe", kind = "luacluster", start = lc("ws_fanout.lua") },
    { id = "lc_lua", label = "luacluster (Lua loop): pubsub.subscribe + ws:send each", kind = "luacluster", start = lc("ws_fanout_lua.lua") },
    { id = "node", label = "Node.js ws, cluster of 2, socket.io cluster-adapter IPC relay", kind = "peer", needs_node = true, needs_ws = true,
      start = node("node_ws_fanout.js") },
    { id = "probe", label = "probe: raw libuv, master relay, one frame written to each socket (C)", kind = "probe", start = probe },
  }, cfg.ws_only)
  Idle.raise_nofile(n, "figure 15")
  local servers, data, skip = {}, {}, {}
  local ok, err = pcall(function()
    S.log("websocket fan-out: starting %d servers", #list)
    for _, s in ipairs(list) do servers[s.id] = s.start() end
    for _, s in ipairs(list) do
      ready(servers[s.id])
      data[s.id] = { label = s.label, kind = s.kind, rate = {}, last_ms = {}, first_ms = {}, cpu = {}, all_last = {}, failed = { rate = 0 } }
    end
    -- -> the client's output, its exit code, server CPU ticks from "subscribed" to "done"
    local runs = 0
    local function run(s, count)
      local srv = servers[s.id]
      runs = runs + 1 -- a folder per run: the client's output file must start empty
      local p = S.spawn({ Sys.ctx().probes .. "/ws_load", "fanout", tostring(srv.port), "/", tostring(n), tostring(count), "/publish" },
        { dir = S.mkdir(string.format("%s/fanout-%d", srv.dir, runs)) })
      local deadline, c0, c1 = S.now() + (120 + count) * 1000, nil, nil
      while S.now() < deadline do
        local out = p:stdout()
        if not c0 and out:match("subscribed %d+") then c0 = S.tree_cpu_ticks(srv.pid) end
        if out:match("\ndone\n") then c1 = S.tree_cpu_ticks(srv.pid) break end
        if p:poll() then break end
        S.sleep(5)
      end
      p:wait(5000)
      local _, code = p:poll()
      local out = p:output()
      S.stop(p, 1000)
      return out, code or -1, c0 and c1 and (c1 - c0) or nil
    end
    -- warm: one untimed run each (10,000 connections opened and closed once, the JIT's traces,
    -- the allocators' first pages: a cold first repeat was 1.5x slower than the next ones)
    if (cfg.out_warmup or 0) > 0 then
      for _, s in ipairs(list) do run(s, 2) end
    end
    Rounds.run(list, cfg.repeats, "websocket fan-out", pubs, function(s, rep)
      if skip[s.id] then return end
      local d = data[s.id]
      local out, rc, ticks = run(s, pubs)
      if rc == 2 and out:match("the server said") then
        skip[s.id] = true
        R.notes[#R.notes + 1] = string.format("figure 15: no \"%s\" row: its app answered \"%s\" (this build has no ws:subscribe)",
          s.label, (out:match("the server said (.-) instead of ok")))
        return
      end
      local lasts, firsts = {}, {}
      for i, first, last in out:gmatch("publish (%d+): %d+ delivered, first ([%d%.]+) ms, last ([%d%.]+) ms") do
        if tonumber(i) > 0 then -- publish 0 is the warm-up
          lasts[#lasts + 1], firsts[#firsts + 1] = tonumber(last), tonumber(first)
          d.all_last[#d.all_last + 1] = tonumber(last)
        end
      end
      if rc ~= 0 or #lasts < pubs or not ticks then
        d.rate[rep], d.last_ms[rep], d.first_ms[rep], d.cpu[rep] = 0 / 0, 0 / 0, 0 / 0, 0 / 0
        d.failed.rate = d.failed.rate + 1
        S.log("  websocket fan-out, %s: %s", s.label, out:gsub("\n", " | "):sub(-600))
        return
      end
      local last = median(lasts)
      d.last_ms[rep], d.first_ms[rep], d.rate[rep] = last, median(firsts), n / (last / 1000)
      d.cpu[rep] = ticks * 10000 / (n * (pubs + 1)) -- every publish, the warm-up's included
      S.debug("  %-60s last %8.2f ms (first %.2f), %10.0f deliveries/s, %.2f us of server CPU each", s.label, last,
        d.first_ms[rep], d.rate[rep], d.cpu[rep])
    end)
  end)
  for _, srv in pairs(servers) do Sys.stop(srv, 2000) end
  if not ok then error(err, 0) end
  for id in pairs(skip) do data[id] = nil end
  R.ws_fanout = { data = data, subscribers = n, publishes = pubs }
  return R.ws_fanout
end

-- ---- 16. memory per idle WebSocket ----

function F.idle(cfg, R)
  local n = cfg.ws_idle_conns
  local list = select({
    { id = "lc", label = "luacluster", kind = "luacluster", start = lc("ws_idle.lua") },
    { id = "node", label = "Node.js ws, cluster of 2", kind = "peer", needs_node = true, needs_ws = true, start = node("node_ws_echo.js") },
    { id = "openresty", label = "OpenResty lua-resty-websocket (nginx + lua module)", kind = "peer", needs_nginx = true, needs_lua = true,
      start = openresty(n) },
  }, cfg.ws_only)
  Idle.raise_nofile(n, "figure 16")
  local data = Idle.rounds(list, cfg.ws_idle_repeats, string.format("idle websockets (%d held per server)", n), function(srv)
    ready(srv)
    for _ = 1, 20 do S.get(srv.port, "/ping") end
    return Idle.hold(srv, { Sys.ctx().probes .. "/ws_load", "idle", tostring(srv.port), "/", tostring(n) }, n, cfg.idle_settle_ms)
  end)
  R.ws_idle = { data = data, conns = n }
  return R.ws_idle
end

return F
