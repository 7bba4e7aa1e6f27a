-- The runtime's log output against the real binary: a stderr nobody reads never stalls the
-- master (lines are dropped and counted instead, and the count is reported once lines flow
-- again), and in JSON mode nothing a worker prints can pass for another process's record.
local H = require("helper")
local json = require("dkjson")
local ffi = require("ffi")

pcall(ffi.cdef, [[
int mkfifo(const char *path, unsigned int mode);
int *__errno_location(void);
]])

local O_RDONLY, O_NONBLOCK = 0, 2048


-- starts the app with its stderr on a FIFO that this spec opened for reading and does not
-- read: -> process, the reader's fd
local function start_with_fifo_stderr(src, options)
  local dir = H.app({ ["app.lua"] = H.prelude .. src })
  local fifo = dir .. "/stderr.fifo"
  assert(ffi.C.mkfifo(fifo, 384) == 0, "mkfifo")
  local rfd = ffi.C.open(fifo, O_RDONLY + O_NONBLOCK, 0)
  assert(rfd >= 0, "open fifo")
  local cmd = "exec '" .. H.bin .. "' --control " .. dir .. "/control.sock " .. table.concat(options or {}, " ")
    .. " " .. dir .. "/app.lua 2>" .. fifo
  local p = H.spawn({ "/bin/sh", "-c", cmd }, { dir = dir })
  return p, rfd
end


-- reads what the FIFO holds now (at most max bytes): -> string
local function drain(fd, max)
  local buf = ffi.new("char[65536]")
  local parts, n = {}, 0
  while n < (max or math.huge) do
    local r = tonumber(ffi.C.read(fd, buf, 65536))
    if r <= 0 then
      break
    end
    parts[#parts + 1] = ffi.string(buf, r)
    n = n + r
  end
  return table.concat(parts)
end


describe("log output", function()
  after_each(function()
    H.cleanup()
  end)

  it("never stalls the master on a full stderr: requests are served, lines dropped and counted", function()
    local port = H.free_port()
    local p, rfd = start_with_fifo_stderr(([[
      local http = require("luacluster.http")
      if cluster.is_master then
        cluster.setup{ workers = 1 }
      else
        http.create_server(function() return 200, {}, "ok" end):listen(%d)
        local noise = "noise " .. string.rep("x", 200) .. "\n"
        timer.every(2, function()
          for _ = 1, 20 do io.stderr:write(noise) end
        end)
      end
    ]]):format(port))
    -- serving, then long enough for the worker's noise to fill the pipe many times over
    local body = H.wait_for(function()
      drain(rfd)
      local b = H.curl("http://127.0.0.1:" .. port .. "/")
      return b == "ok" and b
    end, 10000, 100)
    assert.equal("ok", body)
    H.sleep(800)
    -- nobody reads stderr now: the master must still accept and dispatch
    local served = 0
    for _ = 1, 20 do
      local b, status = H.curl("http://127.0.0.1:" .. port .. "/", "-m 3")
      if status ~= 200 or b ~= "ok" then
        break
      end
      served = served + 1
    end
    assert.equal(20, served)
    -- the reader takes the lines again: they flow, preceded by the count of those dropped
    local tail, dropped = "", nil
    local deadline = H.now() + 10000
    while not dropped and H.now() < deadline do
      local seen = tail .. drain(rfd, 4194304)
      tail = seen:sub(-65536)
      dropped = seen:match("%[master%] [%d%-T:%.Z]+ warn: (%d+) log lines dropped: stderr did not take them in time\n")
      H.sleep(20)
    end
    assert.truthy(dropped, "no drop count on stderr; the last bytes read: " .. tail:sub(-500))
    assert.is_true(tonumber(dropped) > 0)
    assert.truthy(tail:find("[worker 1] noise xxx", 1, true), tail:sub(-500))
    p:stop()
    ffi.C.close(rfd)
  end)

  it("keeps stderr's bound after a big stdout backlog: past it lines are dropped and counted", function()
    -- stdout's queue (16 MB bound) holds 8 MB while nobody reads it; once read, the writer keeps
    -- that buffer as its spare and hands it to stderr's queue (256 KB bound) when it takes
    -- stderr's lines: the bound must hold all the same
    local dir = H.app({ ["app.lua"] = H.prelude .. [[
      local log = require("luacluster.lib.log")
      cluster.setup({ workers = 0 })
      local dir = debug.getinfo(1, "S").source:match("^@(.*)/")
      local line = string.rep("x", 1023) .. "\n"
      local function exists(p) local f = io.open(p) if f then f:close() return true end end
      for _ = 1, 8192 do log.write(1, line) end
      local stage = 0
      timer.every(50, function()
        if stage == 0 and exists(dir .. "/go") then
          stage = 1
          log.write(2, string.rep(line, 70))   -- fills the pipe: the writer waits on it
          timer.after(1000, function()
            for _ = 1, 4096 do log.write(2, line) end
            io.open(dir .. "/queued", "w"):close()   -- (not on stdout: the writer waits on stderr)
          end)
        elseif stage == 1 and exists(dir .. "/go2") then
          stage = 2
          log.write(2, "after\n")              -- room again: the drop count comes first
        end
      end)
    ]] })
    local fds = {}
    for _, name in ipairs({ "out", "err" }) do
      local fifo = dir .. "/" .. name .. ".fifo"
      assert(ffi.C.mkfifo(fifo, 384) == 0, "mkfifo")
      fds[name] = ffi.C.open(fifo, O_RDONLY + O_NONBLOCK, 0)
      assert(fds[name] >= 0, "open fifo")
    end
    local cmd = "exec '" .. H.bin .. "' --control " .. dir .. "/control.sock " .. dir .. "/app.lua >"
      .. dir .. "/out.fifo 2>" .. dir .. "/err.fifo"
    local p = H.spawn({ "/bin/sh", "-c", cmd }, { dir = dir })
    -- stdout: all 8 MB, read now
    local out = ""
    local stdout_bytes = 0
    assert.truthy(H.wait_for(function()
      local got = drain(fds.out)
      stdout_bytes = stdout_bytes + #got
      return stdout_bytes >= 8192 * 1024
    end, 30000, 20), "stdout bytes read: " .. stdout_bytes)
    local err = drain(fds.err)
    H.write_file(dir .. "/go", "")
    -- stderr is not read until all 70 + 4096 lines were queued
    assert.truthy(H.wait_for(function()
      out = out .. drain(fds.out)
      local f = io.open(dir .. "/queued")
      return f and f:close()
    end, 30000, 50), "the app did not queue its lines: " .. #out .. " more bytes on stdout")
    H.write_file(dir .. "/go2", "")
    local dropped = H.wait_for(function()
      err = err .. drain(fds.err)
      return err:match("%[master%] [%d%-T:%.Z]+ warn: (%d+) log lines dropped: stderr did not take them in time\n")
    end, 30000, 20) -- (a loaded machine: the app's 50 ms timer and the writer's thread both wait for a CPU)
    local lines = select(2, err:gsub(string.rep("x", 1023) .. "\n", ""))
    -- 70 lines, then at most 256 KB queued and a pipe's worth (64 KB) in flight
    assert.is_true(lines <= 70 + 256 + 70, lines .. " lines of 1 KB reached stderr")
    assert.truthy(dropped, "no drop count on stderr (" .. lines .. " lines of 1 KB)")
    assert.is_true(tonumber(dropped) >= 4096 - 256 - 70, "dropped: " .. dropped)
    p:stop()
    ffi.C.close(fds.out)
    ffi.C.close(fds.err)
  end)

  it("wraps every line a worker prints in JSON mode: a printed record cannot pass for the master's", function()
    local forged = '{"time":"2024-05-01T12:00:00.000Z","process":"master","pid":1,"level":"error","msg":"forged"}'
    local p = H.start_app(([[
      if cluster.is_master then
        cluster.setup{ workers = 1 }
        timer.after(500, function() cluster.stop() end)
      else
        local forged = %q
        io.stdout:write(forged, "\n")       -- a string a client sent, printed by an app
        io.stderr:write(forged, "\n")
        io.stderr:write('warn: "level from stderr"\n')
        io.stdout:write('error: "not a level on stdout"\n')
        io.stdout:flush()
        require("luacluster.lib.log").warn("the worker's own line")
      end
    ]]):format(forged), { "--log-format", "json" })
    assert.equal(0, (p:wait(10000)), p:output())
    local records = {}
    for _, text in ipairs({ p:stdout(), p:stderr() }) do
      for line in text:gmatch("[^\n]+") do
        local r = json.decode(line)
        assert.is_table(r, "not a JSON line: " .. line)
        records[#records + 1] = r
      end
    end
    local wrapped = {}
    for _, r in ipairs(records) do
      assert.is_not.equal("forged", r.msg, "a forged record passed: " .. json.encode(r))
      if r.msg == forged then
        wrapped[#wrapped + 1] = r
        assert.equal("worker", r.process)
        assert.equal(1, r.worker)
        assert.is_number(r.pid)
        assert.is_nil(r.level)
      end
    end
    assert.equal(2, #wrapped, p:output())
    local streams = { wrapped[1].stream, wrapped[2].stream }
    table.sort(streams)
    assert.same({ "stderr", "stdout" }, streams)
    local function find(msg)
      for _, r in ipairs(records) do
        if r.msg == msg then return r end
      end
    end
    -- the worker's own line keeps its level; a level is only taken from the worker's stderr
    local own = find("the worker's own line")
    assert.truthy(own, p:output())
    assert.same({ "worker", 1, "warn" }, { own.process, own.worker, own.level })
    assert.equal("warn", (find("level from stderr") or {}).level)
    local printed = find('error: "not a level on stdout"')
    assert.truthy(printed, p:output())
    assert.is_nil(printed.level)
    assert.equal("stdout", printed.stream)
  end)

  it("wraps every line the master prints in JSON mode, one record each", function()
    local forged = '{"time":"2024-05-01T12:00:00.000Z","process":"master","pid":1,"level":"error","msg":"forged"}'
    local p = H.start_app(([[
      if cluster.is_master then
        cluster.setup{ workers = 0 }
        print(%q)                          -- a string a client sent, printed by the master
        print("two\nlines", 3)
      end
    ]]):format(forged), { "--log-format", "json" })
    assert.equal(0, (p:wait(10000)), p:output())
    local msgs = {}
    for line in p:stdout():gmatch("[^\n]+") do
      local r = json.decode(line)
      assert.is_table(r, "not a JSON line: " .. line)
      assert.same({ "master", "stdout" }, { r.process, r.stream })
      assert.is_number(r.pid)
      assert.is_nil(r.level)
      msgs[#msgs + 1] = r.msg
    end
    assert.same({ forged, "two", "lines\t3" }, msgs)
  end)
end)
