-- The request path compiles: a handler returns into Lua frames (lib/coro.lua's call, http.lua's
-- run), not into a pcall, whose frame ended every trace ("NYI: return to lower frame") so that
-- the handler and the response ran interpreted. The worker counts the JIT's aborted traces in
-- the library's and the app's code while it answers a few thousand requests (pending where the
-- JIT is off).
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
local process = require("luacluster.process")
if cluster.is_worker then
  local aborts = {}
  local util = require("jit.util")
  jit.attach(function(what, _, func, pc, code, info)
    if what == "abort" then
      local loc = util.funcinfo(func, pc).loc or "?"
      if loc:find("http.lua", 1, true) or loc:find("coro.lua", 1, true) or loc:find("app.lua", 1, true) then
        aborts[#aborts + 1] = loc .. " " .. tostring(code) .. " " .. tostring(info)
      end
    end
  end, "trace")
  local text = { ["Content-Type"] = "text/plain" }
  http.create_server(function(req)
    if req.path == "/aborts" then
      return 200, #aborts .. "\n" .. table.concat(aborts, "\n")
    end
    if req.path == "/status" then
      return 200, "hello"
    end
    return 200, text, "Hello, World!"
  end):listen()
  say("ready", process.pid, jit.status() and "jit" or "nojit")
end
]]


describe("the HTTP request path", function()
  it("is compiled by the JIT: no trace of a handler or its response is aborted", function()
    local port = H.free_port()
    local _, line = U.jit_app(finally, APP, port)
    if not line then pending("the JIT is off") return end
    local paths = {}
    for i = 1, 100 do
      paths[i] = i % 2 == 0 and "/status" or "/"
    end
    local res = U.jit_aborts(port, paths, 30, function(list)
      assert.equal("Hello, World!", list[1].body)
      assert.equal("hello", list[2].body)
    end)
    assert.equal(200, res.status)
    assert.equal("0", res.body:match("^(%d+)"), res.body)
  end)
end)
