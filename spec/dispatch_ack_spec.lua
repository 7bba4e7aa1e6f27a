-- What the master does with the copy it keeps of each connection it dispatches, until the
-- worker's channel acknowledges it (ipc.c, as the frame is read, before any Lua):
--   * a connection that reaches a worker with no server for it goes back to another worker
--     (it was closed there, and the master's copy held the client open, without an end);
--   * a copy is never re-sent once a worker has written to (or read from) the connection: a
--     worker killed after its greeting leaves its client one greeting, then the end;
--   * a stopped worker gets at most 128 connections not acknowledged, then counts as busy: the
--     master (ulimit -n 256) holds no more copies for it, and the other worker serves the rest.
local H = require("helper")

local GREET = H.root .. "/spec/greet_load.lua"

local function greet_load(port, conns, max_wait)
  local dir = H.tmpdir()
  local h = { stop = dir .. "/stop", out = dir .. "/result.lua" }
  h.p = H.spawn({ "/usr/bin/env", "luajit", GREET, tostring(port), "--conns", tostring(conns),
    "--until", h.stop, "--max-ms", "30000", "--max-wait", tostring(max_wait), "--out", h.out }, { dir = dir })
  function h.finish()
    H.write_file(h.stop, "")
    h.p:wait(15000)
    local f = loadfile(h.out)
    assert(f, "the load client wrote no result: " .. h.p:output())
    return f()
  end
  return h
end

local function summary(r)
  return string.format("conns %d: one greeting %d, none %d, two or more %d, no end %d; %s",
    r.conns, r.one, r.none, r.twice, r.waited, table.concat(r.samples, "; "))
end

-- the first line a new connection to port reads, or nil
local function first_line(port, timeout_ms)
  local s = H.connect(port)
  if not s then return nil end
  local line = s:read_until(function(d) return d:find("\n") end, timeout_ms or 3000)
  s:close()
  return line:match("^[^\n]*\n") and line or nil
end

describe("dispatch acknowledgements", function()
  after_each(function()
    H.cleanup()
  end)

  it("sends a connection that finds no server in its worker to another worker", function()
    local pa, pb = H.free_port(), H.free_port()
    -- worker 1 listens on A and closes it at once, from B's listening callback (its listen
    -- result comes after the close), then works 1.5 s from the first event after its listen
    -- left (a connect's, which the kernel completes at once), before the master's answer is
    -- read; worker 2 serves A
    local p = H.start_app(([[
local net = require("luacluster.net")
if cluster.is_worker then
  if cluster.worker.id == 1 then
    local b = net.create_server(function(sock) sock:close() end)
    b:on("listening", function()
      local a = net.create_server(function(sock) sock:write("a1\n") sock:close() end)
      a:listen(%d)
      a:close()
      net.connect("127.0.0.1", %d, function(sock)
        if sock then sock:close() end
        say("worker 1 works")
        local hrtime = require("luacluster.core").hrtime -- a wall clock, as the bound below
        local t0 = hrtime()
        while hrtime() - t0 < 1500 do end
        say("worker 1 done")
      end)
    end)
    b:listen(%d)
  else
    net.create_server(function(sock) sock:write("a2\n") sock:close() end):listen(%d)
    say("worker 2 listens")
  end
end
]]):format(pa, pb, pb, pa), { "-w", 2 })
    assert.truthy(p:wait_output("worker 1 works", 8000, true), p:output())
    assert.truthy(p:wait_output("worker 2 listens", 8000, true), p:output())
    H.sleep(100)
    local socks = {}
    for i = 1, 8 do socks[i] = assert(H.connect(pa)) end
    local t0 = H.now()
    for i = 1, 8 do
      -- served by worker 2, or at least an end: 1.5 s of work left at most, then 2.5 s (a loaded
      -- machine; without the re-send they waited for the queue's 10 s deadline)
      local data, how = socks[i]:read_all(4000 - (H.now() - t0))
      socks[i]:close()
      assert(how == "eof", "connection " .. i .. ": no end within 2.5 s of the work (" .. ("%q"):format(data) .. ")\n"
        .. p:output())
      assert.equal("a2\n", data, p:output())
    end
    assert.truthy(p:wait_output("worker 1 done", 3000, true), p:output())
  end)

  it("never re-sends a connection its killed worker had written to", function()
    local port = H.free_port()
    local p = H.start_app([[
local net = require("luacluster.net")
if cluster.is_worker then
  net.create_server(function(sock)
    sock:write("hello " .. process.pid .. "\n")
    local t0 = os.clock()
    while os.clock() - t0 < 2 do end
    sock:close()
  end):listen()
end
]], { "-w", 2, "-p", port })
    assert.truthy(H.wait_for(function() return first_line(port, 5000) end, 10000, 100), p:output())
    H.sleep(2500) -- both workers idle again
    for _ = 1, 2 do
      local s = assert(H.connect(port))
      local line = s:read_until(function(d) return d:find("\n") end, 5000)
      local pid = line:match("^hello (%d+)\n")
      assert(pid, ("%q"):format(line) .. "\n" .. p:output())
      H.sh("kill -9 " .. pid)
      local rest, how = s:read_all(5000)
      s:close()
      assert.equal("eof", how, p:output())
      assert.equal("", rest, "a second greeting after the first worker was killed\n" .. p:output())
      H.sleep(2500) -- its replacement starts; the other worker is idle again
    end
    assert.truthy(p:alive(), p:output())
  end)

  it("holds at most 128 copies for a stopped worker and serves the rest with the other (ulimit -n 256)", function()
    local port = H.free_port()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", H.prelude .. [[
local net = require("luacluster.net")
if cluster.is_worker then
  net.create_server(function(sock) sock:write("hello " .. process.pid .. "\n") sock:close() end):listen()
  say("ready", process.pid)
end
]])
    local p = H.spawn({ "/bin/sh", "-c", "ulimit -n 256; exec " .. H.bin .. " -w 2 -p " .. port .. " --control "
      .. dir .. "/ctl.sock " .. dir .. "/app.lua" }, { dir = dir })
    assert.truthy(H.wait_for(function() return p:count("ready %d+") == 2 end, 8000), p:output())
    assert.truthy(H.wait_for(function() return first_line(port) end, 5000), p:output())
    local stopped = p:stdout():match("ready (%d+)")
    H.sh("kill -STOP " .. stopped)
    local h = greet_load(port, 48, 1000)
    H.sleep(9000)
    local r = h.finish()
    H.sh("kill -CONT " .. stopped)
    -- those sent to the stopped worker wait (at most 128); every other one is greeted
    assert(r.waited <= 128 and r.none == 0 and r.twice == 0 and r.one >= 300, summary(r) .. "\n" .. p:output())
    assert.truthy(p:alive(), p:output())
    assert.is_nil(p:output():find("accept: ", 1, true), p:output())
  end)
end)
