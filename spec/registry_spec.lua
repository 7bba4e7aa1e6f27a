-- The extension points of the master and of a worker (lua/luacluster/lib/registry.lua,
-- master/plugins.lua, worker/plugins.lua): a control op name is taken once, a second
-- registration raises and names both places, every registration returns its remover, and
-- hooks run in the order they were added, which the manifests list.
local registry = require("luacluster.lib.registry")


describe("registry", function()
  it("refuses a second handler for a name, naming both registrations", function()
    local r = registry.new("master control op", {})
    r:op("listen", function() end)
    local ok, err = pcall(function() r:op("listen", function() end) end)
    assert.is_false(ok)
    assert.matches("master control op 'listen' is registered twice: at [^\n]*registry_spec%.lua:11 and at [^\n]*registry_spec%.lua:12", err)
  end)

  it("removes an op with the function registering returned, and the name can be taken again", function()
    local r = registry.new("op", {})
    local a = function() return "a" end
    local remove = r:op("stats", a)
    assert.equal(a, r:handler("stats"))
    remove()
    assert.is_nil(r:handler("stats"))
    local b = function() return "b" end
    r:op("stats", b)
    remove() -- a stale remover does not remove the new handler
    assert.equal(b, r:handler("stats"))
  end)

  it("runs hooks in the order they were added, and a remover takes one out", function()
    local r = registry.new("hooks", { "gone" })
    local seen = {}
    r:hook("gone", function(x) seen[#seen + 1] = "first " .. x end)
    local remove = r:hook("gone", function(x) seen[#seen + 1] = "second " .. x end)
    r:hook("gone", function(x) seen[#seen + 1] = "third " .. x end)
    r:run("gone", 1)
    remove()
    r:run("gone", 2)
    assert.same({ "first 1", "second 1", "third 1", "first 2", "third 2" }, seen)
  end)

  it("runs every hook of a run even if one removes another meanwhile", function()
    local r = registry.new("hooks", { "ready" })
    local seen, remove_b = {}, nil
    r:hook("ready", function() seen[#seen + 1] = "a"; remove_b() end)
    remove_b = r:hook("ready", function() seen[#seen + 1] = "b" end)
    r:run("ready")
    r:run("ready")
    assert.same({ "a", "b", "a" }, seen)
  end)

  it("refuses a hook list it does not have", function()
    local r = registry.new("master", { "fork" })
    assert.has_error(function() r:hook("forked", function() end) end, "master: no hook list 'forked'")
  end)

  it("gives the first answer of a check list", function()
    local r = registry.new("master", { "setup_check" })
    r:hook("setup_check", function() return nil end)
    r:hook("setup_check", function(o) return o.x and "x is refused" end)
    r:hook("setup_check", function() return "never asked" end)
    assert.equal("x is refused", r:first("setup_check", { x = 1 }))
  end)
end)


describe("the master's plugins", function()
  local master = require("luacluster.master.core")

  it("refuses a control op that a plugin registered already", function()
    require("luacluster.master.plugins").attach(master)
    local ok, err = pcall(master.register_op, "listen", function() end)
    assert.is_false(ok)
    assert.matches("master 'listen' is registered twice: at [^\n]*master/listen%.lua:%d+ and at ", err)
  end)

  it("are attached in the manifest's order: hooks of one list run in that order", function()
    local text = master.describe_plugs()
    local gone = text:match("hooks gone: ([^\n]*)")
    local order = {}
    for file in gone:gmatch("luacluster/([%w_/]+)%.lua:%d+") do
      order[#order + 1] = file
    end
    assert.same({ "master/listen", "worker/peers", "master/tls_tickets", "master/limits", "pool", "master/jobs" }, order)
    assert.matches("op stats_result: [^\n]*master/stats%.lua", text)
    assert.matches("hooks setup_check: [^\n]*master/limits%.lua:%d+, [^\n]*master/metrics%.lua", text)
  end)

  it("every op a worker's side has is registered once by the worker manifest", function()
    local side = require("luacluster.worker.side")
    require("luacluster.worker.plugins").attach(side)
    local ok, err = pcall(side.register_op, "task", function() end)
    assert.is_false(ok)
    assert.matches("worker 'task' is registered twice: at [^\n]*worker/plugins%.lua:%d+", err)
    ok, err = pcall(side.register_op, "tls_keys", function() end)
    assert.is_false(ok)
    assert.matches("worker 'tls_keys' is registered twice: at [^\n]*worker/plugins%.lua:%d+", err)
  end)
end)


-- lib/crossing.lua: the one registry of what crosses a binary upgrade (master/upgrade.lua
-- registers the master's own pieces; another plugs in with one line)
describe("crossing", function()
  local crossing = require("luacluster.lib.crossing")

  it("exports every piece with its handles and imports them in order; refuses a name twice", function()
    local got = {}
    local remove = crossing.register("spec_piece", function() return { n = 7 }, { fd = 9 } end,
      function(v, h) got[#got + 1] = { v, h } end)
    local ok, err = pcall(crossing.register, "spec_piece", function() end, function() end)
    assert.is_false(ok)
    assert.matches("upgrade state 'spec_piece' is registered twice: at [^\n]*registry_spec%.lua:%d+ and at", err)
    local values, handles = crossing.export_all()
    assert.same({ n = 7 }, values.spec_piece)
    assert.same({ fd = 9 }, handles.spec_piece)
    assert.is_true(crossing.import_all(values, handles))
    assert.same({ { { n = 7 }, { fd = 9 } } }, got)
    remove()
    assert.is_nil(crossing.export_all().spec_piece)
  end)

  it("refuses state that cannot travel as a message, and an import that raises, naming the piece", function()
    local remove = crossing.register("spec_bad", function() return { f = print } end, function() error("no") end)
    local values, err = crossing.export_all()
    assert.is_nil(values)
    assert.matches("upgrade state 'spec_bad' cannot cross", err)
    local ok, ierr = crossing.import_all({ spec_bad = 1 })
    assert.is_nil(ok)
    assert.matches("upgrade state 'spec_bad': import failed: .*no", ierr)
    remove()
  end)
end)
