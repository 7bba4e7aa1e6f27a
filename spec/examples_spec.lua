-- Runs the apps under examples/ with the real binary and checks what they show.
local H = require("helper")


describe("examples", function()
  after_each(function()
    H.cleanup()
  end)

  it("messaging: workers report counts, the master broadcasts totals and answers a request", function()
    local app = H.root .. "/examples/messaging/app.lua"
    local p = H.start(app, { "-w", 2 }, { args = { 3 }, dir = H.tmpdir() })
    assert.equal(0, (p:wait(10000)), p:output())
    local out = p:output()
    -- worker N does N jobs a round: 3 rounds make 3 + 6
    assert.matches("all 2 workers done: 9 jobs", out, 1, true)
    assert.matches("%[worker 1%] done with 3 jobs; the cluster's total was %d+", out)
    assert.matches("%[worker 2%] done with 6 jobs; the cluster's total was %d+", out)
    assert.matches("%[worker 1%] total so far: %d+ %(worker 2 reported%)", out)
    assert.matches("%[worker 2%] total so far: %d+ %(worker 1 reported%)", out)
    assert.not_matches("error", out, 1, true)
  end)
end)
