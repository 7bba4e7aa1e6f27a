-- bench/lib/run.lua: the body of bench/run (see bench/README.md). Run through bench/run,
-- whose trap ends every process this run started, even on Ctrl-C or an error here.
local root = assert(os.getenv("BENCH_ROOT"), "run me through bench/run")
package.path = root .. "/bench/lib/?.lua;" .. root .. "/spec/?.lua;" .. package.path

local S = require("sys")
local Sys = require("systems")
local Rep = require("report")

-- Ctrl-C ends this script at once: the standalone luajit turns SIGINT into an "interrupted!"
-- error that a pcall could swallow; with the default action the process dies and bench/run's
-- trap ends everything this run started.
do
  local ffi = require("ffi")
  pcall(ffi.cdef, "typedef void (*bench_sighandler)(int); bench_sighandler signal(int sig, bench_sighandler h);")
  ffi.C.signal(2, nil) -- SIGINT, SIG_DFL
end

local USAGE = [[
usage: bench/run [--quick | --smoke] [options]
  (no mode)        the full run: 5 repeats of 3 s per HTTP figure (about 21 minutes, +3 for 14-16)
  --quick          2 repeats of 1 s (about 3-4 minutes)
  --smoke          one short repeat of one figure per kind (seconds; figure 7 with 1,000
                   connections); checks that the bench runs
  --only LIST      comma-separated parts: http,plaintext,json,idle,ipc,start,restart,reload,upgrade,
                   redis,proxy,pool (figures 8-10), shdict,ratelimit (figures 11-13),
                   wsecho,wsfanout,wsidle (figures 14-16; ws: all three), tls (figure 17:
                   HTTPS handshakes and keep-alive against nginx); --smoke runs figures 8-17
                   only when named here
  --repeats N      repeats of every figure
  --duration S     seconds per wrk run
  --bin PATH       the luacluster executable to measure (default: build it in build-bench/)
  --out DIR        where latest.json, latest.svg and latest.md go (default bench/results;
                   --smoke: bench/results/tmp/smoke)
  --render FILE    no measuring: print and write the table, SVG and markdown again from a
                   JSON file this script wrote (after a change to bench/lib/report.lua)
  -v               print every measurement as it is taken]]

local o = { mode = "full" }
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--quick" then o.mode = "quick"
  elseif a == "--smoke" then o.mode = "smoke"
  elseif a == "--full" then o.mode = "full"
  elseif a == "--only" then i = i + 1 o.only = arg[i]
  elseif a == "--repeats" then i = i + 1 o.repeats = tonumber(arg[i])
  elseif a == "--duration" then i = i + 1 o.duration = tonumber(arg[i])
  elseif a == "--bin" then i = i + 1 o.bin = arg[i]
  elseif a == "--out" then i = i + 1 o.out = arg[i]
  elseif a == "--render" then i = i + 1 o.render = arg[i]
  elseif a == "-v" or a == "--verbose" then o.verbose = true
  elseif a == "-h" or a == "--help" then print(USAGE) os.exit(0)
  else io.stderr:write("bench/run: unknown option ", a, "\n", USAGE, "\n") os.exit(2) end
  i = i + 1
end
S.set_verbose(o.verbose)

if o.render then
  local json = require("dkjson")
  local f = assert(io.open(o.render, "rb"))
  local doc = assert(json.decode(f:read("*a")), "cannot parse " .. o.render)
  f:close()
  local figs, targets, meta = Rep.from_doc(doc)
  Rep.print_table(figs, targets, meta)
  local out = o.out or o.render:match("^(.*)/[^/]*$") or "."
  S.write_file(out .. "/latest.svg", Rep.svg(figs, meta))
  S.write_file(out .. "/latest.md", Rep.markdown(figs, targets, meta))
  if out .. "/latest.json" ~= o.render then S.write_file(out .. "/latest.json", Rep.json(doc)) end
  print("\nwrote " .. out .. "/latest.svg, latest.md")
  os.exit(0)
end

local CFG = {
  full = {
    repeats = 5, duration = 3, warmup = 1, http_conns = { "ka", "close" }, te_duration = 2,
    idle_conns = 10000, idle_repeats = 3, idle_settle_ms = 500,
    ipc_seconds = 1, ipc_repeats = 5, life_repeats = 7, idle_ms = 500, restart_after_ms = 1500,
    reload_repeats = 3, reload_load_s = 6, reload_at_ms = 2000, reloads = 10,
    pool_conns = 2000, pool_repeats = 3, out_warmup = 2,
    shdict_ms = 500, shdict_entries = 20000,
    ws_subscribers = 10000, ws_publishes = 10, ws_idle_conns = 10000, ws_idle_repeats = 3,
  },
  quick = {
    repeats = 2, duration = 1, warmup = 0, http_conns = { "ka", "close" }, te_duration = 1,
    idle_conns = 10000, idle_repeats = 1, idle_settle_ms = 300,
    ipc_seconds = 0.5, ipc_repeats = 2, life_repeats = 3, idle_ms = 300, restart_after_ms = 1200,
    reload_repeats = 1, reload_load_s = 4, reload_at_ms = 1500, reloads = 3,
    pool_conns = 2000, pool_repeats = 1, out_warmup = 1,
    shdict_ms = 300, shdict_entries = 20000,
    ws_subscribers = 10000, ws_publishes = 5, ws_idle_conns = 10000, ws_idle_repeats = 1,
  },
  smoke = {
    repeats = 1, duration = 1, warmup = 0, http_conns = { "ka" }, te_duration = 1,
    te_only = { lc_dispatch = true, nginx = true, nginx_lua = true },
    idle_conns = 1000, idle_repeats = 1, idle_settle_ms = 200, idle_only = { lc_dispatch = true, nginx = true },
    http_only = { lc_dispatch = true, node_single = true, probe_hello = true },
    ipc_seconds = 0.2, ipc_repeats = 1, ipc_only = { pingpong_small = true }, ipc_no_pin = true,
    life_repeats = 1, idle_ms = 100, life_only = { lc = true }, restart_after_ms = 1200,
    reload_repeats = 1, reload_load_s = 3, reload_at_ms = 1000, reloads = 1,
    redis_only = { lc_dispatch = true, openresty = true },
    proxy_only = { lc_dispatch = true, nginx_proxy = true, node_proxy = true },
    pool_conns = 500, pool_repeats = 1, out_warmup = 0,
    shdict_ms = 100, shdict_entries = 5000,
    ws_subscribers = 1000, ws_publishes = 2, ws_idle_conns = 1000, ws_idle_repeats = 1,
    tls_only = { lc_dispatch = true, nginx = true },
    parts = { http = true, plaintext = true, json = true, idle = true, ipc = true, start = true },
  },
}
local cfg = CFG[o.mode]
cfg.repeats = o.repeats or cfg.repeats
cfg.ipc_repeats = o.repeats or cfg.ipc_repeats
cfg.life_repeats = o.repeats or cfg.life_repeats
cfg.reload_repeats = o.repeats and math.max(1, math.floor(o.repeats / 2)) or cfg.reload_repeats
cfg.duration = o.duration or cfg.duration
cfg.te_duration = o.duration or cfg.te_duration
cfg.idle_repeats = o.repeats and math.max(1, math.min(o.repeats, 3)) or cfg.idle_repeats
cfg.pool_repeats = o.repeats and math.max(1, math.min(o.repeats, 3)) or cfg.pool_repeats
cfg.ws_idle_repeats = o.repeats and math.max(1, math.min(o.repeats, 3)) or cfg.ws_idle_repeats
local parts = cfg.parts or { http = true, plaintext = true, json = true, idle = true, ipc = true, start = true, restart = true, reload = true, upgrade = true,
  redis = true, proxy = true, pool = true, shdict = true, ratelimit = true, wsecho = true, wsfanout = true, wsidle = true,
  tls = true }
if o.only then
  parts = {}
  for p in o.only:gmatch("[^,]+") do parts[p] = true end
  if parts.ws then parts.wsecho, parts.wsfanout, parts.wsidle = true, true, true end
end

-- ---- build ----

local function must(cmd, what)
  local out, rc = S.sh(cmd)
  if rc ~= 0 then
    io.stderr:write("bench/run: ", what, " failed:\n", out, "\n")
    os.exit(1)
  end
  return out
end

local build = root .. "/build-bench"
local bin = o.bin
if bin then
  if bin:sub(1, 1) ~= "/" then bin = os.getenv("PWD") .. "/" .. bin end
else
  S.log("building luacluster in build-bench/ (cmake)")
  must(string.format("cmake -S '%s' -B '%s' -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build '%s' -j2 --target luacluster >/dev/null", root, build, build),
    "building luacluster")
  bin = build .. "/luacluster"
end

local probes = S.mkdir(build .. "/probes")
S.log("building the probes (gcc)")
local probe_list = { "uv_hello", "uv_dispatch", "sock_echo", "idle_conns", "ws_load", "ws_server" }
if parts.tls then probe_list[#probe_list + 1] = "tls_load" end -- OpenSSL's headers: only when figure 17 runs
for _, p in ipairs(probe_list) do
  local libs = (p == "sock_echo" or p == "idle_conns") and "" or (p == "tls_load" and "-lssl -lcrypto" or "-luv")
  local tmp = probes .. "/." .. p .. "." .. S.run_id
  must(string.format("gcc -O2 -Wall -Wextra -o '%s' '%s/bench/probes/%s.c' %s && mv -f '%s' '%s/%s'", tmp, root, p, libs, tmp, probes, p),
    "building bench/probes/" .. p .. ".c")
end

local notes = {}
local node = (S.sh("command -v node"):gsub("%s+$", ""))
if node == "" then
  node = nil
  notes[#notes + 1] = "Node.js is not installed (vendor/install-deps.sh --bench): no Node.js or PM2 rows"
end
if not io.open("/usr/sbin/nginx") then
  notes[#notes + 1] = "nginx is not installed (vendor/install-deps.sh): no nginx rows"
end
local pm2 = root .. "/bench/.peers/node_modules/.bin/pm2"
if parts.reload and node and not io.open(pm2) then
  S.log("installing PM2 into bench/.peers (npm)")
  local out, rc = S.sh("timeout 300 npm install --prefix '" .. root .. "/bench/.peers' pm2 --no-audit --no-fund")
  if rc ~= 0 or not io.open(pm2) then
    notes[#notes + 1] = "PM2 could not be installed from npm, so the reload figure has no PM2 row: " .. out:sub(-300):gsub("\n", " ")
    pm2 = nil
  end
end
if not parts.reload or not node or not io.open(pm2) then pm2 = nil end
-- Node's `ws` package (figures 14-16), beside PM2
if (parts.wsecho or parts.wsfanout or parts.wsidle) and node and not io.open(root .. "/bench/.peers/node_modules/ws/package.json") then
  S.log("installing ws into bench/.peers (npm)")
  local out, rc = S.sh("timeout 300 npm install --prefix '" .. root .. "/bench/.peers' ws --no-audit --no-fund")
  if rc ~= 0 then
    notes[#notes + 1] = "the ws package could not be installed from npm, so figures 14-16 have no Node.js rows: " .. out:sub(-300):gsub("\n", " ")
  end
end

local tmp = S.mkdir(root .. "/bench/results/tmp/run-" .. S.run_id)
Sys.init({ bin = bin, root = root, tmp = tmp, probes = probes, node = node, pm2 = pm2,
  pm2_dir = pm2 and (root .. "/bench/.peers") })
if not Sys.have_nginx_lua() then
  notes[#notes + 1] = "libnginx-mod-http-lua is not installed: no nginx+Lua rows (vendor/install-deps.sh installs it)"
end

-- ---- measure ----

local function first_line(cmd)
  return (S.sh(cmd):match("[^\n]*"))
end

local t_start = S.now()
local meta = {
  mode = o.mode,
  command = "bench/run" .. (#arg > 0 and (" " .. table.concat(arg, " ")) or ""),
  date = os.date("!%Y-%m-%d %H:%M UTC"),
  machine = string.format("%s CPUs (%s), Linux %s", first_line("nproc"),
    (S.read_file("/proc/cpuinfo"):match("model name%s*:%s*([^\n]+)") or "?"):gsub("%s+", " "), first_line("uname -r")),
  versions = {
    luacluster = first_line("'" .. bin .. "' --version"), luajit = first_line("luajit -v"),
    node = node and first_line("node --version") or nil, nginx = first_line("/usr/sbin/nginx -v 2>&1"), wrk = first_line("wrk -v 2>&1"),
    pm2 = pm2 and S.read_file(root .. "/bench/.peers/node_modules/pm2/package.json"):match('"version"%s*:%s*"([^"]+)"') or nil,
  },
  load_before = first_line("cat /proc/loadavg"),
  config = {
    http_repeats = cfg.repeats, http_seconds = cfg.duration, wrk = "wrk -t1 -c64", ipc_seconds = cfg.ipc_seconds,
    te_seconds = cfg.te_duration, te_wrk = "wrk -t1 -c256 --timeout 8s (plaintext: -s bench/lib/wrk_pipeline.lua -- 16)",
    idle_conns = cfg.idle_conns, idle_repeats = cfg.idle_repeats, pool_conns = cfg.pool_conns, pool_repeats = cfg.pool_repeats,
    ipc_repeats = cfg.ipc_repeats, life_repeats = cfg.life_repeats, reload_repeats = cfg.reload_repeats,
    ws_subscribers = cfg.ws_subscribers, ws_publishes = cfg.ws_publishes, ws_idle_conns = cfg.ws_idle_conns,
    ws_idle_repeats = cfg.ws_idle_repeats,
    tls = parts.tls and "bench/probes/tls_load.c: 32 connections in 2 processes (full, resume); wrk -t1 -c64 https://; ECDSA P-256 certificate" or nil,
  },
  notes = notes,
}
meta.repeats_text = string.format("%d HTTP repeats of %d s (TechEmpower: %d s), %d IPC repeats of %g s, %d start/restart repeats, %d reloads (+%d under wrk), %d idle-connection repeats of %d connections",
  cfg.repeats, cfg.duration, cfg.te_duration, cfg.ipc_repeats, cfg.ipc_seconds, cfg.life_repeats, cfg.reloads, cfg.reload_repeats,
  cfg.idle_repeats, cfg.idle_conns)
if parts.pool then
  meta.repeats_text = meta.repeats_text .. string.format(", %d pooled-connection repeats of %d connections", cfg.pool_repeats, cfg.pool_conns)
end
if parts.shdict then
  meta.repeats_text = meta.repeats_text .. string.format(", %d shared-dictionary repeats of %d ms per loop and %d entries",
    cfg.repeats, cfg.shdict_ms, cfg.shdict_entries)
end
if parts.wsecho or parts.wsfanout or parts.wsidle then
  meta.repeats_text = meta.repeats_text .. string.format(
    ", WebSocket: %d echo repeats of %d s with 64 connections, %d fan-out repeats of %d publishes to %d subscribers, %d idle repeats of %d",
    cfg.repeats, cfg.duration, cfg.repeats, cfg.ws_publishes, cfg.ws_subscribers, cfg.ws_idle_repeats, cfg.ws_idle_conns)
end

if parts.tls then
  meta.repeats_text = meta.repeats_text .. string.format(", TLS: %d repeats of %d s per load", cfg.repeats, cfg.duration)
end

local R = { notes = notes }
local function part(name, fn)
  if not parts[name] then return end
  local ok, err = pcall(fn)
  if not ok and tostring(err):match("interrupted") then
    S.stop_all()
    os.exit(130)
  end
  if not ok then
    S.log("%s failed: %s", name, tostring(err))
    notes[#notes + 1] = name .. " failed: " .. tostring(err):sub(1, 300)
  end
end

part("http", function() require("fig_http").run(cfg, R) end)
do
  local tests = {}
  if parts.plaintext then tests[#tests + 1] = "plaintext" end
  if parts.json then tests[#tests + 1] = "json" end
  if #tests > 0 then parts.te = true end
  part("te", function() require("fig_te").run(cfg, R, tests) end)
end
part("idle", function() require("fig_idle").run(cfg, R) end)
part("ipc", function() require("fig_ipc").run(cfg, R) end)
part("start", function() require("fig_life").start_and_rss(cfg, R) end)
part("restart", function() require("fig_life").restart(cfg, R) end)
part("reload", function() require("fig_life").reload(cfg, R) end)
part("upgrade", function() require("fig_life").upgrade(cfg, R) end)
part("redis", function() require("fig_redis").run(cfg, R) end)
part("proxy", function() require("fig_proxy").run(cfg, R) end)
part("pool", function() require("fig_pool").run(cfg, R) end)
part("shdict", function() require("fig_shdict").run(cfg, R) end)
part("ratelimit", function() require("fig_shdict").ratelimit(cfg, R) end)
part("wsecho", function() require("fig_ws").echo(cfg, R) end)
part("wsfanout", function() require("fig_ws").fanout(cfg, R) end)
part("wsidle", function() require("fig_ws").idle(cfg, R) end)
part("tls", function() require("fig_tls").run(cfg, R) end)
S.stop_all()

meta.load_after = first_line("cat /proc/loadavg")
meta.seconds = math.floor((S.now() - t_start) / 1000)
if R.http and R.http.lc_ports then
  notes[#notes + 1] = "ports mode: wrk hits slot 1's port only, so that row is one worker's throughput (slot 2 has its own port, for nginx to balance)."
end
if R.ipc and #R.ipc.figures > 6 then
  notes[#notes + 1] = "IPC, 2 cores: on this VM a wake-up across cores costs tens of microseconds and the scheduler sometimes keeps both processes on one core, so the free ping-pong figures are bimodal (the blocking probe alone swings from 16k to 200k round trips/s between runs); the 1-core rows (taskset -c 1) measure the software."
end
if R.http then
  notes[#notes + 1] = "Figure 4: wrk runs on the same 2 cores as the servers, so 2 workers compete with the load generator; growth past 2 workers is stated on paper in bench/README.md, not measured here."
end

-- ---- report ----

local figs = Rep.build(R)
local targets = Rep.targets(figs, notes)
Rep.print_table(figs, targets, meta)
local out = o.out or (o.mode == "smoke" and (root .. "/bench/results/tmp/smoke") or (root .. "/bench/results"))
S.mkdir(out)
local doc = Rep.json_doc(figs, targets, meta, R.raw)
S.write_file(out .. "/latest.json", Rep.json(doc))
S.write_file(out .. "/latest.svg", Rep.svg(figs, meta))
S.write_file(out .. "/latest.md", Rep.markdown(figs, targets, meta))
print(string.format("\nwrote %s/latest.json, latest.svg, latest.md (%d s; run id: %s)", out, meta.seconds, S.run_id))
if not o.verbose then S.sh("rm -rf '" .. tmp .. "'") end
