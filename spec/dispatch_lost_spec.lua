-- A worker out of file descriptors receiving dispatched connections: the kernel drops each
-- socket the master sends it (SCM_RIGHTS finds no free descriptor), and its frame arrives alone.
-- Before, that was one "a frame announced a socket that did not arrive" line per connection (a
-- log flood under a burst), and the connection hung: the master kept its copy until that worker
-- exited. Now the worker counts them, logs one line per burst with the count, and tells the
-- master, which sends its copies to another worker.
local H = require("helper")
local ffi = require("ffi")

pcall(ffi.cdef, [[
struct lc_spec_rlimit { uint64_t cur, max; };
int prlimit(int pid, int resource, const struct lc_spec_rlimit *new_limit, struct lc_spec_rlimit *old_limit);
]])
local RLIMIT_NOFILE = 7

-- sets pid's soft limit of open files; -> the previous one, or nil when the process is gone
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

local APP = [[
local net = require("luacluster.net")
if cluster.is_worker then
  net.create_server(function(sock)
    sock:write(process.pid .. "\n")
    sock:close()
  end):listen()
  say("ready", process.pid)
end
]]

local BURST = 40

describe("dispatch to a worker out of file descriptors", function()
  local p, starved, old_limit

  after_each(function()
    if starved and old_limit then set_nofile(starved, old_limit) end
    if p then p:stop() end
    p, starved, old_limit = nil, nil, nil
    H.cleanup()
  end)

  it("sends the connections it cannot receive to another worker, with one log line per burst", function()
    local port = H.free_port()
    p = H.start_app(APP, { "-w", 2, "-p", port })
    assert(H.wait_for(function() return p:count("ready %d+") == 2 end, 8000), p:output())
    local pids = {}
    for pid in p:stdout():gmatch("ready (%d+)") do pids[#pids + 1] = pid end
    starved = tonumber(pids[1])
    -- both workers serve before (the master has both ready)
    local seen = {}
    assert(H.wait_for(function()
      local s = H.connect(port)
      if s then
        local line = s:read_until(function(d) return d:find("\n") end, 3000)
        s:close()
        seen[line:match("%d+") or "?"] = true
      end
      return seen[pids[1]] and seen[pids[2]]
    end, 8000), p:output())
    old_limit = assert(set_nofile(starved, 3), "prlimit failed")  -- no new descriptor at all

    -- a burst: every connection is answered, by the other worker
    local socks = {}
    for i = 1, BURST do
      socks[i] = assert(H.connect(port))
    end
    local answered, by_other = 0, 0
    for i = 1, BURST do
      local line, how = socks[i]:read_until(function(d) return d:find("\n") end, 10000)
      socks[i]:close()
      if line:find("\n") then
        answered = answered + 1
        if line:match("%d+") == pids[2] then by_other = by_other + 1 end
      else
        print("connection " .. i .. ": " .. tostring(how))
      end
    end
    assert.equal(BURST, answered, p:output())
    assert.equal(BURST, by_other, p:output())
    -- the burst ends (a second without a loss): one line, with the count
    assert(p:wait_output("connections? sent by the master did not arrive", 5000), p:output())
    H.sleep(1500)
    assert.equal(1, p:count("did not arrive"), p:output())
    local n = tonumber(p:output():match("warn: dispatch: (%d+) connections? sent by the master did not arrive"))
    assert.is_true(n ~= nil and n >= 1, p:output())

    -- once it has descriptors again, the starved worker serves again
    set_nofile(starved, old_limit)
    old_limit = nil
    seen = {}
    assert(H.wait_for(function()
      local s = H.connect(port)
      if s then
        local line = s:read_until(function(d) return d:find("\n") end, 3000)
        s:close()
        seen[line:match("%d+") or "?"] = true
      end
      return seen[pids[1]]
    end, 8000), p:output())
    assert.equal(0, p:count("worker %d+ %(pid %d+%) exited"), p:output())
  end)
end)
