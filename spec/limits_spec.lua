-- Resource limits of workers (lua/luacluster/limits.lua): max_requests and max_memory replace a
-- worker gracefully (its replacement is ready before it drains), and a worker whose event loop
-- is stuck is found by the heartbeat, SIGKILLed and restarted.
local H = require("helper")

-- an app whose worker answers with its pid; /grow keeps 40 MB more, /spin never returns
local APP = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup(SETUP)
  cluster.on("exit", function(w, code, signal) say("exit", w.id, w.pid, code, signal) end)
  cluster.on("online", function(w) say("online", w.id, w.pid) end)
else
  local keep = {}
  http.create_server(function(req, res)
    if req.path == "/grow" then
      for i = 1, 40 do keep[#keep + 1] = string.rep(string.char(65 + i % 26), 1048576 - i) end
    elseif req.path == "/spin" then
      while true do end
    end
    return 200, tostring(process.pid)
  end):listen(PORT)
end
]]

local function start(setup, port)
  local src = APP:gsub("SETUP", setup):gsub("PORT", tostring(port))
  local p = H.start_app(src, {})
  assert(p:wait_output("online 1 %d+", 10000), p:output())
  H.sleep(300)
  return p
end

local function get(port, path)
  local data = H.http_raw(port, "GET " .. (path or "/") .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5000)
  if not data then
    return nil
  end
  return tonumber(data:match("\r\n\r\n(%d+)$")), data
end

local function rss_kb(pid)
  return tonumber(H.read_file("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+)"))
end


describe("limits", function()
  after_each(H.cleanup)

  it("cluster.setup checks the new keys", function()
    local p = H.start_app([[
      for _, bad in ipairs({ { max_requests = -1 }, { max_requests = 1.5 }, { max_memory = -5 },
          { heartbeat_interval = "x" }, { heartbeat_timeout = -1 } }) do
        local ok, err = pcall(cluster.setup, bad)
        say(ok, err)
      end
      cluster.setup{ workers = 0, max_requests = 10, max_memory = 1e9, heartbeat_interval = 500, heartbeat_timeout = 0 }
      say("setup-done")
    ]], {})
    assert(p:wait_output("setup-done", 5000, true), p:output())
    local out = p:stdout()
    assert.equals(5, select(2, out:gsub("false ", "")))
    assert.truthy(out:find("max_requests must be a number >= 0", 1, true))
    assert.truthy(out:find("max_requests must be a whole number", 1, true))
    assert.truthy(out:find("heartbeat_interval must be a number", 1, true))
  end)

  it("max_requests replaces a worker once it has served N requests, without losing one", function()
    local port = H.free_port()
    local p = start("{ workers = 1, max_requests = 5 }", port)
    local pids, order = {}, {}
    for i = 1, 30 do
      local pid, raw = get(port)
      assert(pid, "request " .. i .. " failed: " .. tostring(raw) .. "\n" .. p:output())
      if not pids[pid] then
        pids[pid] = 0
        order[#order + 1] = pid
      end
      pids[pid] = pids[pid] + 1
      H.sleep(40) -- the worker looks at its counter every 100 ms
    end
    assert.is_true(#order >= 3, "expected replacements, served by " .. #order .. " pid(s)\n" .. p:output())
    local out = p:output()
    assert.truthy(out:find("has served %d+ requests %(max_requests 5%)"), out)
    assert.truthy(out:find("worker 1: pid %d+ replaced pid %d+"), out)
    -- graceful: each old worker exits 0 after its replacement came online
    local first_online = out:find("online 1 " .. order[2], 1, true)
    local first_exit = out:find("exit 1 " .. order[1] .. " 0", 1, true)
    assert(first_online and first_exit and first_online < first_exit, out)
    assert.is_nil(out:find("exited with"), out)
  end)

  it("a replacement that cannot start changes nothing: the old worker keeps serving", function()
    local port = H.free_port()
    local p, dir = H.start_app(([[
      local http = require("luacluster.http")
      if cluster.is_master then
        cluster.setup{ workers = 1, max_requests = 3 }
        cluster.on("online", function(w) say("online", w.id, w.pid) end)
      else
        local f = io.open(os.getenv("BROKEN_FLAG"))
        if f then f:close() error("this worker cannot start") end
        http.create_server(function() return 200, tostring(process.pid) end):listen(PORT)
      end
    ]]):gsub("PORT", tostring(port)), {}, { env = { BROKEN_FLAG = "/tmp/lc-limits-broken-" .. port } })
    assert(p:wait_output("online 1 %d+", 10000), p:output())
    H.sleep(300)
    H.write_file("/tmp/lc-limits-broken-" .. port, "x")
    local first = get(port)
    for _ = 1, 5 do
      assert.equals(first, get(port))
    end
    assert(p:wait_output("the replacement of worker 1 exited before it was ready; worker 1 keeps serving", 5000, true),
      p:output())
    for _ = 1, 5 do
      assert.equals(first, get(port))
    end
    os.remove("/tmp/lc-limits-broken-" .. port)
    -- the next try (after its backoff) succeeds
    local other = H.wait_for(function()
      local pid = get(port)
      return pid ~= first and pid
    end, 8000, 200)
    assert(other, p:output())
    local _ = dir
  end)

  it("max_memory replaces a worker whose RSS passes the limit", function()
    local port = H.free_port()
    local probe = start("{ workers = 1 }", port)
    local base = rss_kb(get(port)) -- a fresh worker's RSS
    probe:stop()
    local limit = (base + 20 * 1024) * 1024
    local p = start("{ workers = 1, heartbeat_interval = 100, max_memory = " .. limit .. " }", port)
    local pid1 = get(port)
    H.sleep(500)
    assert.equals(pid1, get(port)) -- under the limit: stays
    get(port, "/grow")
    local pid2 = H.wait_for(function()
      local pid = get(port)
      return pid ~= pid1 and pid
    end, 5000)
    assert(pid2, p:output())
    local out = p:output()
    assert.truthy(out:find("worker 1 %(pid " .. pid1 .. "%) uses [%d.]+ MB of memory, over max_memory"), out)
    assert(p:wait_output("exit 1 " .. pid1 .. " 0", 5000, true), p:output())
    assert.is_true(H.pid_alive(pid2))
  end)

  it("a worker whose loop is stuck is killed after heartbeat_timeout and replaced", function()
    local port = H.free_port()
    local p = start("{ workers = 2, heartbeat_interval = 100, heartbeat_timeout = 1000 }", port)
    assert(p:wait_output("online 2 %d+", 5000), p:output())
    -- find worker 1's pid, then make it spin (the request itself never gets an answer)
    local pids = {}
    for _ = 1, 4 do
      pids[get(port)] = true
    end
    local s = H.connect(port)
    s:send("GET /spin HTTP/1.1\r\nHost: x\r\n\r\n")
    local t0 = H.now()
    assert(p:wait_output("has not answered a heartbeat %(its event loop is stuck%) for %d+ ms", 5000), p:output())
    local id, pid = p:output():match("worker (%d) %(pid (%d+)%) has not answered a heartbeat")
    local waited = H.now() - t0
    assert(waited >= 900 and waited < 3000, "killed after " .. waited .. " ms\n" .. p:output())
    assert(p:wait_output("exit " .. id .. " " .. pid .. " nil SIGKILL", 3000, true), p:output())
    assert(p:wait_output("online " .. id .. " %d+", 5000), p:output()) -- restarted in its slot
    s:close()
    -- both slots serve again
    local seen = H.wait_for(function()
      local set, n = {}, 0
      for _ = 1, 6 do
        local got = get(port)
        if got and not set[got] then
          set[got] = true
          n = n + 1
        end
      end
      return n == 2
    end, 5000)
    assert.is_true(seen, p:output())
  end)

  it("a worker that is not ready heartbeat_timeout after it started is killed and restarted", function()
    -- the first worker's top level never finishes; the one started in its place serves
    local port = H.free_port()
    local marker = H.tmpdir() .. "/started"
    local p = H.start_app(([[
      local http = require("luacluster.http")
      if cluster.is_master then
        cluster.setup{ workers = 1, heartbeat_interval = 100, heartbeat_timeout = 600 }
        cluster.on("exit", function(w, code, signal) say("exit", w.id, w.pid, code, signal) end)
      else
        local f = io.open(MARKER)
        if not f then
          io.open(MARKER, "w"):close()
          say("stuck", process.pid)
          while true do end
        end
        f:close()
        http.create_server(function() return 200, "ready" end):listen(PORT)
      end
    ]]):gsub("PORT", tostring(port)):gsub("MARKER", string.format("%q", marker)), {})
    assert(p:wait_output("stuck %d+", 5000), p:output())
    local pid = p:output():match("stuck (%d+)")
    local t0 = H.now()
    assert(p:wait_output("worker 1 %(pid " .. pid .. "%) has not become ready since it started %(its top level has not finished%) for %d+ ms", 5000), p:output())
    local waited = H.now() - t0
    assert(waited >= 400 and waited < 3000, "killed after " .. waited .. " ms\n" .. p:output())
    assert(p:wait_output("exit 1 " .. pid .. " nil SIGKILL", 3000, true), p:output())
    assert.truthy(H.wait_for(function()
      local data = H.http_raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 2000)
      return data and data:find("ready", 1, true)
    end, 5000), p:output())
  end)

  it("the heartbeat leaves a busy but live worker alone", function()
    local port = H.free_port()
    local p = H.start_app(([[
      local http = require("luacluster.http")
      if cluster.is_master then
        -- 300 ms of CPU can take far longer on a loaded machine (spec/run's other shard,
        -- ASan): the timeout leaves room for that; a loop stuck for good still passes it
        cluster.setup{ workers = 1, heartbeat_interval = 100, heartbeat_timeout = 2500 }
        cluster.on("online", function(w) say("online", w.id) end)
      else
        http.create_server(function(req, res)
          local t = os.clock() + 0.3 -- 300 ms of work at a time, the loop turns in between
          while os.clock() < t do end
          return 200, "done"
        end):listen(PORT)
      end
    ]]):gsub("PORT", tostring(port)), {})
    assert(p:wait_output("online 1", 5000, true), p:output())
    H.sleep(300)
    for _ = 1, 8 do
      local data = H.http_raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5000)
      assert(data and data:find("done", 1, true), tostring(data) .. "\n" .. p:output())
    end
    assert.is_nil(p:output():find("heartbeat", 1, true), p:output())
  end)

  it("a worker that never calls cluster.worker:ready() under ready = \"manual\" is killed as a stuck one and restarted", function()
    local marker = H.tmpdir() .. "/started"
    local p = H.start_app(([[
      if cluster.is_master then
        cluster.setup{ workers = 1, ready = "manual", heartbeat_interval = 100, heartbeat_timeout = 600 }
        cluster.on("exit", function(w, code, signal) say("exit", w.id, w.pid, code, signal) end)
      else
        local f = io.open(MARKER)
        if f then
          f:close()
          say("says ready", process.pid)
          cluster.worker:ready()
        else
          io.open(MARKER, "w"):close()
          say("silent", process.pid)
        end
      end
    ]]):gsub("MARKER", string.format("%q", marker)), {})
    assert(p:wait_output("silent %d+", 5000), p:output())
    local pid = p:output():match("silent (%d+)")
    assert(p:wait_output("worker 1 %(pid " .. pid .. "%) has not become ready since it started %(it has not called cluster.worker:ready%(%)%) for %d+ ms", 5000), p:output())
    assert(p:wait_output("exit 1 " .. pid .. " nil SIGKILL", 3000, true), p:output())
    assert(p:wait_output("says ready %d+", 5000), p:output())
    H.sleep(1000)
    assert.is_true(p:alive(), p:output())
    assert.equal(1, p:count("has not become ready", true), p:output())
  end)
end)
