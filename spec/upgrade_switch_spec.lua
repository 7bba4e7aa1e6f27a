-- Integration specs of the binary upgrade's switch (issue 19, a review's findings): what the
-- old master does when the new one hangs once it was told to take over, when the cluster is
-- told to stop while an upgrade runs, and when the new master is asked to upgrade before it
-- serves. Real processes, real sockets: the "new binary" is a shell script that records its
-- pid and execs the real one with an environment variable the app reads.
local H = require("helper")
local U = require("upgrade_util")
local ctl, status_pid = U.ctl, U.status_pid

-- the pid file a wrapper script writes before it execs the real binary
local function wrapper(env, before)
  local dir = H.tmpdir()
  local path, pidfile = dir .. "/luacluster-new", dir .. "/new.pid"
  H.write_file(path, "#!/bin/sh\necho $$ > " .. pidfile .. "\n" .. (before or "") .. "\n"
    .. "exec env " .. env .. " " .. H.bin .. " \"$@\"\n")
  H.sh("chmod +x " .. path)
  return path, pidfile
end

local function start(src, options)
  local port = H.free_port()
  local dir = H.tmpdir()
  local app = { port = port, dir = dir, path = dir .. "/app.lua", ctl = dir .. "/ctl.sock" }
  H.write_file(app.path, H.prelude .. src)
  local argv = { "-p", port, "--control", app.ctl }
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = o
  end
  app.p = H.start(app.path, argv)
  assert(H.wait_for(function()
    local _, status = H.curl("http://127.0.0.1:" .. port .. "/")
    return status == 200
  end, 8000, 50), "the app did not start serving:\n" .. app.p:output())
  return app
end


local function read_pid(pidfile, timeout)
  local pid
  H.wait_for(function()
    pid = tonumber(H.read_file(pidfile) or "")
    return pid ~= nil
  end, timeout or 5000, 20)
  return pid
end

-- the masters among pid's children (a worker's initial environment names its role)
local function child_masters(pid)
  local list = {}
  for _, c in ipairs(H.children(pid)) do
    local env = H.read_file("/proc/" .. c .. "/environ") or ""
    local exe = H.sh("readlink /proc/" .. c .. "/exe 2>/dev/null")
    if not env:find("LUACLUSTER_ROLE=", 1, true) and exe:find("luacluster", 1, true) then
      list[#list + 1] = c
    end
  end
  return list
end

local function kill(pid)
  if pid and H.pid_alive(pid) then
    H.sh("kill -KILL " .. pid .. " 2>/dev/null")
  end
end


describe("luacluster upgrade, the switch", function()
  local strays = {}
  after_each(function()
    for _, pid in ipairs(strays) do
      kill(pid)
    end
    strays = {}
    H.cleanup()
  end)

  it("takes the sockets back when the new master hangs after it said it was ready", function()
    -- LUACLUSTER_SPEC_UPGRADE_DIE=hang: the new master stops itself (SIGSTOP) where the old one
    -- has let go ("released"), as a new binary that hangs there would: it never accepts; the
    -- old master must not wait for it forever with nobody accepting and its control socket closed
    local app = start([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ reload_timeout = 3000 })
else
  http.create_server(function() return 200, "ok " .. cluster.worker.generation .. "\n" end):listen()
end
]], { "-w", 1 })
    local bin, pidfile = wrapper("LUACLUSTER_SPEC_UPGRADE_DIE=hang")
    local cmd = H.spawn({ H.bin, "upgrade", "--control", app.ctl, "--binary", bin })
    local new = read_pid(pidfile)
    strays[#strays + 1] = new
    local code = cmd:wait(12000)
    assert.truthy(code, "the upgrade command still waits 12 s later (nobody accepts meanwhile)\n" .. app.p:output())
    assert.are_not.equal(0, code)
    assert.truthy(cmd:output():find("did not serve within", 1, true), cmd:output())
    -- the old master accepts again and answers its control socket; the hung one is gone
    assert.truthy(H.wait_for(function()
      local body, status = H.curl("http://127.0.0.1:" .. app.port .. "/", "--max-time 1")
      return status == 200 and body == "ok 1\n"
    end, 5000, 100), app.p:output())
    assert.truthy(H.wait_for(function() return status_pid(app) == app.p.pid end, 5000), app.p:output())
    assert.truthy(H.wait_for(function() return not H.pid_alive(new) end, 5000))
    assert.is_true(app.p:alive())
  end)

  it("stops the new master, not just the old one, when the cluster is stopped during an upgrade", function()
    -- a request in flight keeps the old master draining while the new one (started late by its
    -- wrapper) becomes ready: the stop must win, nothing serves afterwards
    local app = start([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ drain_timeout = 4000 })
else
  local timer = require("luacluster.timer")
  http.create_server(function(req)
    if req.path == "/slow" then
      timer.sleep(2500)
    end
    return 200, "ok\n"
  end):listen()
end
]], { "-w", 1 })
    local bin, pidfile = wrapper("X=1", "sleep 0.5")
    local slow = H.spawn({ "/usr/bin/curl", "-s", "--max-time", "10", "http://127.0.0.1:" .. app.port .. "/slow" })
    H.sleep(200)
    local cmd = H.spawn({ H.bin, "upgrade", "--control", app.ctl, "--binary", bin })
    local new = read_pid(pidfile)
    strays[#strays + 1] = new
    app.p:kill("SIGTERM")
    assert.truthy(app.p:wait(10000), "the old master did not stop:\n" .. app.p:output())
    assert.truthy(cmd:wait(5000))
    assert.truthy(cmd:output():find("the cluster is stopping", 1, true), cmd:output())
    assert.equal(0, (slow:wait(5000)))
    assert.equal("ok\n", slow:stdout()) -- the request in flight was served: the stop drained
    -- the new master must not serve on after the stop
    assert.truthy(H.wait_for(function() return not H.pid_alive(new) end, 6000),
      "the new master (pid " .. tostring(new) .. ") still runs after the cluster was stopped\n" .. app.p:output())
    local _, status = H.curl("http://127.0.0.1:" .. app.port .. "/", "--max-time 1")
    assert.are_not.equal(200, status)
  end)

  it("refuses an upgrade asked of a new master before it serves (SIGUSR2 during the switch)", function()
    local app = start([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ reload_timeout = 8000 })
else
  if os.getenv("SLOW_WORKER") and cluster.worker.generation == 2 then
    os.execute("sleep 1.5") -- the new master's first workers take a while
  end
  http.create_server(function() return 200, "ok " .. cluster.worker.generation .. "\n" end):listen()
end
]], { "-w", 1 })
    local bin, pidfile = wrapper("SLOW_WORKER=1")
    local cmd = H.spawn({ H.bin, "upgrade", "--control", app.ctl, "--binary", bin })
    local new = read_pid(pidfile)
    strays[#strays + 1] = new
    H.sleep(600) -- its app has run (SIGUSR2 upgrades now), its worker is not ready yet
    H.sh("kill -USR2 " .. new)
    assert.equal(0, (cmd:wait(15000)), cmd:output() .. app.p:output())
    assert.equal(new, tonumber(cmd:output():match("new master pid (%d+)")))
    assert.equal(0, (app.p:wait(10000)), app.p:output())
    H.sleep(1000)
    -- one master serves: the new one, with no third master started under it
    local masters = child_masters(new)
    for _, m in ipairs(masters) do
      strays[#strays + 1] = m
    end
    assert.same({}, masters)
    assert.equal(new, (status_pid(app)))
    assert.equal("ok 2\n", (H.curl("http://127.0.0.1:" .. app.port .. "/")))
    ctl(app, "stop")
    assert.truthy(H.wait_for(function() return not H.pid_alive(new) end, 8000))
  end)

  it("hands the metrics listener over too (cluster.setup{ metrics = })", function()
    local mport = H.free_port()
    local app = start(([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ metrics = "127.0.0.1:%d" })
else
  http.create_server(function() return 200, "ok " .. cluster.worker.generation .. "\n" end):listen()
end
]]):format(mport), { "-w", 1 })
    local _, mstatus = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
    assert.equal(200, mstatus)
    local out, code = ctl(app, "upgrade")
    assert.equal(0, code, out .. app.p:output())
    local pid = tonumber(out:match("new master pid (%d+)"))
    strays[#strays + 1] = pid
    assert.equal(0, (app.p:wait(10000)), app.p:output())
    assert.equal("ok 2\n", (H.curl("http://127.0.0.1:" .. app.port .. "/")))
    local body, status = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
    assert.equal(200, status)
    assert.truthy(body:find("luacluster_", 1, true), body)
    -- and once more: the new master hands it on in turn
    out, code = ctl(app, "upgrade")
    assert.equal(0, code, out)
    local pid3 = tonumber(out:match("new master pid (%d+)"))
    strays[#strays + 1] = pid3
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 8000))
    _, status = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
    assert.equal(200, status)
    ctl(app, "stop")
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid3) end, 8000))
  end)
end)
