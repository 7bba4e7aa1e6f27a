-- The outbound request path compiles: http.request with keep-alive and a cosocket's pooled
-- round trip run thousands of times in one worker, and the JIT aborts none of their traces for
-- a loop inside them ("inner loop in root trace": http.request's check of its option names),
-- a closure made in them ("NYI: bytecode 50", UCLO: net.connect's callback form) or varargs
-- ("NYI: bytecode 71"). Such an abort, repeated, leaves the whole request path interpreted.
-- The worker is its own upstream (one worker: the loop never blocks). Pending where the JIT
-- is off or jit.vmdef (the abort messages) is not installed.
local H = require("helper")
local U = require("http_util")

local APP = [[
package.path = package.path .. ";/usr/share/luajit-2.1/?.lua;/usr/share/luajit-2.1.0-beta3/?.lua"
local ngx = require("luacluster.ngx")
local http = require("luacluster.http")
local process = require("luacluster.process")
local PORT = %d
if cluster.is_worker then
  local ok, vmdef = pcall(require, "jit.vmdef")
  local aborts = {}
  -- (not ngx/send_data.lua: a send of a table loops over its parts, as it must)
  local FILES = { "http_client.lua", "net.lua", "outbound.lua", "pool.lua", "ngx/tcp.lua" }
  if ok then
    local util = require("jit.util")
    jit.attach(function(what, _, func, pc, code, info)
      if what ~= "abort" then
        return
      end
      local loc = util.funcinfo(func, pc).loc or "?"
      local msg = vmdef.traceerr[code] or tostring(code)
      if type(info) == "number" or type(info) == "string" then
        msg = msg:format(info)
      end
      if msg:find("inner loop", 1, true) or msg:find("bytecode 50", 1, true) or msg:find("bytecode 71", 1, true) then
        for _, f in ipairs(FILES) do
          if loc:find(f, 1, true) then
            aborts[#aborts + 1] = loc .. ": " .. msg
          end
        end
      end
    end, "trace")
  end
  local text = { ["Content-Type"] = "text/plain" }
  local UP = "http://127.0.0.1:" .. PORT .. "/up"
  http.create_server(function(req)
    local path = req.path
    if path == "/up" then
      return 200, text, "up"
    elseif path == "/proxy" then
      local res, err = http.request(UP, { keepalive = true, timeout = 5000 })
      if not res then
        return 502, text, err
      end
      return res.status, text, res.body
    elseif path == "/cosocket" then
      local s = ngx.socket.tcp()
      s:settimeout(5000)
      assert(s:connect("127.0.0.1", PORT))
      assert(s:send({ "GET /up HTTP/1.1\r\n", "Host: a\r\n", "\r\n" }))
      local line = assert(s:receive())
      repeat
        local h = assert(s:receive())
      until h == ""
      local body = assert(s:receive(2))
      assert(s:setkeepalive(10000, 10))
      return 200, text, line:sub(10, 12) .. " " .. body
    elseif path == "/aborts" then
      return 200, text, #aborts .. "\n" .. table.concat(aborts, "\n")
    end
    return 404, text, "no such path"
  end):listen()
  say("ready", process.pid, jit.status() and "jit" or "nojit", ok and "vmdef" or "novmdef")
end
]]


describe("the outbound request path", function()
  it("is compiled by the JIT: no trace of http.request or a cosocket round trip aborts on a loop, closure or varargs", function()
    local port = H.free_port()
    local _, line = U.jit_app(finally, string.format(APP, port), port, "jit vmdef")
    if not line then
      pending("the JIT is off, or jit.vmdef is not installed")
      return
    end
    local paths = {}
    for i = 1, 50 do
      paths[i] = i % 2 == 0 and "/proxy" or "/cosocket"
    end
    local res = U.jit_aborts(port, paths, 60, function(list)
      assert.equal("200 up", list[1].body)
      assert.equal("up", list[2].body)
    end)
    assert.equal(200, res.status)
    assert.equal("0", res.body:match("^(%d+)"), res.body)
  end)
end)
