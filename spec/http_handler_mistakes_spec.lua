-- A handler's mistakes in what it returns are logged with the handler's location: a value
-- that is not a status (a 500), and a status returned after res:write had already sent the
-- head (the status cannot be sent any more; saying nothing hid it). Found by a newcomer's
-- trial: both were logged without a location, or not at all.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/string" then
      return "ok"
    elseif req.path == "/mixed" then
      res:write("a")
      return 201, "b"
    end
    return 200, "fine\n"
  end):listen()
end
]]

describe("a handler's returned response", function()
  local p, port
  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    assert.truthy(H.wait_for(function() return H.curl("http://127.0.0.1:" .. port .. "/") == "fine\n" end, 8000),
      p:output())
  end)
  lazy_teardown(function()
    H.cleanup()
  end)

  it("that is not a status is a 500, logged with the handler's file and line", function()
    local out = H.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" .. port .. "/string")
    assert.equal("500", out)
    assert.truthy(p:wait_output("request handler failed: [^\n]*app%.lua:%d+: returned string where a status number"
      .. " was expected", 5000), p:output())
  end)

  it("returned after res:write sent the head is logged with the handler's location, and the body still goes out",
    function()
      local out = H.sh("curl -s -w ' %{http_code}' http://127.0.0.1:" .. port .. "/mixed")
      assert.equal("ab 200", out)
      assert.truthy(p:wait_output("request handler [^\n]*app%.lua:%d+: returned status 201 after res:write had sent"
        .. " status 200; the returned status is ignored", 5000), p:output())
    end)
end)
