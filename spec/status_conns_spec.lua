-- `luacluster status` counts a worker's open net server connections in its conns column, as it
-- does HTTP ones (#13 §7: a chat worker holding a client showed conns 0).
local H = require("helper")

local function conns_of(out)
  return out:match("\n1 +%d+ +%d+ +%S+ +%S+ +%d+ +(%d+) ")
end

describe("luacluster status's conns", function()
  after_each(function()
    H.cleanup()
  end)

  it("counts a worker's open net connections, and drops them when they close", function()
    local port = H.free_port()
    local ctl = H.tmpdir() .. "/c.sock"
    local p = H.start_app([[
      local net = require("luacluster.net")
      if cluster.is_master then
        cluster.setup({ workers = 1 })
      else
        net.create_server(function(sock)
          sock:write("hello\n")
          sock:on("data", function() end)
        end):listen()
      end
    ]], { "-p", port, "--control", ctl })
    local function status()
      return (H.sh(H.bin .. " status --control " .. ctl))
    end
    assert.truthy(H.wait_for(function() return conns_of(status()) end, 10000), p:output())
    local a = assert(H.connect(port, 5000))
    local b = assert(H.connect(port, 5000))
    local out
    assert.truthy(H.wait_for(function()
      out = status()
      return conns_of(out) == "2"
    end, 5000), out)
    a:close()
    b:close()
    assert.truthy(H.wait_for(function()
      out = status()
      return conns_of(out) == "0"
    end, 5000), out)
    assert.equal(0, (p:stop(5000)))
  end)
end)
