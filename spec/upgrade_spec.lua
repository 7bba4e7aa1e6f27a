-- Integration specs of the binary upgrade (issue 19): `luacluster upgrade` and SIGUSR2 start a
-- new master from the binary, hand it the listening sockets, the control socket, the shared
-- dictionaries and the counters, and drain the old master, under a load whose every response
-- is counted (spec/load.lua, a separate process); and the refusals (a broken binary, an app
-- that does not load, a second upgrade or a reload while one runs) leave the old master serving.
local H = require("helper")
local U = require("upgrade_util")
local ctl, status_pid, get, script = U.ctl, U.status_pid, U.get, U.script
local L = require("load")

local APP = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ shared_dicts = { d = "1m" } })
else
  local shared = require("luacluster.shared")
  http.create_server(function(req, res)
    if req.path == "/set" then
      shared.d:set("k", "before")
    end
    return 200, "ok " .. cluster.worker.generation .. " " .. tostring(shared.d:get("k")) .. "\n"
  end):listen()
end
]]

local function start(options, opts)
  opts = opts or {}
  local port = opts.port or H.free_port()
  local dir = H.tmpdir()
  local app = { port = port, dir = dir, path = dir .. "/app.lua", ctl = dir .. "/ctl.sock" }
  H.write_file(app.path, H.prelude .. (opts.src or APP))
  local argv = { "-p", port, "--control", app.ctl }
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = o
  end
  app.p = H.start(app.path, argv, { env = opts.env })
  assert(H.wait_for(function()
    local _, status = H.curl("http://127.0.0.1:" .. port .. "/")
    return status == 200
  end, 8000, 50), "the app did not start serving:\n" .. app.p:output())
  return app
end


local load = L.background -- (spec/load.lua: a load client process, counting every response)

local function summary(r)
  return string.format("ok %d, fail %d, idle closed %d; errors: %s", r.ok, r.fail, r.idle_closed,
    table.concat(r.errors, "; "))
end

-- keep-alive, new-connection and paused keep-alive loads during fn(); not one request fails
local function under_load(app, ports, fn)
  local port = ports and ports[1] or app.port
  local loads = {
    load(port, { shape = "keepalive", ports = ports }),
    load(port, { shape = "close", ports = ports }),
    load(port, { shape = "keepalive", think = 30, ports = ports }),
  }
  H.sleep(300)
  fn()
  H.sleep(500)
  for i, h in ipairs(loads) do
    local r = h.finish()
    assert(r.fail == 0 and r.ok > 0, "load " .. i .. ": " .. summary(r) .. "\n" .. app.p:output())
  end
end


describe("luacluster upgrade", function()
  after_each(H.cleanup)

  for _, mode in ipairs({ "dispatch", "shared", "reuseport", "ports" }) do
    it("hands over every socket in " .. mode .. " mode under load, with no failed request", function()
      local app = start({ "-w", 2, "-m", mode }, { port = mode == "ports" and H.free_port_range(2) or nil })
      local ports = mode == "ports" and { app.port, app.port + 1 } or nil
      assert.truthy(get(app, "/set"))
      local old = app.p.pid
      local out, code
      under_load(app, ports, function()
        out, code = ctl(app, "upgrade")
      end)
      assert.equal(0, code, out .. app.p:output())
      local pid = tonumber(out:match("new master pid (%d+) serves"))
      assert.truthy(pid, out)
      assert.is_true(H.pid_alive(pid))
      assert.equal(0, (app.p:wait(10000)), app.p:output()) -- the old master drained and exited 0
      assert.is_false(H.pid_alive(old))
      local spid, st = status_pid(app)
      assert.equal(pid, spid, st)
      assert.truthy(st:find("generation 2", 1, true), st)
      -- the shared dictionary's data crossed; the new generation answers
      local body = get(app)
      assert.equal("ok 2 before\n", body)
      if ports then
        assert.equal("ok 2 before\n", H.curl("http://127.0.0.1:" .. ports[2] .. "/"))
      end
      local sout, scode = ctl(app, "stop")
      assert.equal(0, scode, sout)
      assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 8000))
    end)
  end

  it("upgrades on SIGUSR2, and twice in a row", function()
    local app = start({ "-w", 1 })
    app.p:kill("SIGUSR2")
    assert.equal(0, (app.p:wait(10000)), app.p:output())
    local pid = assert(status_pid(app))
    assert.are_not.equal(app.p.pid, pid)
    local out, code = ctl(app, "upgrade")
    assert.equal(0, code, out)
    local pid3 = tonumber(out:match("new master pid (%d+)"))
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 8000))
    assert.equal(pid3, (status_pid(app)))
    assert.truthy(get(app):find("^ok 3"))
    ctl(app, "stop")
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid3) end, 8000))
  end)

  it("refuses a broken binary: the old master serves on and the command fails", function()
    local app = start({ "-w", 2 })
    local out, code = ctl(app, "upgrade", "--binary " .. script("exit 1"))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("upgrade failed: the new master %(pid %d+%) exited with code 1 before it served"), out)
    assert.is_true(app.p:alive())
    assert.equal(app.p.pid, (status_pid(app)))
    assert.truthy(get(app):find("^ok 1"))
    -- and a binary that is not there
    out, code = ctl(app, "upgrade", "--binary /nonexistent/luacluster")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("no such file", 1, true), out)
    assert.truthy(get(app):find("^ok 1"))
  end)

  it("serves again, sockets and control socket, when the new master dies after the old one let go", function()
    -- LUACLUSTER_SPEC_UPGRADE_DIE: the new master exits 3 on "released", before it accepts
    local app = start({ "-w", 2 }, { env = { LUACLUSTER_SPEC_UPGRADE_DIE = "1" } })
    local out, code
    under_load(app, nil, function()
      out, code = ctl(app, "upgrade")
    end)
    assert.are_not.equal(0, code)
    assert.truthy(out:find("exited with code 3 before it served", 1, true), out)
    assert.truthy(H.wait_for(function() return status_pid(app) == app.p.pid end, 5000), app.p:output())
    assert.truthy(get(app):find("^ok 1"))
    assert.is_true(app.p:alive())
  end)

  it("refuses a new master whose app does not load, with the reason", function()
    local app = start({ "-w", 2 })
    H.write_file(app.path, H.prelude .. "if cluster.is_master then error('broken on purpose') end\n")
    local out, code = ctl(app, "upgrade")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("broken on purpose", 1, true), out)
    H.write_file(app.path, H.prelude .. "local x = \n")
    out, code = ctl(app, "upgrade")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("unexpected symbol", 1, true), out)
    assert.is_true(app.p:alive())
    assert.equal(app.p.pid, (status_pid(app)))
    assert.truthy(get(app):find("^ok 1"))
  end)

  it("refuses a second upgrade and a reload while one runs; status answers throughout", function()
    local app = start({ "-w", 2 })
    local slow = script("sleep 1.5\nexec " .. H.bin .. " \"$@\"")
    local first = H.spawn({ H.bin, "upgrade", "--control", app.ctl, "--binary", slow })
    H.sleep(300)
    local out, code = ctl(app, "upgrade")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("an upgrade is already in progress", 1, true), out)
    out, code = ctl(app, "reload")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("an upgrade of the binary is in progress", 1, true), out)
    assert.equal(app.p.pid, (status_pid(app))) -- the old master answers during the upgrade
    assert.equal(0, (first:wait(15000)), first:output())
    local pid = tonumber(first:output():match("new master pid (%d+)"))
    assert.equal(pid, (status_pid(app)))
    ctl(app, "stop")
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 8000))
  end)

  it("names the new master to systemd (MAINPID=) before the old one exits, and the old one sends no STOPPING=1", function()
    local addr = "@lcspec-upgrade-notify-" .. H.free_port()
    local sock = H.notify_socket(addr)
    local app = start({ "-w", 1 }, { env = { NOTIFY_SOCKET = addr } })
    local ready, seen = sock:wait_for("READY=1", 8000)
    assert.truthy(ready, table.concat(seen, "|"))
    local out, code = ctl(app, "upgrade")
    assert.equal(0, code, out)
    local pid = tonumber(out:match("new master pid (%d+)"))
    local main, seen1 = sock:wait_for("MAINPID=" .. pid .. "\nSTATUS=upgraded", 5000) -- from the old master
    assert.truthy(main, table.concat(seen1, "|"))
    assert.equal(0, (app.p:wait(10000)), app.p:output())
    assert.is_true(H.pid_alive(pid))
    local _, seen2 = sock:wait_for("(none expected)", 300)
    for _, d in ipairs(seen1) do
      assert.falsy(d:find("STOPPING=1", 1, true), d)
    end
    for _, d in ipairs(seen2) do
      assert.falsy(d:find("STOPPING=1", 1, true), d)
    end
    -- a stop of the new master is the unit's stop
    ctl(app, "stop")
    local stopping, all = sock:wait_for("STOPPING=1", 5000)
    assert.truthy(stopping, table.concat(all, "|"))
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 8000))
    sock:close()
  end)

  it("stops a new master whose workers are not ready within reload_timeout", function()
    local src = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ reload_timeout = 1000, ready = os.getenv("NEVER_READY") and "manual" or "auto" })
else
  http.create_server(function() return 200, "ok\n" end):listen()
end
]]
    local app = start({ "-w", 1 }, { src = src })
    local slow = script("NEVER_READY=1 exec " .. H.bin .. " \"$@\"")
    local out, code = ctl(app, "upgrade", "--binary " .. slow)
    assert.are_not.equal(0, code)
    assert.truthy(out:find("not ready within 1000 ms", 1, true), out)
    assert.equal(app.p.pid, (status_pid(app)))
    assert.equal("ok\n", get(app))
    -- the new master is gone (stopped), and a next upgrade is allowed
    assert.truthy(H.wait_for(function()
      local o = ctl(app, "upgrade")
      return o:find("new master pid", 1, true)
    end, 10000, 300))
  end)
end)
