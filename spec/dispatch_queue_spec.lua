-- Connections the master holds while no worker is ready for them (its dispatch queue): each
-- waits 10 s at most, then its client sees the end (it waited forever); and a flood of them
-- with the master near its descriptor limit pauses accepting instead of reaching the limit,
-- so that the master still answers its control socket (luacluster status).
local H = require("helper")

-- one worker, whose server closes once it listens: the master has the listening socket and no
-- ready worker for it
local APP = [[
local net = require("luacluster.net")
if cluster.is_worker then
  local server = net.create_server(function(sock) sock:write("served\n") sock:close() end)
  server:on("listening", function()
    server:close()
    timer.after(300, function() say("closed its server") end)
  end)
  server:listen()
  timer.after(120000, function() end) -- the worker stays
end
]]

local function start(extra_sh)
  local port = H.free_port()
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", H.prelude .. APP)
  local p = H.spawn({ "/bin/sh", "-c", (extra_sh or "") .. "exec " .. H.bin .. " -w 1 -p " .. port
    .. " --control " .. dir .. "/ctl.sock " .. dir .. "/app.lua" }, { dir = dir })
  assert.truthy(p:wait_output("closed its server", 8000, true), p:output())
  return p, port, dir
end

describe("dispatch queue", function()
  after_each(function()
    H.cleanup()
  end)

  it("closes a connection that waited 10 s for a ready worker", function()
    local p, port = start()
    local s = assert(H.connect(port))
    local t0 = H.now()
    local data, how = s:read_all(15000)
    local waited = H.now() - t0
    s:close()
    assert.equal("eof", how, p:output())
    assert.equal("", data)
    assert.is_true(waited >= 9000, "closed after " .. waited .. " ms")
    assert.truthy(p:wait_output("1 connection waited 10000 ms for a ready worker; closed", 2000, true), p:output())
  end)

  it("answers its control socket during a flood at its descriptor limit (ulimit -n 256)", function()
    local p, port, dir = start("ulimit -n 256; ")
    local socks = {}
    for i = 1, 400 do socks[i] = H.connect(port) end
    H.sleep(500)
    local t0 = H.now()
    local out, rc = H.sh(H.bin .. " status --control " .. dir .. "/ctl.sock")
    assert.equal(0, rc, out .. "\n" .. p:output())
    assert.is_true(H.now() - t0 < 5000)
    assert.truthy(out:find("master pid", 1, true), out)
    for _, s in ipairs(socks) do s:close() end
    assert.truthy(p:alive(), p:output())
  end)
end)
