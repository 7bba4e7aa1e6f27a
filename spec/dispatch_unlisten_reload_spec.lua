-- A reload's new worker that closes a server before it is ready: at the switch the master made
-- it ready again on that address (the adopt hook walked every listener it had ever asked for),
-- so each connection there went to a worker with no server for it, came back "not taken", and
-- went again: the client hung (forever, before the queue deadline counted from the accept).
-- Now its unlisten drops the address from what it serves, and the master closes that socket at
-- the switch, as one no new worker asked for: a client is refused.
local H = require("helper")

local function ctl(dir, cmd)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. dir .. "/ctl.sock")
end

local GEN1 = H.prelude .. [[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 1 })
else
  net.create_server(function(sock) sock:write("hello g1\n") sock:close() end):listen()
end
]]

-- listens on A (-p) and B, closes B after 300 ms, then says it is ready
local function gen2(port_b)
  return H.prelude .. ([[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 1, ready = "manual" })
else
  local function serve(sock) sock:write("hello g2\n") sock:close() end
  net.create_server(serve):listen()
  local b = net.create_server(serve)
  b:listen(%d)
  timer.after(300, function()
    b:close()
    timer.after(300, function()
      say("g2 ready")
      cluster.worker:ready()
    end)
  end)
end
]]):format(port_b)
end

local function greeting(port)
  local s = H.connect(port)
  if not s then return nil end
  local line = s:read_until(function(d) return d:find("\n") end, 3000)
  s:close()
  return line
end

describe("a reload's new worker that closed a server before it was ready", function()
  after_each(function()
    H.cleanup()
  end)

  it("is not made ready on it at the switch: a client there is refused, not left hanging", function()
    local ports = H.free_ports(2)
    local port_a, port_b = ports[1], ports[2]
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", GEN1)
    local p = H.start(dir .. "/app.lua", { "-p", port_a, "--control", dir .. "/ctl.sock" })
    assert.truthy(H.wait_for(function() return (greeting(port_a) or ""):find("hello g1") ~= nil end, 8000, 50),
      p:output())

    H.write_file(dir .. "/app.lua.new", gen2(port_b))
    os.rename(dir .. "/app.lua.new", dir .. "/app.lua")
    local out, rc = ctl(dir, "reload")
    assert.equal(0, rc, out .. p:output())
    assert.truthy(p:wait_output("g2 ready", 5000, true), p:output())
    assert.truthy(H.wait_for(function() return (greeting(port_a) or ""):find("hello g2") ~= nil end, 8000, 50),
      p:output())

    -- B: refused, or closed at once; not a connection bouncing off the new worker
    local t0 = H.now()
    local s = H.connect(port_b)
    local data, how = "", "refused"
    if s then
      data, how = s:read_all(8000)
      s:close()
    end
    local waited = H.now() - t0
    assert.equal("", data)
    assert.is_true(waited < 3000, "waited " .. waited .. " ms (" .. how .. ")\n" .. p:output())
    H.sleep(1500) -- a worker's "not taken" burst ends with its log line a second later
    assert.equal(0, p:count("found no server taking them here"), p:output())
    assert.truthy(p:alive(), p:output())
  end)
end)
