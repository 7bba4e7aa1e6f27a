-- Integration specs of luacluster.timer and luacluster.process, in a master running alone
-- (workers = 0) and in workers.
local H = require("helper")

local ALONE = 'if cluster.is_master then cluster.setup({ workers = 0 }) end\n'


describe("timer", function()
  after_each(function()
    H.cleanup()
  end)

  it("runs after once, every until stopped, and sleep inside a callback", function()
    local p = H.start_app(ALONE .. [[
      local now = require("luacluster.core").now
      local after_count, ticks = 0, 0
      local a = timer.after(30, function(t)
        after_count = after_count + 1
        say("after fired", tostring(t ~= nil))
      end)
      local e
      e = timer.every(20, function()
        ticks = ticks + 1
        if ticks == 3 then
          e:stop()
          say("every stopped", tostring(e:active()))
          timer.after(100, function() say("ticks", ticks, "after_count", after_count) end)
        end
      end)
      local stopped = timer.after(10, function() say("stopped timer fired") end)
      stopped:stop()
      timer.after(0, function()
        local s = now()
        timer.sleep(120)
        say("slept", tostring(now() - s >= 110))
        timer.sleep(0)
        say("slept 0")
      end)
    ]], {})
    assert.equal(0, (p:wait(5000)))
    local out = p:output()
    assert.matches("after fired true", out, 1, true)
    assert.matches("every stopped false", out, 1, true)
    assert.matches("ticks 3 after_count 1", out, 1, true)
    assert.matches("slept true", out, 1, true)
    assert.matches("slept 0", out, 1, true)
    assert.not_matches("stopped timer fired", out, 1, true)
  end)

  it("raises a clear error for sleep at a script's top level", function()
    local dir = H.app({ ["app.lua"] = H.prelude .. ALONE .. "timer.sleep(10)\nsay('after sleep')\n" })
    local p = H.start(dir .. "/app.lua", {})
    local code = p:wait(5000)
    assert.not_equal(0, code)
    local err = p:stderr()
    assert.matches("timer.sleep waits, so it can only be called inside a handler or callback", err, 1, true)
    assert.matches("not at a script's top level", err, 1, true)
    assert.matches("app.lua:6:", err, 1, true)
    assert.not_matches("after sleep", p:stdout(), 1, true)
  end)

  it("takes a delay past what a 64-bit count of ms holds as never, not as now", function()
    local p = H.start_app(ALONE .. [[
      local big = { math.huge, 1e20, 2^64 }
      local ts = {}
      for i, ms in ipairs(big) do
        ts[i] = timer.after(ms, function() say("fired", ms) end)
      end
      local e = timer.every(1e30, function() say("every fired") end)
      timer.after(300, function()
        for _, t in ipairs(ts) do t:stop() end
        e:stop()
        say("done")
      end)
    ]], {})
    assert.equal(0, (p:wait(5000)))
    assert.matches("done", p:output(), 1, true)
    assert.not_matches("fired", p:output(), 1, true)
  end)

  it("refuses bad arguments", function()
    local p = H.start_app(ALONE .. [[
      for _, args in ipairs({ { -1, print }, { "x", print }, { 10, "nope" } }) do
        local ok, err = pcall(timer.after, args[1], args[2])
        say("refused", tostring(not ok), err)
      end
    ]], {})
    assert.equal(0, (p:wait(5000)))
    assert.equal(3, p:count("refused true [^\n]*timer.after: ", false))
  end)

  it("runs timer callbacks in workers and logs a failing one without stopping the process", function()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
      else
        timer.after(10, function() error("timer callback failed on purpose") end)
        timer.after(50, function()
          timer.sleep(20)
          cluster.worker:send("worker timer ran")
        end)
      end
    ]], { "-w", 1 })
    assert.equal(0, (p:wait(5000)))
    assert.matches("%[worker 1%] %S+ error: ", p:output()) -- [worker N] <time> level: message
    assert.matches("timer callback failed on purpose", p:output(), 1, true)
    assert.matches("worker timer ran", p:output(), 1, true)
  end)
end)


describe("process", function()
  after_each(function()
    H.cleanup()
  end)

  it("has pid, argv, env and cwd", function()
    local p = H.start_app(ALONE .. [[
      say("pid", process.pid)
      say("argv", process.argv[0]:match("[^/]*$"), process.argv[1], process.argv[2])
      say("env", process.env.LC_SPEC_VAR, type(process.env.PATH))
      say("cwd", process.cwd())
    ]], {}, { args = { "x", "y" }, env = { LC_SPEC_VAR = "value" }, cwd = "/tmp" })
    assert.equal(0, (p:wait(5000)))
    local out = p:output()
    assert.matches("pid " .. p.pid .. "\n", out, 1, true)
    assert.matches("argv app.lua x y", out, 1, true)
    assert.matches("env value string", out, 1, true)
    assert.matches("cwd /tmp\n", out, 1, true)
  end)

  it("exits with process.exit(code), in the master and in a worker", function()
    local p = H.start_app(ALONE .. [[
      timer.after(10, function() process.exit(7) end)
      timer.after(1000, function() say("still running") end)
    ]], {})
    assert.equal(7, (p:wait(5000)))
    assert.not_matches("still running", p:output(), 1, true)

    p = H.start_app([[
      if cluster.is_master then
        cluster.setup({ workers = 1, restart = false })
        cluster.on("exit", function(w, code) say("worker exit", code, w.pid) end)
      else
        say("worker pid", process.pid, tostring(process.pid ~= require("luacluster.core").ppid()))
        timer.after(50, function() process.exit(4) end) -- once ready (before, it is a failed boot)
      end
    ]], {})
    assert.equal(0, (p:wait(5000)))
    local pid = p:output():match("worker pid (%d+) true")
    assert.is_truthy(pid, p:output())
    assert.matches("worker exit 4 " .. pid, p:output(), 1, true)
  end)

  it("calls process.on('signal') listeners", function()
    local p = H.start_app(ALONE .. [[
      process.on("signal", function(name) say("got", name) end)
      process.on("signal", function(name) if name == "SIGUSR2" then process.exit(0) end end)
      timer.after(10000, function() end) -- keeps the master alive
      say("ready")
    ]], {})
    assert.is_truthy(p:wait_output("ready", 5000, true))
    p:kill("SIGUSR1")
    assert.is_truthy(p:wait_output("got SIGUSR1", 2000, true), p:output())
    p:kill("SIGHUP")
    assert.is_truthy(p:wait_output("got SIGHUP", 2000, true), p:output())
    p:kill("SIGUSR2")
    assert.equal(0, (p:wait(2000)))
    assert.matches("got SIGUSR2", p:output(), 1, true)
  end)

  it("keeps the master's graceful stop when a script listens to SIGTERM", function()
    local p = H.start_app([[
      process.on("signal", function(name) say("listener", name) end)
      if cluster.is_master then
        cluster.on("online", function() say("online") end)
      end
    ]], { "-w", 1 })
    assert.is_truthy(p:wait_output("online", 5000, true))
    p:kill("SIGTERM")
    assert.equal(0, (p:wait(5000)))
    assert.matches("listener SIGTERM", p:output(), 1, true)
    assert.matches("stopping gracefully", p:output(), 1, true)
  end)
end)
