-- Integration specs of supervision: crashes and restarts (with backoff), kill and disconnect,
-- graceful and immediate stops, and no worker left behind when the master dies.
local H = require("helper")


-- the pids of the workers an app printed as "pid <id> <pid>"
local function worker_pids(p, n)
  local pids = H.wait_for(function()
    local list = {}
    for id, pid in p:output():gmatch("pid (%d+) (%d+)") do
      list[tonumber(id)] = tonumber(pid)
    end
    local count = 0
    for _ in pairs(list) do count = count + 1 end
    return count >= n and list
  end, 5000)
  assert(pids, "the workers did not start:\n" .. p:output())
  return pids
end


local function all_gone(pids, timeout_ms)
  return H.wait_for(function()
    for _, pid in pairs(pids) do
      if H.pid_alive(pid) then
        return false
      end
    end
    return true
  end, timeout_ms or 2000)
end


-- a worker that prints its pid and tells the master which events it saw
local REPORTING = [[
  if cluster.is_master then
    for _, e in ipairs({ "fork", "online", "disconnect" }) do
      cluster.on(e, function(w) say(e, w.id, w.pid) end)
    end
    cluster.on("exit", function(w, code, signal)
      say("exit", w.id, w.pid, tostring(code), tostring(signal), tostring(w.exited_after_disconnect), w.state)
    end)
  else
    say("pid", cluster.worker.id, process.pid)
  end
]]


describe("supervision", function()
  after_each(function()
    H.cleanup()
  end)

  it("restarts a crashed worker with the same id, after disconnect and exit events", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        local crashed = false
        cluster.on("online", function(w)
          if w.id == 2 and not crashed then crashed = true w:send("crash") end
        end)
        local n = 0
        cluster.on("online", function(w) n = n + 1 if n == 4 then cluster.stop() end end)
      else
        cluster.worker:on("message", function(msg) if msg == "crash" then os.exit(3) end end)
      end
    ]], { "-w", 3 })
    assert.equal(0, (p:wait(10000)))
    local out = p:output()
    local first, second = out:match("fork 2 (%d+).-fork 2 (%d+)")
    assert.is_truthy(first, out)
    assert.not_equal(first, second)
    -- the crash: disconnect, then exit with code 3 and no signal, not asked for
    local d = out:find("disconnect 2 " .. first, 1, true)
    local e = out:find("exit 2 " .. first .. " 3 nil false dead", 1, true)
    local f = out:find("fork 2 " .. second, 1, true)
    assert.is_truthy(d and e and f, out)
    assert.is_true(d < e and e < f)
    assert.matches("worker 2 %(pid " .. first .. "%) exited with code 3", out)
    assert.matches("restarting worker 2 in %d+ ms", out)
    assert.equal(0, p:count("fork 4 "))
  end)

  it("restarts a worker killed by a signal and reports the signal's name", function()
    local p = H.start_app(REPORTING, { "-w", 1 })
    local pids = worker_pids(p, 1)
    assert.is_true(H.sh("kill -9 " .. pids[1]) ~= nil)
    assert.is_truthy(p:wait_output("exit 1 " .. pids[1] .. " nil SIGKILL false dead", 5000, true), p:output())
    assert.is_truthy(p:wait_output("online 1 %d+\n.*online 1 %d+", 5000), p:output())
    assert.equal(0, (p:stop()))
  end)

  it("stops with one line when a worker of the first start cannot boot (a require typo)", function()
    local p = H.start_app([[
      if cluster.is_worker then
        require("no_such_modul")
      end
    ]], { "-w", 2 })
    local code = p:wait(10000)
    assert.equal(1, code, p:output())
    local err = p:stderr()
    assert.matches("luacluster: worker %d failed to boot: [^\n]*app%.lua:%d+: module 'no_such_modul' not found\n", err)
    assert.equal(1, p:count("failed to boot", true), p:output())
    -- not require's list of the paths it tried, nor a traceback, nor a restart
    assert.equal(0, p:count("no file '", true), p:output())
    assert.equal(0, p:count("stack traceback", true), p:output())
    assert.equal(0, p:count("restarting worker", true), p:output())
  end)

  it("stops the same way when a worker's top level waits", function()
    local p = H.start_app([[
      if cluster.is_worker then
        local config = cluster.worker:request("config")
      end
    ]], { "-w", 1 })
    local code = p:wait(10000)
    assert.equal(1, code, p:output())
    assert.matches("luacluster: worker 1 failed to boot: [^\n]*top level", p:stderr())
    assert.equal(1, p:count("failed to boot", true), p:output())
    assert.equal(0, p:count("restarting worker", true), p:output())
  end)

  it("backs off a slot that crashes later and fails at its top level; status shows its row and last error", function()
    local dir = H.tmpdir()
    local marker, ctl = dir .. "/crashed", dir .. "/ctl.sock"
    local p = H.start_app(([[
      if cluster.is_master then
        cluster.on("online", function(w) if w.id == 1 and w.generation == 1 and not w.told then w.told = true w:send("crash") end end)
      else
        local f = io.open(MARKER)
        if f then
          f:close()
          error("cannot reach the database")
        end
        cluster.worker:on("message", function(msg)
          if msg == "crash" then
            timer.after(200, function() io.open(MARKER, "w"):close() os.exit(3) end)
          end
        end)
      end
    ]]):gsub("MARKER", string.format("%q", marker)), { "-w", 2, "--control", ctl })
    assert.is_truthy(p:wait_output("restarting worker 1 in 400 ms", 8000, true), p:output())
    assert.is_true(p:alive(), p:output())
    -- the slot's row: no process, its state, its restarts and why it failed
    local st
    assert.is_truthy(H.wait_for(function()
      st = H.sh(H.bin .. " status --control " .. ctl)
      return st:match("\n1 +%- +1 +backoff ")
    end, 8000), st)
    assert.matches("\n1 +%- +1 +backoff [^\n]* [3-9] +%(restart in %d+ ms%)  last error: [^\n]*app%.lua:%d+: cannot reach the database", st)
    assert.matches("\n2 +%d+ +1 +online", st)
    local js = H.sh(H.bin .. " status --json --control " .. ctl)
    assert.matches('"state":"backoff"', js, 1, true)
    assert.matches('"last_error":"[^"]*cannot reach the database"', js)
    assert.equal(0, (p:stop()))
    local out = p:output()
    -- each crash says why in its one line; the whole error and traceback once
    assert.matches("worker 1 %(pid %d+%) exited with code 1 after %d+ ms: [^\n]*app%.lua:%d+: cannot reach the database", out)
    assert.equal(1, p:count("stack traceback:", true), out)
    local delays = {}
    for ms in out:gmatch("restarting worker 1 in (%d+) ms") do
      delays[#delays + 1] = tonumber(ms)
    end
    assert.same({ 100, 200, 400 }, { delays[1], delays[2], delays[3] })
  end)

  it("does not restart with restart = false", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        cluster.setup({ workers = 2, restart = false })
        cluster.on("exit", function(w) timer.after(300, function() say("left", tostring(next(cluster.workers))) end) end)
      elseif cluster.worker.id == 1 then
        timer.after(200, function() os.exit(5) end) -- once ready: not a failed boot
      end
    ]], {})
    assert.is_truthy(p:wait_output("left 2", 5000, true), p:output())
    assert.equal(1, p:count("fork 1 "))
    assert.is_truthy(p:output():find("exit 1 %d+ 5 nil false dead"))
    assert.equal(0, (p:stop()))
  end)

  it("kill(): exit event with signal SIGTERM, code nil, not restarted", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        cluster.on("online", function(w) assert(w:kill()) end)
        cluster.on("exit", function(w) timer.after(300, function() say("after kill", tostring(next(cluster.workers))) end) end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(5000)))
    local out = p:output()
    assert.is_truthy(out:find("exit 1 %d+ nil SIGTERM true dead"), out)
    assert.matches("after kill nil", out, 1, true)
    assert.equal(1, p:count("fork 1 "))
    assert.not_matches("restarting", out, 1, true)
  end)

  it("kill(signal) sends that signal", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        cluster.on("online", function(w) assert(w:kill("SIGKILL")) end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(5000)))
    assert.is_truthy(p:output():find("exit 1 %d+ nil SIGKILL true dead"), p:output())
    assert.equal(1, p:count("fork 1 "))
  end)

  it("disconnect(): the worker drains, exits 0 and is not restarted", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        cluster.on("online", function(w)
          w:disconnect()
          say("state", w.state, tostring(w.exited_after_disconnect))
        end)
      else
        cluster.worker:on("disconnect", function() say("worker sees disconnect", cluster.worker.state) end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(5000)))
    local out = p:output()
    assert.matches("state draining true", out, 1, true)
    assert.matches("[worker 1] worker sees disconnect draining", out, 1, true)
    assert.is_truthy(out:find("disconnect 1 %d+\n.*exit 1 %d+ 0 nil true dead"), out)
    assert.equal(1, p:count("fork 1 "))
  end)

  it("cluster.worker:disconnect() in a worker: it exits 0, asked for, and is not restarted", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_worker then
        cluster.worker:on("disconnect", function() say("worker disconnecting", cluster.worker.state) end)
        timer.after(20, function() cluster.worker:disconnect() end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(5000)))
    local out = p:output()
    assert.matches("[worker 1] worker disconnecting draining", out, 1, true)
    assert.is_truthy(out:find("disconnect 1 %d+\n.*exit 1 %d+ 0 nil true dead"), out)
    assert.equal(1, p:count("fork 1 "))
  end)

  it("kills a worker that does not drain within drain_timeout", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        cluster.setup({ workers = 1, drain_timeout = 300 })
        cluster.on("online", function(w) w:disconnect() end)
      else
        cluster.worker:on("disconnect", function()
          local t = os.time() while os.time() - t < 5 do end -- stuck
        end)
      end
    ]], {})
    assert.equal(0, (p:wait(5000)))
    local out = p:output()
    assert.matches("did not drain within 300 ms", out, 1, true)
    assert.is_truthy(out:find("exit 1 %d+ nil SIGKILL true dead"), out)
  end)

  for _, sig in ipairs({ "SIGTERM", "SIGINT" }) do
    it("stops gracefully on " .. sig .. " with exit 0", function()
      local p = H.start_app(REPORTING .. [[
        if cluster.is_worker then
          cluster.worker:on("disconnect", function() say("draining", cluster.worker.id) end)
        end
      ]], { "-w", 2 })
      local pids = worker_pids(p, 2)
      assert.is_truthy(p:wait_output("online 2", 5000, true))
      assert.is_truthy(p:wait_output("online 1", 5000, true))
      p:kill(sig)
      assert.equal(0, (p:wait(5000)))
      assert.is_true(all_gone(pids))
      local out = p:output()
      assert.matches(sig .. ": stopping gracefully", out, 1, true)
      assert.matches("[worker 1] draining 1", out, 1, true)
      assert.matches("[worker 2] draining 2", out, 1, true)
      assert.is_truthy(out:find("exit 1 %d+ 0 nil true dead"), out)
      assert.is_truthy(out:find("exit 2 %d+ 0 nil true dead"), out)
      assert.not_matches("restarting", out, 1, true)
    end)
  end

  it("stops gracefully on Ctrl-C (SIGINT to the whole group), even with signal listeners", function()
    local p = H.start_app(REPORTING .. [[
      process.on("signal", function(name) say("listener", name) end)
    ]], { "-w", 2 })
    local pids = worker_pids(p, 2)
    assert.is_truthy(p:wait_output("online 2", 5000, true))
    assert.is_truthy(p:wait_output("online 1", 5000, true))
    assert.is_true(p:kill_group("SIGINT"))
    assert.equal(0, (p:wait(5000)))
    assert.is_true(all_gone(pids))
    local out = p:output()
    assert.is_truthy(out:find("exit 1 %d+ 0 nil true dead"), out)
    assert.is_truthy(out:find("exit 2 %d+ 0 nil true dead"), out)
    assert.not_matches("error", out, 1, true)
  end)

  it("logs no channel error when a crashing worker leaves messages unread", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        cluster.setup({ workers = 1, restart = false })
        cluster.on("online", function(w)
          for i = 1, 2000 do w:send(string.rep("x", 1000)) end
        end)
      else
        cluster.worker:on("message", function() os.exit(9) end)
      end
    ]], {})
    assert.equal(0, (p:wait(5000)))
    assert.is_truthy(p:output():find("exit 1 %d+ 9 nil false dead"), p:output())
    assert.not_matches("error", p:output(), 1, true)
  end)

  it("stops with cluster.stop(code) and exits with that code", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_master then
        local n = 0
        cluster.on("online", function() n = n + 1 if n == 2 then cluster.stop(3) end end)
      end
    ]], { "-w", 2 })
    local pids = worker_pids(p, 2)
    assert.equal(3, (p:wait(5000)))
    assert.is_true(all_gone(pids))
    assert.equal(2, p:count("exit %d %d+ 0 nil true dead"))
  end)

  it("refuses to fork once stopping", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 0 })
        cluster.stop()
        local w, err = cluster.fork()
        say("fork while stopping", tostring(w), tostring(err))
      end
    ]], {})
    assert.equal(0, (p:wait(5000)))
    assert.matches("fork while stopping nil the cluster is stopping", p:output(), 1, true)
  end)

  it("stops at once on a second signal", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_worker then
        cluster.worker:on("disconnect", function()
          say("stuck", cluster.worker.id)
          local t = os.time() while os.time() - t < 10 do end
        end)
      end
    ]], { "-w", 2 })
    local pids = worker_pids(p, 2)
    assert.is_truthy(p:wait_output("online 2", 5000, true))
    assert.is_truthy(p:wait_output("online 1", 5000, true))
    p:kill("SIGTERM")
    assert.is_truthy(p:wait_output("stuck 1", 3000, true))
    assert.is_truthy(p:wait_output("stuck 2", 3000, true))
    assert.is_nil((p:wait(300))) -- still draining
    local t0 = H.now()
    p:kill("SIGTERM")
    local code = p:wait(2000)
    assert.is_truthy(code, "the master did not stop at once")
    assert.not_equal(0, code)
    assert.is_true(H.now() - t0 < 1500)
    assert.is_true(all_gone(pids))
    assert.matches("SIGTERM again: stopping at once", p:output(), 1, true)
  end)

  it("leaves no worker behind when the master is killed with SIGKILL", function()
    local p = H.start_app(REPORTING .. [[
      if cluster.is_worker then
        timer.every(1000, function() end) -- work that would keep an orphan alive
        cluster.worker:on("message", function() end)
      end
    ]], { "-w", 3 })
    local pids = worker_pids(p, 3)
    assert.is_truthy(p:wait_output("online 3", 5000, true))
    p:kill("SIGKILL")
    assert.equal(9, select(2, p:wait(2000)))
    assert.is_true(all_gone(pids, 2000), "worker processes outlived their master")
  end)
end)
