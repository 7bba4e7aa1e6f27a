-- A second master for the same app (same control socket, even on another port) is refused
-- before its top level runs and before any worker starts (#13 §7), with a way out.
local H = require("helper")

describe("a second master for the same control socket", function()
  after_each(function()
    H.cleanup()
  end)

  it("exits 1 before its top level and its workers, and says how to run a second copy", function()
    local ctl = H.tmpdir() .. "/c.sock"
    local src = 'say("top level ran", cluster.is_master and "master" or "worker")\n'
      .. 'if cluster.is_master then cluster.setup({ workers = 1 }) end\n'
    local p1, dir = H.start_app(src, { "--control", ctl, "-p", H.free_port() })
    assert.truthy(p1:wait_output("started, generation 1", 10000, true), p1:output())
    local p2 = H.start(dir .. "/app.lua", { "--control", ctl, "-p", H.free_port() }, { dir = H.tmpdir() })
    assert.equal(1, (p2:wait(10000)))
    assert.equal("", p2:stdout()) -- before: "top level ran master", then the worker's line
    assert.equal("luacluster: another luacluster master is running for this app (control socket " .. ctl
      .. "); stop it first, or give this one its own --control PATH\n", p2:stderr())
    -- the first one still answers
    local out, rc = H.sh(H.bin .. " status --control " .. ctl)
    assert.equal(0, rc, out)
    assert.matches("master pid " .. p1.pid, out, 1, true)
    assert.equal(0, (p1:stop(5000)))
  end)

  it("takes over a socket file left by a master that was killed, and then runs the app", function()
    local ctl = H.tmpdir() .. "/c.sock"
    local src = 'say("top level ran", cluster.is_master and "master" or "worker")\n'
      .. 'if cluster.is_master then cluster.setup({ workers = 1 }) end\n'
    local p1, dir = H.start_app(src, { "--control", ctl, "-p", H.free_port() })
    assert.truthy(p1:wait_output("started, generation 1", 10000, true), p1:output())
    p1:kill_group("SIGKILL")
    p1:wait(3000)
    local p2 = H.start(dir .. "/app.lua", { "--control", ctl, "-p", H.free_port() }, { dir = H.tmpdir() })
    assert.truthy(p2:wait_output("top level ran worker", 10000, true), p2:output())
    local out, rc = H.sh(H.bin .. " status --control " .. ctl)
    assert.equal(0, rc, out)
    assert.equal(0, (p2:stop(5000)))
  end)
end)
