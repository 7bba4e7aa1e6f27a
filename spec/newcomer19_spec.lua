-- A newcomer's trial of the binary upgrade (issue 19), with README.md only: the counter app of
-- spec/newcomer19/counter/ upgraded under load (`luacluster upgrade`, SIGUSR2, --binary), and the
-- mistakes a newcomer makes, each of which must give a clear message and leave the cluster
-- serving. The bugs it found: a --binary that cannot be executed left a Lua traceback in the
-- master's log a second later (and no refusal line), a refusal before a new master ran was not
-- logged (SIGUSR2 has no other reader), a save under --watch during an upgrade or a reload was
-- never served, and a new master stopped by its metrics port did not say why to `upgrade`.
-- Real processes: the built binary, copies and scripts standing in for a new one, curl.
local H = require("helper")
local U = require("upgrade_util")
local stop = U.stop
local ctl, status_pid, script = U.ctl, U.status_pid, U.script
local L = require("load")

local COUNTER = H.root .. "/spec/newcomer19/counter/app.lua"


local function get(app)
  local body, status = H.curl("http://127.0.0.1:" .. app.port .. "/")
  return status == 200 and body or nil
end

local function wait_serving(app)
  assert(H.wait_for(function() return get(app) ~= nil end, 8000, 50),
    "the app did not start serving:\n" .. app.p:output())
  return app
end

-- starts app_path (or src written as app.lua) with its own port and control socket;
-- opts.exe: another binary than H.bin (a copy)
local function start(app_path, options, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  if opts.src then
    app_path = dir .. "/app.lua"
    H.write_file(app_path, H.prelude .. opts.src)
  end
  local app = { port = H.free_port(), dir = dir, path = app_path, ctl = dir .. "/ctl.sock" }
  local argv = { opts.exe or H.bin, "-p", tostring(app.port), "--control", app.ctl }
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = tostring(o)
  end
  argv[#argv + 1] = app_path
  app.p = H.spawn(argv, { dir = dir })
  return wait_serving(app)
end

local function count(body)
  return tonumber((body or ""):match("^count (%d+)"))
end



describe("newcomer 19: upgrading the counter app", function()
  after_each(H.cleanup)

  it("upgrades under load (command, SIGUSR2, --binary a copy): no failed request, the count goes on", function()
    local app = start(COUNTER)
    local copy = H.tmpdir() .. "/luacluster-copy"
    H.sh("cp " .. H.bin .. " " .. copy)
    local before = count(get(app))
    assert.truthy(before, get(app))
    local loads = { L.background(app.port, { shape = "keepalive" }), L.background(app.port, { shape = "close" }) }
    H.sleep(300)
    local pids = {}
    local out, code = ctl(app, "upgrade")
    assert.equal(0, code, out .. app.p:output())
    pids[#pids + 1] = tonumber(out:match("^upgraded: new master pid (%d+) serves"))
    assert.equal(pids[1], (status_pid(app)), out)
    H.sh("kill -USR2 " .. pids[1])
    assert.truthy(H.wait_for(function()
      local p = status_pid(app)
      return p and p ~= pids[1]
    end, 8000), app.p:output())
    out, code = ctl(app, "upgrade", "--binary " .. copy)
    assert.equal(0, code, out .. app.p:output())
    pids[#pids + 1] = tonumber(out:match("^upgraded: new master pid (%d+) serves"))
    local spid = status_pid(app)
    assert.equal(pids[2], spid)
    assert.truthy(H.sh("readlink /proc/" .. spid .. "/exe"):find(copy, 1, true))
    H.sleep(300)
    for i, h in ipairs(loads) do
      local r = h.finish()
      assert(r.fail == 0 and r.ok > 0, "load " .. i .. ": ok " .. r.ok .. ", fail " .. r.fail .. ": "
        .. table.concat(r.errors, "; ") .. "\n" .. app.p:output())
    end
    local after = count(get(app))
    assert.truthy(after and after > before, tostring(after) .. " after " .. tostring(before))
    stop(app)
  end)

  it("shows an upgrade in progress in status (text and --json), answered by the old master", function()
    local app = start(COUNTER)
    local slow = script("sleep 1.5\nexec " .. H.bin .. " \"$@\"")
    local cmd = H.spawn({ H.bin, "upgrade", "--control", app.ctl, "--binary", slow })
    H.sleep(400)
    local pid, out = status_pid(app)
    assert.equal(app.p.pid, pid, out)
    assert.truthy(out:find("upgrade in progress: new master pid %d+ from " .. slow:gsub("%p", "%%%0") .. ", starting for"), out)
    local js = ctl(app, "status", "--json")
    assert.truthy(js:find('"upgrade":{', 1, true), js)
    assert.equal(0, (cmd:wait(10000)), cmd:output() .. app.p:output())
    pid, out = status_pid(app)
    assert.are_not.equal(app.p.pid, pid)
    assert.falsy(out:find("upgrade in progress", 1, true), out)
    stop(app)
  end)

  it("refuses a --binary that is not executable with one clear line, logs it, and no traceback follows", function()
    local app = start(COUNTER)
    local noexec = H.tmpdir() .. "/luacluster-noexec"
    H.sh("cp " .. H.bin .. " " .. noexec .. " && chmod -x " .. noexec)
    for _, path in ipairs({ noexec, H.tmpdir() }) do -- (a file without x, a folder)
      local out, code = ctl(app, "upgrade", "--binary " .. path)
      assert.are_not.equal(0, code)
      assert.equal("luacluster: upgrade failed: cannot start " .. path .. ": EACCES: permission denied\n", out)
    end
    H.sleep(1500) -- (the closed channel's check came a second later and raised)
    local log = app.p:output()
    assert.falsy(log:find("traceback", 1, true), log)
    assert.truthy(log:find("upgrade refused: cannot start " .. noexec, 1, true), log)
    assert.equal(app.p.pid, (status_pid(app)))
    assert.truthy(count(get(app)))
    -- and the next upgrade goes through
    local out, code = ctl(app, "upgrade")
    assert.equal(0, code, out .. app.p:output())
    stop(app)
  end)

  it("logs why SIGUSR2 cannot upgrade when the binary it was started from is gone", function()
    local copy = H.tmpdir() .. "/luacluster-gone"
    H.sh("cp " .. H.bin .. " " .. copy)
    local app = start(COUNTER, nil, { exe = copy })
    os.remove(copy)
    H.sh("kill -USR2 " .. app.p.pid)
    assert.truthy(H.wait_for(function()
      return app.p:output():find("upgrade refused: cannot run " .. copy .. ": no such file", 1, true)
    end, 5000), app.p:output())
    assert.equal(app.p.pid, (status_pid(app)))
    assert.truthy(count(get(app)))
    ctl(app, "stop")
    assert.equal(0, (app.p:wait(10000)))
  end)

  it("refuses to upgrade a master that is pid 1 (a container's init), which goes on serving", function()
    local _, ucode = H.sh("/usr/bin/unshare -fp --mount-proc true 2>&1")
    if ucode ~= 0 then
      return pending("no pid namespace here (unshare -fp needs root)")
    end
    local dir = H.tmpdir()
    local app = { port = H.free_port(), dir = dir, path = COUNTER, ctl = dir .. "/ctl.sock" }
    app.p = H.spawn({ "/usr/bin/unshare", "-fp", "--mount-proc", H.bin, "-p", tostring(app.port), "--control", app.ctl,
      COUNTER }, { dir = dir })
    wait_serving(app)
    local out, code = ctl(app, "upgrade")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("upgrade failed: this master is pid 1 (a container's init)", 1, true), out)
    H.sleep(500)
    assert.truthy(count(get(app)), app.p:output()) -- (it said "upgraded" and the container ended)
    assert.equal(1, (status_pid(app)))
    -- (not `luacluster stop`: it would wait for pid 1 of this namespace, the host's init)
    app.p:kill_group("SIGTERM")
    assert.truthy(app.p:wait(10000), app.p:output())
  end)

  it("says why a new master stopped when its metrics port is taken", function()
    local taken = H.free_port()
    local holder = H.spawn({ "/usr/bin/python3", "-c", ([[
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", %d)); s.listen(1); time.sleep(60)]]):format(taken) })
    assert.truthy(H.wait_listening(taken, 5000))
    local function src(metrics)
      return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 1, metrics = %s })
else
  http.create_server(function() return 200, "ok\n" end):listen()
end
]]):format(metrics)
    end
    local app = start(nil, nil, { src = src("false") })
    H.write_file(app.path, H.prelude .. src(tostring(taken))) -- the new code names a port in use
    local out, code = ctl(app, "upgrade")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("before it served: metrics: listen EADDRINUSE 127.0.0.1:" .. taken, 1, true), out)
    assert.equal(app.p.pid, (status_pid(app)))
    assert.equal("ok\n", get(app))
    holder:stop()
    ctl(app, "stop")
    assert.equal(0, (app.p:wait(10000)))
  end)
end)


describe("newcomer 19: --watch across an upgrade and a reload", function()
  after_each(H.cleanup)

  -- workers are ready 1 s after their top level: a save lands while the switch waits for them
  local function src(version)
    return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 1, ready = "manual" })
else
  http.create_server(function() return 200, "%s\n" end):listen()
  timer.after(1000, function() cluster.worker:ready() end)
end
]]):format(version)
  end

  it("serves a save made during an upgrade, and one made during a reload, once that has finished", function()
    local app = start(nil, { "--watch" }, { src = src("v1") })
    local cmd = H.spawn({ H.bin, "upgrade", "--control", app.ctl })
    H.sleep(400) -- (the new master has read app.lua and waits for its worker)
    H.write_file(app.path, H.prelude .. src("v2"))
    assert.equal(0, (cmd:wait(10000)), cmd:output() .. app.p:output())
    assert.truthy(H.wait_for(function() return get(app) == "v2\n" end, 6000),
      "the save during the upgrade was not served: " .. tostring(get(app)) .. "\n" .. app.p:output())
    cmd = H.spawn({ H.bin, "reload", "--control", app.ctl })
    H.sleep(400)
    H.write_file(app.path, H.prelude .. src("v3"))
    assert.equal(0, (cmd:wait(10000)), cmd:output() .. app.p:output())
    assert.truthy(H.wait_for(function() return get(app) == "v3\n" end, 6000),
      "the save during the reload was not served: " .. tostring(get(app)) .. "\n" .. app.p:output())
    stop(app)
  end)
end)


describe("newcomer 19: the systemd unit README shows", function()
  it("starts without a folder made by hand: no ReadWritePaths= that must exist, LogsDirectory= instead", function()
    local unit = H.read_file(H.root .. "/examples/systemd/luacluster@.service")
    -- (a ReadWritePaths= folder that does not exist fails the start: 226/NAMESPACE; "-" tolerates it)
    for line in unit:gmatch("[^\n]+") do
      local paths = line:match("^ReadWritePaths=(.*)$")
      for p in (paths or ""):gmatch("%S+") do
        assert.equal("-", p:sub(1, 1), line)
      end
    end
    assert.truthy(unit:find("\nLogsDirectory=luacluster\n", 1, true))
    -- the upgrade the unit's comment describes uses the socket ExecStart gives
    local ctl = unit:match("\nExecStart=[^\n]* %-%-control (%S+)")
    assert.equal("%t/luacluster-%i/control.sock", ctl)
    assert.truthy(unit:find("luacluster upgrade --control /run/luacluster-NAME/control.sock", 1, true))
  end)
end)


describe("newcomer 19: cluster.keep across an upgrade", function()
  after_each(H.cleanup)

  it("carries the master's kept state, with what the old code wrote while the new master started", function()
    -- the new master's worker is ready 1 s after its top level: requests meanwhile go to the
    -- old master, whose kept count goes on; the new master must go on from there
    local app = start(nil, nil, { src = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 1, ready = "manual" })
  local state = cluster.keep("state", { n = 0 })
  local mine = cluster.keep("mine", { started = 0 })
  mine.started = mine.started + 1 -- the new top level's own change is kept
  cluster.on("request", function(w, msg) state.n = state.n + 1 return state.n .. " " .. mine.started end)
else
  http.create_server(function() return 200, "count " .. cluster.worker:request("hit") .. "\n" end):listen()
  timer.after(1000, function() cluster.worker:ready() end)
end
]] })
    assert.equal("count 2 1\n", get(app)) -- (wait_serving's request was the first)
    local cmd = H.spawn({ H.bin, "upgrade", "--control", app.ctl })
    H.sleep(300)
    assert.equal("count 3 1\n", get(app)) -- the old master, while the new one's worker starts
    assert.equal(0, (cmd:wait(10000)), cmd:output() .. app.p:output())
    assert.equal("count 4 2\n", get(app), app.p:output())
    stop(app)
  end)
end)


describe("newcomer 19: cluster.job across an upgrade", function()
  after_each(H.cleanup)

  it("never overlaps two runs of a job: the old master's run in flight counts in the new master", function()
    local app = start(nil, { "-w", 2 }, { src = U.job_app(300, 1500) })
    for round = 1, 2 do
      -- right after a run started: it has more than a second to go in the old master
      assert.truthy(H.wait_for(function() return (get(app) or ""):find("^running 1 ") end, 5000), get(app))
      local out, code = ctl(app, "upgrade")
      assert.equal(0, code, out .. app.p:output())
      H.sleep(2200) -- (the old run ends, the new master's runs go on)
      assert.truthy((get(app) or ""):find(" overlaps 0\n$"), "round " .. round .. ": " .. tostring(get(app))
        .. "\n" .. app.p:output())
    end
    local runs = tonumber(get(app):match("runs (%d+)"))
    assert.truthy(runs >= 2, get(app)) -- (the old masters' runs ended, not killed)
    assert.truthy(app.p:output():find("the last run still runs on the old master's worker (pid", 1, true), app.p:output())
    stop(app)
  end)
end)
