-- Dispatch mode (the master accepts and sends each connection to a worker) loses no connection
-- when a worker leaves under load: one that drains by itself (cluster.worker:disconnect(),
-- server:close()) still takes what the master sent before it knew, and the connections in a
-- SIGKILLed worker's channel, never taken by it, go to another worker.
local H = require("helper")
local L = require("load")

-- a load of new connections (one request each) until finish() -> result (spec/load.lua)
local function load(port, conns)
  return L.background(port, { shape = "close", conns = conns })
end

local function summary(r)
  return string.format("ok %d, fail %d; errors: %s", r.ok, r.fail, table.concat(r.errors, "; "))
end

-- Workers answer "w ID". /leave?how answers, then blocks the worker for 300 ms (the master
-- meanwhile sends it its share of new connections, which wait in its channel), then leaves:
-- how = disconnect (cluster.worker:disconnect()), close (server:close()) or freeze (prints
-- the connections it holds, then stops itself with SIGSTOP for the spec to SIGKILL).
local APP = [[
local http = require("luacluster.http")
local ffi = require("ffi")
pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")
local core = require("luacluster.core")
if cluster.is_master then
  cluster.setup({ workers = 3 })
else
  local server
  server = http.create_server(function(req)
    local how = req.path:match("^/leave/(%a+)")
    if how then
      timer.after(20, function()
        local t0 = os.clock()
        while os.clock() - t0 < 0.3 do end
        if how == "disconnect" then
          cluster.worker:disconnect()
        elseif how == "close" then
          server:close()
        else
          -- every connection it holds (this one's too while its client has not closed it:
          -- it was answered, so the bound is at most one too loose, never too tight)
          say("frozen", core.pid(), "holding", server._srv:stats().connections)
          ffi.C.kill(ffi.C.getpid(), 19)
        end
      end)
      return 200, "leaving " .. cluster.worker.id .. "\n"
    end
    return 200, "w " .. cluster.worker.id .. "\n"
  end)
  server:listen()
end
]]


describe("dispatch", function()
  after_each(function()
    H.cleanup()
  end)

  local function start()
    local port = H.free_port()
    local p = H.start_app(APP, { "-p", port, "-m", "dispatch" })
    assert.truthy(H.wait_for(function()
      local _, status = H.curl("http://127.0.0.1:" .. port .. "/")
      return status == 200
    end, 8000, 50), p:output())
    H.sleep(300) -- every worker ready
    return p, port
  end

  for _, how in ipairs({ "disconnect", "close" }) do
    it("loses no connection while a worker leaves by itself under load (" .. how .. ")", function()
      local p, port = start()
      local h = load(port, 12)
      H.sleep(300)
      for _ = 1, 2 do
        local body, status = H.curl("http://127.0.0.1:" .. port .. "/leave/" .. how)
        assert.equal(200, status, body)
        H.sleep(800)
      end
      local r = h.finish()
      assert(r.fail == 0 and r.ok > 50, summary(r) .. "\n" .. p:output())
      assert.truthy(p:alive(), p:output())
      -- the last worker still serves
      local _, status = H.curl("http://127.0.0.1:" .. port .. "/")
      assert.equal(200, status)
    end)
  end

  it("gives the connections in a SIGKILLed worker's channel to another worker", function()
    local p, port = start()
    local h = load(port, 12)
    H.sleep(300)
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/leave/freeze")
    assert.equal(200, status, body)
    assert.truthy(p:wait_output("frozen %d+ holding %-?%d+", 5000), p:output())
    local pid, holding = p:output():match("frozen (%d+) holding (%-?%d+)")
    H.sleep(700) -- its share of new connections waits in its channel
    H.sh("kill -9 " .. pid)
    H.sleep(700)
    local r = h.finish()
    -- only what the killed worker held when it stopped may fail
    assert(r.ok > 50 and r.fail <= tonumber(holding), "holding " .. holding .. ": " .. summary(r) .. "\n" .. p:output())
    assert.truthy(p:alive(), p:output())
  end)
end)
