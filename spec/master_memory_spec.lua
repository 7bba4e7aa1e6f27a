-- The master's memory over many worker restarts and reloads (issue 13, section 6): what the
-- master keeps must not grow with the number of workers it has started or generations it has
-- run. The app's master holds 4 MB of state per generation and 2 MB on each worker object, so
-- that one generation or one dead worker kept by mistake shows in the master's Lua heap (read
-- after a full collection, through a request from a worker) far above the noise.
local H = require("helper")

local STORE_KB, BLOB_KB = 4096, 2048

local APP = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 2, drain_timeout = 1000 })
  -- this generation's state: unique strings, so that no two generations share them
  local salt = tostring({}) .. math.random()
  local store = {}
  for i = 1, STORE_KB do store[i] = salt .. string.rep("s", 1000) .. i end
  local seen = 0
  cluster.on("fork", function(w)
    w.blob = salt .. string.rep("w", BLOB_KB * 1024) .. w.pid -- kept as long as the worker object is
    store[1] = store[1]
    say("fork", w.id, w.pid)
  end)
  cluster.on("exit", function(w) say("exit", w.id, w.pid) end)
  cluster.on("message", function(w, msg) seen = seen + 1 store[2] = store[2] end)
  cluster.on("request", function(w, msg)
    collectgarbage("collect")
    collectgarbage("collect")
    return math.floor(collectgarbage("count"))
  end)
else
  http.create_server(function(req, res)
    if req.path == "/heap" then
      return 200, tostring(cluster.worker:request({ op = "heap" }, 5000))
    end
    return 200, tostring(process.pid)
  end):listen()
  -- a busy channel: the master's message path is hot (and compiled) when a reload comes
  timer.every(2, function()
    for _ = 1, 5 do cluster.worker:send({ n = 1 }) end
  end)
end
]]


local function start()
  local port = H.free_port()
  local src = APP:gsub("STORE_KB", tostring(STORE_KB)):gsub("BLOB_KB", tostring(BLOB_KB))
  local p = H.start_app(src, { "-p", port })
  assert(H.wait_for(function() return p:count("fork %d+ %d+") >= 2 end, 10000), p:output())
  return p, port
end


-- the master's Lua heap after a full collection, in kB
local function heap_kb(p, port)
  local data = H.http_raw(port, "GET /heap HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10000)
  local kb = data and tonumber(data:match("\r\n\r\n(%d+)$"))
  assert(kb, "no heap figure: " .. tostring(data) .. "\n" .. p:output())
  return kb
end


-- waits until every worker forked so far except the `live` current ones has exited
local function settle(p, live)
  assert(H.wait_for(function()
    return p:count("\nexit %d+ %d+") + live >= p:count("fork %d+ %d+")
  end, 15000, 50), "old workers did not exit\n" .. p:output())
  H.sleep(200)
end


-- the latest pid of each worker id, from the "fork" lines
local function pids(p)
  local by_id = {}
  for id, pid in p:stdout():gmatch("fork (%d+) (%d+)") do
    by_id[tonumber(id)] = tonumber(pid)
  end
  return by_id
end


describe("the master's memory", function()
  after_each(H.cleanup)

  it("keeps no old generation's state after reloads", function()
    local p, port = start()
    H.sleep(1000) -- the message path gets hot
    local before = heap_kb(p, port)
    for gen = 2, 9 do
      p:kill("SIGHUP")
      assert(p:wait_output("reload: generation " .. gen .. " serves", 15000, true), p:output())
      H.sleep(300)
    end
    settle(p, 2)
    local after = heap_kb(p, port)
    -- one generation's state is STORE_KB: keeping even one old generation is far above this
    assert(after - before < STORE_KB / 4,
      string.format("the master's Lua heap went from %d kB to %d kB over 8 reloads", before, after))
    assert.equal(0, p:stop(10000))
  end)

  it("keeps no worker object of a worker that is gone after restarts", function()
    local p, port = start()
    H.sleep(1200) -- older than a second: a SIGKILL is not a quick crash, the restart comes at once
    local before = heap_kb(p, port)
    for _ = 1, 4 do
      local forks = p:count("fork %d+ %d+")
      for _, pid in pairs(pids(p)) do
        H.sh("kill -9 " .. pid)
      end
      assert(H.wait_for(function() return p:count("fork %d+ %d+") >= forks + 2 end, 10000), p:output())
      H.sleep(1200)
    end
    settle(p, 2)
    local after = heap_kb(p, port)
    -- each worker object carries BLOB_KB: keeping one dead worker is far above this
    assert(after - before < BLOB_KB / 2,
      string.format("the master's Lua heap went from %d kB to %d kB over 8 worker restarts", before, after))
    assert.equal(0, p:stop(10000))
  end)

  it("reports its Lua heap in status --json", function()
    local dir = H.tmpdir()
    local ctl = dir .. "/ctl.sock"
    local src = H.prelude .. 'if cluster.is_worker then require("luacluster.http").create_server(function() return 200, "ok" end):listen() end\n'
    H.write_file(dir .. "/app.lua", src)
    local p = H.start(dir .. "/app.lua", { "-w", "1", "-p", H.free_port(), "--control", ctl })
    local out
    assert(H.wait_for(function()
      out = H.sh(H.bin .. " status --control " .. ctl .. " --json 2>&1")
      return out:match('"lua_heap_kb":%d+')
    end, 10000, 100), tostring(out) .. p:output())
    local kb = tonumber(out:match('"lua_heap_kb":(%d+)'))
    assert(kb > 50 and kb < 100000, out)
    assert.matches("lua heap %d+K", H.sh(H.bin .. " status --control " .. ctl))
    assert.equal(0, p:stop(10000))
  end)
end)
