-- The master's own output goes through the runtime's log writer (runtime/log.c): an app's
-- `print` in the master and the library's own lines never block the master's loop on a full
-- stdout or stderr (a slow journald, a pipe nobody reads); lines past the writer's bound are
-- dropped and counted, as the runtime's log lines and the workers' output are.
local H = require("helper")
local ffi = require("ffi")

pcall(ffi.cdef, [[
int mkfifo(const char *path, unsigned int mode);
]])

local O_RDONLY, O_NONBLOCK = 0, 2048


-- starts the app with its stdout (fd 1) or stderr (fd 2) on a FIFO this spec opened for
-- reading and does not read: -> process, the reader's fd
local function start_with_fifo(src, fd)
  local dir = H.app({ ["app.lua"] = H.prelude .. src })
  local fifo = dir .. "/out.fifo"
  assert(ffi.C.mkfifo(fifo, 384) == 0, "mkfifo")
  local rfd = ffi.C.open(fifo, O_RDONLY + O_NONBLOCK, 0)
  assert(rfd >= 0, "open fifo")
  local cmd = "exec '" .. H.bin .. "' --control " .. dir .. "/control.sock " .. dir .. "/app.lua " .. fd .. ">" .. fifo
  local p = H.spawn({ "/bin/sh", "-c", cmd }, { dir = dir })
  return p, rfd
end


-- reads what the FIFO holds now
local function drain(fd)
  local buf = ffi.new("char[65536]")
  local parts = {}
  while true do
    local r = tonumber(ffi.C.read(fd, buf, 65536))
    if r <= 0 then
      break
    end
    parts[#parts + 1] = ffi.string(buf, r)
  end
  return table.concat(parts)
end


-- serves 30 requests, one after the other, each of which makes the master write 40 kB
local function serves_all(port)
  local served = 0
  for _ = 1, 30 do
    local b, status = H.curl("http://127.0.0.1:" .. port .. "/", "-m 3")
    if status ~= 200 or b ~= "ok" then
      break
    end
    served = served + 1
  end
  return served
end


-- the app: each request its worker serves makes the master write 700 lines of 1000 bytes with
-- `write` (an expression of the master's code), in a cluster.on("message") handler: 30 requests
-- write 21 MB, more than the writer holds for stdout (16 MiB)
local function app(write, port)
  return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  local line = "noise " .. string.rep("x", 994)
  cluster.on("message", function(w, msg)
    for i = 1, 700 do %s end
  end)
else
  http.create_server(function()
    cluster.worker:send("served")
    return 200, {}, "ok"
  end):listen(%d)
end
]]):format(write, port)
end


describe("the master's output", function()
  after_each(function()
    H.cleanup()
  end)

  it("an app's print in the master never stalls it on a full stdout: requests are served", function()
    local port = H.free_port()
    local p, rfd = start_with_fifo(app("print(line, i)", port), 1)
    assert(H.wait_for(function() return (H.curl("http://127.0.0.1:" .. port .. "/")) == "ok" end, 10000, 100),
      p:output())
    -- nobody reads stdout: its 64 kB fill after a few requests; the master keeps dispatching
    assert.equal(30, serves_all(port), p:output())
    -- the reader takes the lines again: the master's prints flow, whole lines
    local seen = H.wait_for(function()
      local s = drain(rfd)
      return s:find("noise xxxx", 1, true) and s
    end, 5000, 50)
    assert.truthy(seen)
    -- what did not fit was counted, and the count comes first once lines flow again (before
    -- the next print that fits); prints arrive whole: tab-separated values, one line each
    local all = seen
    local dropped = H.wait_for(function()
      H.curl("http://127.0.0.1:" .. port .. "/")
      all = all .. drain(rfd)
      return all:match("%[master%] [%d%-T:%.Z]+ warn: (%d+) log lines dropped: stdout did not take them in time\n")
    end, 30000, 100)   -- the writer's 16 MiB backlog comes first: a loaded machine took over 8 s
    assert.truthy(dropped, all:sub(-500))
    assert.is_true(tonumber(dropped) > 0)
    assert.truthy(all:find("\nnoise " .. string.rep("x", 994) .. "\t700\n", 1, true))
    p:stop()
    ffi.C.close(rfd)
  end)

  it("a tool's print output reaches a slow reader whole, also when it exits right after", function()
    -- workers = 0: a tool that prints 4 MB and exits; its stdout is a pipe whose reader starts
    -- reading 2 s later and then reads slowly. Data is not a log line: nothing may be dropped.
    local dir = H.app({ ["app.lua"] = H.prelude .. [[
      cluster.setup{ workers = 0 }
      local line = string.rep("d", 99)
      for i = 1, 40000 do print(line) end
    ]] })
    local out, rc = H.sh("'" .. H.bin .. "' --control " .. dir .. "/control.sock " .. dir ..
      "/app.lua | (sleep 2; while IFS= read -r l; do n=$((n+1)); done; echo lines=$n)")
    assert.equal(0, rc, out)
    assert.truthy(out:find("lines=40000", 1, true), out:sub(-300))
  end)

  it("the library's own messages in the master (a worker that failed to boot) never block its exit", function()
    -- stderr is full (nobody reads it) when the first worker fails at its top level: the
    -- master says so and stops with 1, in bounded time. The filler lines are 4096 bytes each
    -- ("[master] <24-byte time> warn: " and 4055 bytes), so the pipe's pages are full to the
    -- last byte and even a short line cannot go in.
    local p, rfd = start_with_fifo([[
      if cluster.is_master then
        cluster.setup{ workers = 1 }
        local log = require("luacluster.lib.log")
        for i = 1, 100 do log.warn(string.format("filler %04d ", i) .. string.rep("y", 4043)) end
      else
        timer.sleep(300)
      end
    ]], 2)
    -- (timer.sleep at a worker's top level raises: a boot failure)
    local code = p:wait(15000)
    assert.equal(1, code, p:output())
    -- the reader takes the lines: the master's line is there or counted as dropped
    local seen = drain(rfd)
    assert.truthy(seen:find("filler", 1, true))
    ffi.C.close(rfd)
  end)
end)
