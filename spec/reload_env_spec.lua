-- A reload's new workers run with the new code's settings: what the master passes to a
-- worker (max_message_size, drain_timeout) comes from the setup of the generation the worker
-- belongs to, not from the one still serving while the new generation starts.
local H = require("helper")

-- the app: setup{ max_message_size = MAX, drain_timeout = DRAIN }; its worker serves
--   /send?N    a request of N bytes to the master: "ok N" (the master's answer) or the error
--   /hang?MS   an answer after MS ms (default: a minute; a drain cannot finish meanwhile)
--   /leave     cluster.worker:disconnect(): the worker drains (its own drain_timeout) and exits
local function app_src(max, drain)
  return H.prelude .. ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 1, max_message_size = %d, drain_timeout = %d }
  cluster.on("request", function(w, msg) return #msg end)
else
  http.create_server(function(req, res)
    if req.path == "/send" then
      local reply, err = cluster.worker:request(string.rep("x", tonumber(req.query)), 3000)
      return 200, reply and ("ok " .. reply) or ("error " .. tostring(err))
    elseif req.path == "/hang" then
      timer.sleep(tonumber(req.query) or 60000)
      return 200, "late"
    elseif req.path == "/pid" then
      return 200, tostring(process.pid)
    elseif req.path == "/leave" then
      cluster.worker:disconnect()
      return 200, "leaving"
    end
    return 200, "generation " .. cluster.worker.generation
  end):listen()
end
]]):format(max, drain)
end


describe("reload settings", function()
  after_each(function()
    H.cleanup()
  end)

  it("start the new generation's workers with its max_message_size and drain_timeout", function()
    local port = H.free_port()
    local dir = H.tmpdir()
    local path, ctl = dir .. "/app.lua", dir .. "/ctl.sock"
    H.write_file(path, app_src(1000, 20000))
    local p = H.start(path, { "-p", port, "--control", ctl })
    local url = "http://127.0.0.1:" .. port
    assert(H.wait_for(function() return H.curl(url .. "/") == "generation 1" end, 8000, 50), p:output())
    -- generation 1: 5000 bytes are over its limit of 1000
    assert.matches("^error message of %d+ bytes is over the limit of 1000 bytes", (H.curl(url .. "/send?5000")))

    local function reload(max, drain, gen)
      H.write_file(path .. ".new", app_src(max, drain))
      os.rename(path .. ".new", path)
      local out, rc = H.sh(H.bin .. " reload --control " .. ctl)
      assert.equal(0, rc, out .. p:output())
      assert.equal("generation " .. gen, (H.curl(url .. "/")))
    end

    -- a larger limit: the new worker and the master's side of its channel both take 5000 bytes
    reload(100000, 20000, 2)
    assert.equal("ok 5000", (H.curl(url .. "/send?5000")), p:output())
    -- a smaller one: refused again, by the new generation's limit (not the 100000 still live)
    reload(2000, 700, 3)
    assert.matches("^error message of %d+ bytes is over the limit of 2000 bytes", (H.curl(url .. "/send?5000")))
    assert.equal("ok 1500", (H.curl(url .. "/send?1500")))
    -- drain_timeout: a worker of generation 3 that drains with a request that never ends
    -- gives up after 700 ms (its own deadline: a worker's disconnect() is not timed by the master)
    local hang = assert(H.connect(port))
    hang:send("GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
    H.sleep(100)
    assert.equal("leaving", (H.curl(url .. "/leave")))
    local ms = p:wait_output("drain did not finish within (%d+) ms", 5000)
    hang:close()
    assert.equal("700", ms, p:output())
    p:stop()
  end)

  it("a retired worker drains with the drain_timeout of the code that retired it", function()
    -- the master kills a draining worker at the new drain_timeout: the worker's own deadline
    -- is the same one, not the value it was started with
    local port = H.free_port()
    local dir = H.tmpdir()
    local path, ctl = dir .. "/app.lua", dir .. "/ctl.sock"
    H.write_file(path, app_src(100000, 1500))
    local p = H.start(path, { "-p", port, "--control", ctl })
    local url = "http://127.0.0.1:" .. port
    assert(H.wait_for(function() return H.curl(url .. "/") == "generation 1" end, 8000, 50), p:output())
    local old_pid = tonumber((H.curl(url .. "/pid")))
    local hang = assert(H.connect(port))
    hang:send("GET /hang?4500 HTTP/1.1\r\nHost: t\r\n\r\n")
    H.sleep(100)
    H.write_file(path .. ".new", app_src(100000, 30000))
    os.rename(path .. ".new", path)
    local out, rc = H.sh(H.bin .. " reload --control " .. ctl)
    assert.equal(0, rc, out .. p:output())
    -- generation 1's worker drains (its request takes 4.5 s) past its old 1500 ms
    H.sleep(3000)
    assert.is_nil(p:output():find("drain did not finish within 1500 ms", 1, true), p:output())
    assert.is_true(H.pid_alive(old_pid), p:output())
    -- the request ends: answered, and the old worker exits
    local answer = hang:read_all(5000)
    hang:close()
    assert.matches("\r\n\r\nlate$", answer)
    assert.truthy(H.wait_for(function() return not H.pid_alive(old_pid) end, 5000), p:output())
    p:stop()
  end)
end)
