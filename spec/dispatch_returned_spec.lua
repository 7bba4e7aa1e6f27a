-- A connection that comes back "not taken" uncounts the worker it was counted for (the
-- picker's connections, which least_connections and custom schedulers read). A reload's new
-- worker takes its slot's id; before, an old worker's late "not taken" uncounted whatever
-- worker had that id, the new one, which then counted fewer connections than it was given.
-- Now the return names the channel it came by, and only that worker is uncounted.
local H = require("helper")
local ffi = require("ffi")

pcall(ffi.cdef, [[
struct lc_spec_rlimit { uint64_t cur, max; };
int prlimit(int pid, int resource, const struct lc_spec_rlimit *new_limit, struct lc_spec_rlimit *old_limit);
]])
local RLIMIT_NOFILE = 7

local function set_nofile(pid, n)
  local old = ffi.new("struct lc_spec_rlimit")
  if ffi.C.prlimit(pid, RLIMIT_NOFILE, nil, old) ~= 0 then
    return nil
  end
  local lim = ffi.new("struct lc_spec_rlimit")
  lim.cur, lim.max = n, old.max
  if ffi.C.prlimit(pid, RLIMIT_NOFILE, lim, nil) ~= 0 then
    return nil
  end
  return old.cur
end

local function ctl(dir, cmd)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. dir .. "/ctl.sock")
end

-- gen1: its worker blocks its loop for 4 s when the file "block" appears (then it is starved)
local function gen1(dir)
  return H.prelude .. ([[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 1 })
else
  net.create_server(function(sock) sock:write("hello g1\n") sock:close() end):listen()
  say("g1 pid", process.pid)
  timer.every(50, function()
    if os.remove(%q) then
      say("g1 blocks")
      local t0 = os.clock()
      while os.clock() - t0 < 4 do end
    end
  end)
end
]]):format(dir .. "/block")
end

-- gen2: a scheduler that says how many connections its one worker was counted for
local GEN2 = H.prelude .. [[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 1, scheduler = function(workers)
    say("pick", workers[1].id, workers[1].connections or 0)
    return workers[1]
  end })
else
  net.create_server(function(sock) sock:write("hello g2\n") sock:close() end):listen()
end
]]

local function greeting(port)
  local s = H.connect(port)
  if not s then return nil end
  local line = s:read_until(function(d) return d:find("\n") end, 3000)
  s:close()
  return line
end

describe("an old worker's connection returned after a reload", function()
  local starved, old_limit

  after_each(function()
    if starved and old_limit then set_nofile(starved, old_limit) end
    starved, old_limit = nil, nil
    H.cleanup()
  end)

  it("does not uncount the new worker that has its id", function()
    local port = H.free_port()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", gen1(dir))
    local p = H.start(dir .. "/app.lua", { "-p", port, "--control", dir .. "/ctl.sock" })
    assert.truthy(H.wait_for(function() return (greeting(port) or ""):find("hello g1") ~= nil end, 8000, 50),
      p:output())
    starved = tonumber(p:stdout():match("g1 pid (%d+)"))

    -- the old worker stops reading its channel, and will have no descriptor for what it finds there
    H.write_file(dir .. "/block", "")
    assert.truthy(p:wait_output("g1 blocks", 3000, true), p:output())
    old_limit = assert(set_nofile(starved, 3), "prlimit failed")
    local K = 4
    local waiting = {}
    for i = 1, K do waiting[i] = assert(H.connect(port)) end

    -- meanwhile a reload: the new worker 1 takes the slot, and J connections
    H.write_file(dir .. "/app.lua.new", GEN2)
    os.rename(dir .. "/app.lua.new", dir .. "/app.lua")
    local out, rc = ctl(dir, "reload")
    assert.equal(0, rc, out .. p:output())
    local J = 3
    for _ = 1, J do
      assert.truthy(H.wait_for(function() return (greeting(port) or ""):find("hello g2") ~= nil end, 8000, 50),
        p:output())
    end
    -- the old worker wakes: the K come back "not taken", and go to the new worker
    for i = 1, K do
      local line = waiting[i]:read_until(function(d) return d:find("\n") end, 15000)
      waiting[i]:close()
      assert.truthy(line:find("hello g2"), "connection " .. i .. ": " .. line .. "\n" .. p:output())
    end
    assert.truthy((greeting(port) or ""):find("hello g2"), p:output())
    local last
    for n in p:stdout():gmatch("pick 1 (%d+)") do last = tonumber(n) end
    -- J + K picks counted before the last one (uncounted by the old worker's returns: fewer)
    assert.equal(J + K, last, p:output())
  end)
end)
