-- Hot reload under load: luacluster's `luacluster reload` beside Node.js with PM2's `pm2 reload`.
-- For each: an HTTP app with 2 workers, two load clients running the whole time (spec/load.lua:
-- 4 keep-alive connections and 4 new-connection-per-request connections, every response
-- counted), and N reloads in a row (default 20), each with a new version of the app's code.
-- Figures:
--   reload cmd   how long the reload command takes to return (luacluster: the new generation
--                serves when it returns; pm2: its own notion of done)
--   to new code  from starting the reload command to the first response of the new code on a
--                new connection (polled every 2 ms)
--   requests     answered during the run; lost = any request that got no 2xx answer (refused,
--                reset, closed before its response, a timeout, a 5xx)
-- Run: luajit bench/reload.lua [--reloads N] [--modes M1,M2] [--pm2 DIR]    (DIR: a folder where
--   `npm install pm2` was run, e.g. mkdir -p /tmp/pm2 && cd /tmp/pm2 && echo '{}' > package.json
--   && npm install pm2; PM2's daemon then keeps its state under DIR/home)
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/bench/[^/]*$") or "."
package.path = here .. "/spec/?.lua;" .. package.path

local H = require("helper")
local L = require("load")

local reloads, pm2_dir, modes = 20, nil, { "dispatch" }
do
  local i = 1
  while arg[i] do
    if arg[i] == "--reloads" then reloads = tonumber(arg[i + 1]) i = i + 1
    elseif arg[i] == "--pm2" then pm2_dir = arg[i + 1] i = i + 1
    elseif arg[i] == "--modes" then
      modes = {}
      for m in arg[i + 1]:gmatch("[^,]+") do modes[#modes + 1] = m end
      i = i + 1
    else error("usage: luajit bench/reload.lua [--reloads N] [--modes dispatch,shared,reuseport,ports] [--pm2 DIR]") end
    i = i + 1
  end
end


local function start_loads(port)
  local dir = H.tmpdir()
  local loads = {}
  for i, shape in ipairs({ "keepalive", "close" }) do
    local out = dir .. "/result" .. i .. ".lua"
    loads[i] = {
      out = out,
      p = H.spawn({ "/usr/bin/env", "luajit", H.root .. "/spec/load.lua", tostring(port), "--shape", shape,
        "--conns", "4", "--until", dir .. "/stop", "--max-ms", "600000", "--out", out }, { dir = dir }),
    }
  end
  return function()
    H.write_file(dir .. "/stop", "")
    local total = { ok = 0, fail = 0, errors = {} }
    for _, l in ipairs(loads) do
      l.p:wait(20000)
      local r = assert(L.result(l.out), "no result from a load client")
      total.ok, total.fail = total.ok + r.ok, total.fail + r.fail
      for _, e in ipairs(r.errors) do
        total.errors[#total.errors + 1] = e
      end
    end
    return total
  end
end


-- first response of the new code on new connections: -> ms since t0
local function wait_new(port, tag, t0)
  local deadline = t0 + 30000
  while L.now() < deadline do
    local s = H.connect(port, 1000)
    if s then
      s:send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local data = s:read_all(1000)
      s:close()
      if data:match("\r\n\r\n" .. tag .. " ") then
        return L.now() - t0
      end
    end
    H.sleep(2)
  end
  return nil
end


local function stats(list)
  local sorted = {}
  for i, v in ipairs(list) do sorted[i] = v end
  table.sort(sorted)
  local sum = 0
  for _, v in ipairs(sorted) do sum = sum + v end
  return string.format("median %6.1f ms, mean %6.1f ms, max %6.1f ms",
    sorted[math.ceil(#sorted / 2)] or 0, #sorted > 0 and sum / #sorted or 0, sorted[#sorted] or 0)
end


-- run(name, setup) with setup = { start(), reload(), write(tag), stop() , port }
local function run(name, s)
  io.stdout:write(name, ": starting\n")
  s.write("g1")
  s.start()
  assert(wait_new(s.port, "g1", L.now()), name .. " did not start")
  local finish = start_loads(s.port)
  H.sleep(500)
  local cmd_ms, new_ms, failed_cmds = {}, {}, 0
  for i = 2, reloads + 1 do
    local tag = "g" .. i
    s.write(tag)
    local t0 = L.now()
    local out, rc = s.reload()
    cmd_ms[#cmd_ms + 1] = L.now() - t0
    if rc ~= 0 then
      failed_cmds = failed_cmds + 1
      io.stdout:write("  reload ", i - 1, " failed: ", out, "\n")
    end
    local t = wait_new(s.port, tag, t0)
    new_ms[#new_ms + 1] = t or 30000
    H.sleep(200)
  end
  H.sleep(300)
  local total = finish()
  s.stop()
  local r = { name = name, cmd = stats(cmd_ms), new = stats(new_ms), ok = total.ok, fail = total.fail,
    failed_cmds = failed_cmds, errors = total.errors, cmd_ms = cmd_ms, new_ms = new_ms }
  io.stdout:write(string.format("  reload cmd:  %s\n  to new code: %s\n  requests: %d answered, %d lost; reload commands failed: %d\n",
    r.cmd, r.new, r.ok, r.fail, failed_cmds))
  for i = 1, math.min(5, #r.errors) do
    io.stdout:write("    ", r.errors[i], "\n")
  end
  return r
end


local results = {}

-- luacluster, in each mode asked for (ports mode: the load goes to the first worker's port)
for _, mode in ipairs(modes) do
  local dir = H.tmpdir()
  local port = H.free_port()
  local app = dir .. "/app.lua"
  local p
  results[#results + 1] = run("luacluster (" .. mode .. ", -w 2)", {
    port = port,
    write = function(tag)
      H.write_file(app .. ".tmp", ([[
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local TAG = %q
if cluster.is_worker then
  http.create_server(function(req, res)
    return 200, TAG .. " " .. cluster.worker.id .. "\n"
  end):listen()
end
]]):format(tag))
      os.rename(app .. ".tmp", app)
    end,
    start = function()
      p = H.start(app, { "-w", 2, "-m", mode, "-p", port, "--control", dir .. "/ctl.sock" }, { dir = dir })
    end,
    reload = function()
      return H.sh(H.bin .. " reload --control " .. dir .. "/ctl.sock")
    end,
    stop = function()
      H.sh(H.bin .. " stop --control " .. dir .. "/ctl.sock")
      p:wait(10000)
      p:stop()
    end,
  })
end

-- Node.js + PM2 (cluster mode, -i 2), with the graceful shutdown PM2's docs ask for
if pm2_dir then
  local pm2 = pm2_dir .. "/node_modules/.bin/pm2"
  local home = pm2_dir .. "/home"
  local env = "PM2_HOME=" .. home .. " "
  local dir = H.tmpdir()
  local port = H.free_port()
  H.write_file(dir .. "/app.js", ([[
const http = require("http");
const fs = require("fs");
const TAG = fs.readFileSync(__dirname + "/version", "utf8").trim();
const server = http.createServer((req, res) => {
  res.end(TAG + " " + process.pid + "\n");
});
server.listen(%d, "127.0.0.1", () => { if (process.send) process.send("ready"); });
// PM2's graceful shutdown: stop accepting, finish what is in flight, then exit
process.on("SIGINT", () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
});
]]):format(port))
  results[#results + 1] = run("Node.js " .. (H.sh("node --version"):gsub("%s+$", "")) .. " + PM2 " .. (H.read_file(pm2_dir .. "/node_modules/pm2/package.json"):match('"version"%s*:%s*"([^"]+)"') or "?") .. " (cluster, -i 2, wait_ready)", {
    port = port,
    write = function(tag)
      H.write_file(dir .. "/version", tag .. "\n")
    end,
    start = function()
      local out, rc = H.sh(env .. pm2 .. " start " .. dir .. "/app.js -i 2 --name lcbench --wait-ready --listen-timeout 10000 --kill-timeout 6000")
      assert(rc == 0, out)
    end,
    reload = function()
      return H.sh(env .. pm2 .. " reload lcbench")
    end,
    stop = function()
      H.sh(env .. pm2 .. " delete lcbench")
      H.sh(env .. pm2 .. " kill")
    end,
  })
end

io.stdout:write("\n| server | reloads | reload command | reload to new code serving | requests answered | requests lost |\n")
io.stdout:write("| --- | --- | --- | --- | --- | --- |\n")
for _, r in ipairs(results) do
  io.stdout:write(string.format("| %s | %d | %s | %s | %d | %d |\n", r.name, reloads, r.cmd, r.new, r.ok, r.fail))
end
if os.getenv("BENCH_RELOAD_LINES") then -- machine-readable too, for bench/run
  for _, r in ipairs(results) do
    local id = r.name:match("^luacluster %((%w+)") and ("lc_" .. r.name:match("^luacluster %((%w+)")) or "pm2"
    local function list(t)
      local out = {}
      for i, v in ipairs(t) do out[i] = string.format("%.2f", v) end
      return table.concat(out, ",")
    end
    io.stdout:write(string.format("reload.%s.label %s\n", id, r.name))
    io.stdout:write(string.format("reload.%s.cmd_ms %s\n", id, list(r.cmd_ms)))
    io.stdout:write(string.format("reload.%s.new_ms %s\n", id, list(r.new_ms)))
    io.stdout:write(string.format("reload.%s.requests %d\nreload.%s.lost %d\nreload.%s.failed_cmds %d\n",
      id, r.ok + r.fail, id, r.fail, id, r.failed_cmds))
  end
end
local lost = 0
for _, r in ipairs(results) do
  if r.name:match("^luacluster") then lost = lost + r.fail + r.failed_cmds end
end
os.exit(lost == 0 and 0 or 1)
