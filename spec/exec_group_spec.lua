-- exec's process group after a kill (#13 §7): a command that ignores kill_signal (`trap '' TERM`)
-- gets SIGKILL once kill_grace has passed, and a stop ends such a group at once instead of
-- waiting its own grace for it.
local H = require("helper")

local PRELUDE = 'local cp = require("luacluster.child_process")\n'

-- the shell and its sleep both ignore SIGTERM (an ignored signal stays ignored across exec)
local TRAP = "trap '' TERM; echo $$ > %s/sh.pid; sleep 306 & echo $! > %s/bg.pid; echo ignoring; sleep 306"


local function pids(dir)
  local list = {}
  for _, name in ipairs({ "sh.pid", "bg.pid" }) do
    local pid = tonumber(H.read_file(dir .. "/" .. name):match("%d+") or "")
    assert(pid, "no " .. name)
    list[#list + 1] = pid
  end
  return list
end


local function all_gone(list, timeout_ms)
  return H.wait_for(function()
    for _, pid in ipairs(list) do
      if H.pid_alive(pid) then
        return false
      end
    end
    return true
  end, timeout_ms, 50)
end


describe("exec's process group after a timeout", function()
  after_each(function()
    H.cleanup()
  end)

  it("gets SIGKILL after kill_grace (default 2000 ms) when it ignores kill_signal; the call returns at once", function()
    local dir = H.tmpdir()
    local p = H.start_app(PRELUDE .. ([[
      cluster.setup({ workers = 0 })
      local core = require("luacluster.core")
      timer.after(0, function()
        local t0 = core.now()
        local none, err, so = cp.exec(%q, { timeout = 300 })
        say("exec", none, err.killed, err.signal, err.reason, (so:gsub("\n", "|")), core.now() - t0 < 1500)
      end)
      timer.every(1000, function() end) -- stay up: the grace runs in this process
    ]]):format(TRAP:format(dir, dir)))
    assert.equal("nil true SIGTERM timeout ignoring| true", p:wait_output("exec ([^\n]*)\n", 10000))
    local t_exec = H.now()
    local list = pids(dir)
    H.sleep(500)
    for _, pid in ipairs(list) do
      assert.truthy(H.pid_alive(pid), "killed before the grace: SIGTERM was ignored")
    end
    assert.truthy(all_gone(list, 2000 + 4000), "the group outlived kill_grace")
    assert.truthy(H.now() - t_exec >= 1000)
    assert.equal(0, (p:stop(5000)))
  end)

  it("takes kill_grace as an option (0: SIGKILL on the next turn) and refuses a bad one", function()
    local dir = H.tmpdir()
    local p = H.start_app(PRELUDE .. ([[
      cluster.setup({ workers = 0 })
      say("bad", pcall(cp.exec, "true", { kill_grace = -1 }, function() end))
      timer.after(0, function()
        local _, err = cp.exec(%q, { timeout = 200, kill_grace = 0 })
        say("exec", err.reason)
      end)
      timer.every(1000, function() end)
    ]]):format(TRAP:format(dir, dir)))
    local bad = p:wait_output("bad ([^\n]*)\n", 10000)
    assert.truthy(bad and bad:find("^false .*kill_grace must be a number of milliseconds >= 0"), bad)
    assert.equal("timeout", p:wait_output("exec ([^\n]*)\n", 10000))
    assert.truthy(all_gone(pids(dir), 1500), "kill_grace = 0 left the group alive")
    assert.equal(0, (p:stop(5000)))
  end)

  it("is ended at once by a worker's stop: no wait for a group that already had its kill_signal", function()
    local dir = H.tmpdir()
    local p = H.start_app(PRELUDE .. ([[
      if cluster.is_master then
        cluster.setup({ workers = 1 })
        cluster.on("message", function(_, msg) say(msg) end)
      else
        timer.after(0, function()
          local _, err = cp.exec(%q, { timeout = 200 })
          cluster.worker:send("exec " .. tostring(err.reason))
        end)
      end
    ]]):format(TRAP:format(dir, dir)), { "-p", H.free_port() })
    assert.equal("timeout", p:wait_output("exec ([^\n]*)\n", 10000))
    local list = pids(dir)
    local t0 = H.now()
    p:kill("SIGTERM")
    assert.equal(0, (p:wait(10000)))
    -- before: the stop sent SIGTERM again and waited its 2 s grace for SIGKILL
    assert.truthy(H.now() - t0 < 1800, "the stop took " .. (H.now() - t0) .. " ms")
    assert.truthy(all_gone(list, 3000), "the exec'd group outlived the stop")
  end)
end)
