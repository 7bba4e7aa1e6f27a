-- Dispatch across reloads: a connection is never served twice. The master keeps a copy of
-- each connection it sends until the worker's channel acknowledges it, keyed by that channel
-- (its serial): a reload's new worker reuses its slot's id, and when the copies were keyed by
-- the id, the old worker's exit re-sent the new worker's unacknowledged connections to another
-- worker (two processes greeted one client), and so did the exit of a failed reload's worker.
local H = require("helper")

local GREET = H.root .. "/spec/greet_load.lua"

-- a load of new connections, each read to its end, counting greetings; stop() -> result
local function load(port, conns)
  local dir = H.tmpdir()
  local h = { stop = dir .. "/stop", out = dir .. "/result.lua" }
  h.p = H.spawn({ "/usr/bin/env", "luajit", GREET, tostring(port), "--conns", tostring(conns),
    "--until", h.stop, "--max-ms", "40000", "--max-wait", "20000", "--out", h.out }, { dir = dir })
  -- (a connection's end may wait for its worker's queue of 150 ms CPU bursts, seconds on a loaded
  -- machine: --max-wait is how long a read may wait before the connection counts as never ended)
  function h.finish()
    H.write_file(h.stop, "")
    h.p:wait(30000)
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

-- each connection: one greeting line, then ~150 ms of CPU before the close (so that many
-- connections are in a worker's hands, sent but not yet acknowledged, at any time)
local function app_src(tag, fail)
  return H.prelude .. ([[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 2%s })
else
  net.create_server(function(sock)
    sock:write("hello %s " .. process.pid .. "\n")
    local t0 = os.clock()
    while os.clock() - t0 < 0.15 do end
    sock:close()
  end):listen()
  %s
end
]]):format(fail and ', ready = "manual"' or "", tag,
    fail and 'timer.after(300, function() say("failing worker exits") os.exit(3) end)' or "")
end

local function ctl(dir, cmd)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. dir .. "/ctl.sock")
end

describe("dispatch across reloads", function()
  after_each(function()
    H.cleanup()
  end)

  local function start()
    local port = H.free_port()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", app_src("g1"))
    local p = H.start(dir .. "/app.lua", { "-p", port, "--control", dir .. "/ctl.sock" })
    assert.truthy(H.wait_for(function()
      local s = H.connect(port)
      if not s then return false end
      local line = s:read_until(function(d) return d:find("\n") end, 3000)
      s:close()
      return line:find("hello") ~= nil
    end, 8000, 50), p:output())
    H.sleep(300)
    return p, port, dir
  end

  local function rewrite(dir, src)
    H.write_file(dir .. "/app.lua.new", src)
    os.rename(dir .. "/app.lua.new", dir .. "/app.lua")
  end

  it("serves no connection twice when a reload's old workers exit under load", function()
    local p, port, dir = start()
    local h = load(port, 16)
    H.sleep(500)
    for gen = 2, 3 do
      rewrite(dir, app_src("g" .. gen))
      local out, rc = ctl(dir, "reload")
      assert.equal(0, rc, out .. p:output())
      H.sleep(1200) -- the old generation drains and exits meanwhile
    end
    local r = h.finish()
    assert(r.twice == 0 and r.waited == 0 and r.one > 10, summary(r) .. "\n" .. p:output())
    assert.truthy(p:alive(), p:output())
  end)

  it("serves no connection twice when a failed reload's worker exits under load", function()
    local p, port, dir = start()
    local h = load(port, 16)
    H.sleep(500)
    rewrite(dir, app_src("g2", true))
    local out = ctl(dir, "reload")
    assert.truthy(p:wait_output("failing worker exits", 5000, true), out .. p:output())
    H.sleep(1500)
    local r = h.finish()
    assert(r.twice == 0 and r.waited == 0 and r.one > 10, summary(r) .. "\n" .. p:output())
    assert.truthy(p:alive(), p:output())
  end)
end)
