local H = require("helper")

describe("spec helper", function()
  it("finds the built binary", function()
    local out, rc = H.sh(H.bin .. " --version")
    assert.equal(0, rc)
    assert.matches("^luacluster %d+%.%d+%.%d+", out)
  end)
end)
