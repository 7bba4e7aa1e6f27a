-- The one loader of schedulers (lua/luacluster/sched/load.lua), which cluster.setup{scheduler=}
-- (master/listen.lua) and pool.map's opts.scheduler (pool.lua) both use, and the defaults the
-- command line and cluster.setup share (lib/defaults.lua).
local sched = require("luacluster.sched.load")
local defaults = require("luacluster.lib.defaults")


describe("sched.load", function()
  it("takes a function as it is", function()
    local fn = function(workers) return workers[1] end
    assert.equal(fn, sched.load(fn))
  end)

  it("loads a built-in scheduler by name", function()
    local mod = assert(sched.load("ip_hash"))
    assert.is_true(mod.wants_address)
    assert.is_function(mod.new)
    local pick = mod.new()
    local workers = { { id = 1 }, { id = 2 }, { id = 3 } }
    assert.equal(pick(workers, { remote_address = "10.0.0.7" }), pick(workers, { remote_address = "10.0.0.7" }))
  end)

  it("refuses what is not a name or a function, and says so", function()
    assert.same({ nil, "scheduler must be a built-in name or a function" }, { sched.load(42) })
    assert.same({ nil, "scheduler must be a built-in name or a function" }, { sched.load("../x") })
  end)

  it("names a scheduler that does not exist", function()
    assert.same({ nil, "unknown scheduler 'no_such_policy'" }, { sched.load("no_such_policy") })
  end)
end)


describe("defaults", function()
  it("knows the four modes", function()
    for _, m in ipairs({ "dispatch", "shared", "reuseport", "ports" }) do
      assert.is_true(defaults.is_mode(m))
    end
    assert.is_false(defaults.is_mode("fork"))
    assert.equal("dispatch, shared, reuseport or ports", defaults.MODE_NAMES)
  end)

  it("counts workers as --workers says, else one per CPU", function()
    assert.equal(3, defaults.workers({ workers = 3 }))
    assert.equal(require("luacluster.core").cpu_count(), defaults.workers({}))
  end)
end)
