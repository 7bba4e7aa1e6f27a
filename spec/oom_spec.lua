-- Out of memory in the arguments of a libuv callback into Lua, outside HTTP (see
-- http_oom_spec.lua for HTTP, ipc_spec.lua for channels): a net socket's data (runtime/tcp.c)
-- and a child process's stdout (runtime/stream.c). Building the Lua string of what was read
-- raised outside any protected call, which is LuaJIT's panic ("PANIC: unprotected error in call
-- to Lua API") and the worker's abort. Now the event waits, reading stops behind it, and it is
-- delivered once Lua has memory again: logged, and nothing is lost.
-- The worker's Lua heap is filled under an address-space limit (prlimit, set and lifted here).
local H = require("helper")

local AS = require("address_limit")
local set_as_limit, vm_size = AS.set, AS.vm_size

-- A worker with a net echo server (whose "fill" fills its Lua heap) and a child that prints
-- "ping" on SIGUSR1.
local APP = [[
local net = require("luacluster.net")
local child_process = require("luacluster.child_process")
if cluster.is_worker then
  local ffi = require("ffi")
  ffi.cdef("void *malloc(size_t); void free(void *);")
  local new_tab = require("table.new")
  local ballast, n = nil, 0
  local function fill(size) n = n + 1 ballast[n] = string.rep("x", size) .. n end
  local sizes = { 1048576, 65536, 4096, 512, 64, 8, 1 }
  local out, FILLED = io.stdout, "filled\n"
  local child = child_process.spawn("/bin/sh", { "-c", 'trap "echo ping" USR1; while :; do sleep 0.05; done' },
    { stdio = { "pipe", "pipe", "inherit" } })
  child.stdout:on("data", function(d) say("child says " .. d:match("^%s*(.-)%s*$")) end)
  net.create_server(function(sock)
    sock:on("data", function(d)
      if d == "fill\n" then
        -- room in the C heap for the runtime's own small mallocs (a log line, a timer): freed
        -- chunks below a pinned one stay in glibc's bins, out of the limit's reach
        local ps = {}
        for i = 1, 64 do ps[i] = ffi.C.malloc(32768) end
        ffi.C.malloc(64)
        for i = 1, 64 do ffi.C.free(ps[i]) end
        ballast = new_tab(400000, 0)
        collectgarbage("collect")
        collectgarbage("stop")
        for i = 1, #sizes do
          while pcall(fill, sizes[i]) do end
        end
        out:write(FILLED)
        out:flush()
        return
      elseif d == "release\n" then
        ballast = nil
        collectgarbage("restart")
        collectgarbage("collect")
        sock:write("released " .. n .. "\n")
        return
      end
      -- two writes, no concatenation: the handler needs no Lua memory of its own, so data
      -- delivered the moment Lua can hold it is echoed even while the heap is nearly full
      sock:write("echo ")
      sock:write(d)
    end)
  end):on("listening", function()    -- the master made the socket: clients can connect now
    say("ready", process.pid, child.pid)
  end):listen()
end
]]


-- starts the app, fills its worker's heap under a limit; -> the worker's pid, the child's pid,
-- the connection that asked for the fill, one more connection opened before it
local function start_and_fill(self)
  self.port = H.free_port()
  self.p = H.start_app(APP, { "-w", 1, "-p", self.port })
  local p = self.p
  assert(p:wait_output("ready %d+ %d+", 5000), p:output())
  local wpid, cpid = p:stdout():match("ready (%d+) (%d+)")
  wpid, cpid = tonumber(wpid), tonumber(cpid)
  local filler = assert(H.connect(self.port))
  local victim = assert(H.connect(self.port))
  assert(victim:send("hello\n"))
  assert.equal("echo hello\n", victim:read_until(function(d) return d:find("\n") end, 5000), p:output())
  assert(set_as_limit(wpid, vm_size(wpid) + 48 * 1048576), "prlimit failed")
  self.wpid = wpid
  filler:send("fill\n")
  return wpid, cpid, filler, victim
end

local function line(sock)
  return (sock:read_until(function(d) return d:find("\n") end, 10000))
end

describe("out of memory in a read callback's arguments", function()
  local run = {}

  after_each(function()
    if run.wpid then set_as_limit(run.wpid, nil) end
    if run.p then run.p:stop() end
    run.p, run.wpid = nil, nil
    H.cleanup()
  end)

  -- ASan's allocator and shadow memory cannot live under an address-space limit: the
  -- sanitized run (spec/run_sanitized) skips these
  local it_ = os.getenv("ASAN_OPTIONS") and pending or it

  it_("holds a net socket's data until Lua has memory; nothing is lost and the worker goes on", function()
    local wpid, _, filler, victim = start_and_fill(run)
    local p = run.p
    local filled = p:wait_output("filled", 20000)
    local held, early
    if filled then
      victim:send("victim\n")
      held = p:wait_output("Lua had no memory for 7 bytes a socket read", 5000, true)
      -- usually nothing comes while the heap is full; a retry may find room freed meanwhile
      -- (the allocator gave back some address space) and deliver it early: also right
      early = victim:recv(300)
    end
    set_as_limit(wpid, nil)
    assert(filled, p:output())
    assert(held, p:output())
    assert.matches("not enough memory", p:stderr(), 1, true)
    -- memory is back: what was held arrives, once, and the socket reads on
    if early and early:find("\n") then
      assert.equal("echo victim\n", early, p:output())
    else
      assert.equal("echo victim\n", (early or "") .. line(victim), p:output())
    end
    filler:send("release\n")
    assert.matches("^released", line(filler))
    assert(victim:send("after\n"))
    assert.equal("echo after\n", line(victim), p:output())
    assert.equal(0, p:count("PANIC", true), p:output())
    assert.equal(0, p:count("worker %d+ %(pid %d+%) exited"), p:output())
    filler:close()
    victim:close()
  end)

  it_("holds a child's output until Lua has memory; nothing is lost and the worker goes on", function()
    local wpid, cpid, filler = start_and_fill(run)
    local p = run.p
    local filled = p:wait_output("filled", 20000)
    local held
    if filled then
      H.sh("kill -USR1 " .. cpid)
      held = p:wait_output("Lua had no memory for 5 bytes a pipe read", 5000, true)
    end
    local early = p:count("child says ping", true)
    set_as_limit(wpid, nil)
    assert(filled, p:output())
    assert(held, p:output())
    assert.equal(0, early, p:output())
    assert(p:wait_output("child says ping", 10000, true), p:output())
    filler:send("release\n")
    assert.matches("^released", line(filler))
    H.sh("kill -USR1 " .. cpid)
    assert(H.wait_for(function() return p:count("child says ping", true) == 2 end, 5000), p:output())
    assert.equal(0, p:count("PANIC", true), p:output())
    assert.equal(0, p:count("worker %d+ %(pid %d+%) exited"), p:output())
    filler:close()
  end)
end)
