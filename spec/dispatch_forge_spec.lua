-- CONN frames (a dispatched connection, and a worker's acknowledgement of it) are the C
-- runtime's own. Before, a worker's Lua could send one over its channel: the master took it as
-- an acknowledgement, lowered that worker's count of unacknowledged connections for it (any
-- ack, matched or not) and, with a live seq, settled or re-sent a copy the worker never gave
-- back. Now the channel's send refuses the kind.
local H = require("helper")

describe("a worker's Lua sending a CONN frame", function()
  after_each(function()
    H.cleanup()
  end)

  it("is refused by the channel, and the master goes on dispatching", function()
    local port = H.free_port()
    local p = H.start_app([[
local net = require("luacluster.net")
local core = require("luacluster.core")
if cluster.is_worker then
  net.create_server(function(sock) sock:write("hello\n") sock:close() end):listen()
  local handle = require("luacluster.worker.side").channel().handle
  for seq = 1, 200 do
    local ok, err = pcall(handle.send, handle, core.kind.CONN, 1, seq, "n")
    if ok then
      say("forged", seq, err)
      break
    elseif seq == 200 or not tostring(err):find("runtime only") then
      say("refused", err)
      break
    end
  end
end
]], { "-w", 1, "-p", port })
    assert.truthy(H.wait_for(function() return p:count("forged") + p:count("refused") > 0 end, 8000), p:output())
    assert.equal(0, p:count("forged"), p:output())
    assert.truthy(p:stdout():find("refused .*CONN frames are sent by the runtime only"), p:output())
    assert.truthy(H.wait_for(function()
      local s = H.connect(port)
      if not s then return false end
      local line = s:read_until(function(d) return d:find("\n") end, 3000)
      s:close()
      return line == "hello\n"
    end, 8000), p:output())
  end)
end)
