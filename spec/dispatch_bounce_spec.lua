-- A connection the only ready worker cannot take (out of file descriptors) comes back "not
-- taken" and is sent again every 200 ms. The master closes a connection 10 s after its accept
-- when no worker took it; before, each return restarted that clock, so such a client hung for
-- as long as the worker stayed starved (16 s+, 54 bounces, in the review that found it).
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

describe("dispatch to the only worker, out of file descriptors", function()
  local p, starved, old_limit

  after_each(function()
    if starved and old_limit then set_nofile(starved, old_limit) end
    if p then p:stop() end
    p, starved, old_limit = nil, nil, nil
    H.cleanup()
  end)

  it("closes a connection that keeps coming back 10 s after its accept", function()
    local port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(H.wait_for(function() return p:count("ready %d+") == 1 end, 8000), p:output())
    starved = tonumber(p:stdout():match("ready (%d+)"))
    assert(H.wait_for(function()
      local s = H.connect(port)
      if not s then return false end
      local line = s:read_until(function(d) return d:find("\n") end, 3000)
      s:close()
      return line:match("%d+") == tostring(starved)
    end, 8000), p:output())
    old_limit = assert(set_nofile(starved, 3), "prlimit failed")

    local s = assert(H.connect(port))
    local t0 = H.now()
    local data, how = s:read_all(20000)
    local waited = H.now() - t0
    s:close()
    assert.equal("", data)
    -- closed by the master's queue deadline (10 s), not left hanging until the read gives up
    assert.is_true(waited < 15000, "waited " .. waited .. " ms (" .. how .. ")\n" .. p:output())
    assert.is_true(waited >= 9000, "waited " .. waited .. " ms\n" .. p:output())
    assert(p:wait_output("waited 10000 ms for a ready worker; closed", 3000), p:output())
  end)
end)
