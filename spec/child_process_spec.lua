-- Integration specs of child_process.spawn / exec / exec_file: a luacluster app (setup{workers=0}
-- unless said otherwise) runs them with the real binary and prints what it sees; the spec
-- reads its output and looks at /proc for children left behind.
local H = require("helper")

local PRELUDE = 'local cp = require("luacluster.child_process")\n'

-- Runs src as a master-only app (it must end with cluster.stop() or process.exit); returns
-- the process once it has exited, and its output.
local function run(src, options, opts)
  local p = H.start_app(PRELUDE .. "cluster.setup({ workers = 0 })\n" .. src, options, opts)
  local code, sig = p:wait(opts and opts.wait_ms or 15000)
  local out = p:output()
  p:stop() -- and whatever the app left in its process group (a grandchild)
  assert(code == 0, "app exited with " .. tostring(code) .. " / " .. tostring(sig) .. ":\n" .. out)
  return p, out
end


local function line(out, key)
  return out:match("\n" .. key .. " ([^\n]*)") or ("\n" .. out):match("\n" .. key .. " ([^\n]*)")
end


local function alive_pids(list)
  local alive = {}
  for _, pid in ipairs(list) do
    if H.pid_alive(pid) then
      alive[#alive + 1] = pid
    end
  end
  return alive
end


describe("child_process.spawn", function()
  after_each(function()
    H.cleanup()
  end)

  it("pipes stdin, stdout and stderr and reports the exit code", function()
    local _, out = run([[
      local c = assert(cp.spawn("sh", { "-c", "cat; echo to-err >&2; exit 3" }))
      say("pid", type(c.pid), c.pid > 0)
      local got, goterr = {}, {}
      c.stdout:on("data", function(d) got[#got + 1] = d end)
      c.stderr:on("data", function(d) goterr[#goterr + 1] = d end)
      c:on("exit", function(code, signal)
        say("exit", code, signal)
      end)
      c:on("close", function()
        say("stdout", (table.concat(got):gsub("\n", "|")))
        say("stderr", (table.concat(goterr):gsub("\n", "|")))
        cluster.stop()
      end)
      assert(c.stdin:write("hello "))
      assert(c.stdin:write("world\n"))
      c.stdin:close()
    ]])
    assert.equal("number true", line(out, "pid"))
    assert.equal("3 nil", line(out, "exit"))
    assert.equal("hello world|", line(out, "stdout"))
    assert.equal("to-err|", line(out, "stderr"))
  end)

  it("kills with SIGTERM by default and reports the signal by name", function()
    local _, out = run([[
      local c = assert(cp.spawn("sleep", { "30" }))
      local n = 0
      c:on("exit", function(code, signal)
        n = n + 1
        say("exit", code, signal, c:kill())
        timer.after(100, function()
          say("exits", n)
          local d = assert(cp.spawn("sleep", { "30" }))
          d:on("exit", function(code2, signal2)
            say("exit2", code2, signal2)
            cluster.stop()
          end)
          say("kill2", d:kill("SIGKILL"))
        end)
      end)
      say("kill", c:kill())
      say("bad signal", pcall(c.kill, c, "SIGNOPE") == false)
    ]])
    assert.equal("true", line(out, "kill"))
    assert.equal("nil SIGTERM nil ESRCH: the child has exited", line(out, "exit"))
    assert.equal("1", line(out, "exits"))
    assert.equal("true", line(out, "kill2"))
    assert.equal("nil SIGKILL", line(out, "exit2"))
    assert.equal("signal true", line(out, "bad"))
  end)

  it("returns nil, err with ENOENT for a file that cannot be started", function()
    local _, out = run([[
      local c, err = cp.spawn("/no/such/program", { "x" })
      say("missing", c, err)
      local c2, err2 = cp.spawn("no-such-program-on-path")
      say("missing2", c2, err2)
      local c3, err3 = cp.spawn("sh", { "-c", "true" }, { cwd = "/no/such/dir" })
      say("badcwd", c3, err3)
      local f = io.open("/tmp/lc-notexec-" .. process.pid, "w") f:write("x\n") f:close()
      local c4, err4 = cp.spawn("/tmp/lc-notexec-" .. process.pid)
      os.remove("/tmp/lc-notexec-" .. process.pid)
      say("notexec", c4, err4)
      cluster.stop()
    ]])
    assert.matches("^nil .*ENOENT", line(out, "missing"))
    assert.matches("^nil .*ENOENT", line(out, "missing2"))
    assert.matches("^nil .*ENOENT", line(out, "badcwd"))
    assert.matches("^nil .*EACCES", line(out, "notexec"))
  end)

  it("takes cwd, env, and stdio inherit / ignore", function()
    local p, out = run([[
      local c = assert(cp.spawn("sh", { "-c", "pwd; echo \"$FOO-$HOME\"" }, { cwd = "/tmp", env = { FOO = "bar" } }))
      local got = {}
      c.stdout:on("data", function(d) got[#got + 1] = d end)
      c:on("close", function()
        say("out", (table.concat(got):gsub("\n", "|")))
        local i = assert(cp.spawn("sh", { "-c", "echo inherited-line; echo inherited-err >&2" }, { stdio = "inherit" }))
        say("inherit streams", i.stdin, i.stdout, i.stderr)
        i:on("exit", function()
          local g = assert(cp.spawn("sh", { "-c", "echo ignored-line" }, { stdio = "ignore" }))
          g:on("exit", function(code)
            say("ignored exit", code)
            cluster.stop()
          end)
        end)
      end)
    ]])
    assert.equal("/tmp|bar-|", line(out, "out"))
    assert.equal("nil nil nil", line(out, "inherit streams"))
    assert.matches("inherited-line\n", p:stdout(), 1, true)
    assert.matches("inherited-err\n", p:stderr(), 1, true)
    assert.is_nil(out:find("ignored-line", 1, true))
    assert.equal("0", line(out, "ignored exit"))
  end)

  it("raises on a programming mistake", function()
    local _, out = run([[
      say("nofile", pcall(cp.spawn, nil))
      say("badargs", pcall(cp.spawn, "ls", "notatable"))
      say("badopt", pcall(cp.spawn, "ls", {}, { nope = true }))
      say("badstdio", pcall(cp.spawn, "ls", {}, { stdio = "bogus" }))
      cluster.stop()
    ]])
    for _, k in ipairs({ "nofile", "badargs", "badopt", "badstdio" }) do
      assert.matches("^false ", line(out, k))
    end
  end)
end)


describe("child_process stdin", function()
  after_each(function()
    H.cleanup()
  end)

  it("closes at send_timeout when the child never reads what close() waits to send", function()
    local _, out = run([[
      local core = require("luacluster.core")
      local c = assert(cp.spawn("sleep", { "30" }, { send_timeout = 300 }))
      assert(c.stdin:write(string.rep("x", 1048576)))  -- far more than a pipe holds
      local t0 = core.now()
      local guard = timer.after(4000, function()
        say("stdin closed", false)
        c:kill("SIGKILL")
      end)
      c.stdin:on("close", function()
        guard:stop()
        say("stdin closed", core.now() - t0 < 3500, c._exited)
        c:kill("SIGKILL")
      end)
      c:on("close", function() cluster.stop() end)
      c.stdin:close()
    ]])
    assert.equal("true false", line(out, "stdin closed"))
  end)

  it("refuses a bad send_timeout", function()
    local _, out = run([[
      say("bad", (pcall(cp.spawn, "true", {}, { send_timeout = -1 })))
      cluster.stop()
    ]])
    assert.equal("false", line(out, "bad"))
  end)
end)


describe("core.spawn failing half-way", function()
  after_each(function()
    H.cleanup()
  end)

  it("frees its line forwarders, args and env on every error path", function()
    local _, out = run([[
      local core = require("luacluster.core")
      local function fds()
        local n = 0
        local ls = io.popen("ls /proc/" .. core.pid() .. "/fd")
        for _ in ls:lines() do n = n + 1 end
        ls:close()
        return n
      end
      local fwd = { prefix = "[x] ", fd = 1 }
      local CASES = {
        { stdio = { "ignore", fwd, fwd } },                            -- the program is missing
        { stdio = { "ignore", fwd, { fd = 2 } } },                     -- a forwarder without a prefix
        { stdio = { "ignore", fwd, 42 } },                             -- a bad stdio entry
        { stdio = { "ignore", fwd, fwd }, cwd = "/nonexistent/cwd" },  -- a cwd that is not there
        { stdio = { "ignore", fwd, fwd }, env = { "A=1", {} } },       -- an env entry that is not a string
      }
      -- each case 200 times, then a few loop turns: what spawn closed is freed in close callbacks
      local function round()
        for _, c in ipairs(CASES) do
          for _ = 1, 200 do
            pcall(core.spawn, { file = "/nonexistent/program", args = { "a" }, env = c.env or { "A=1" },
              cwd = c.cwd, stdio = c.stdio }, function() end)
          end
          timer.sleep(20)
        end
        collectgarbage()
        timer.sleep(50)
      end
      timer.after(0, function()
        round()   -- warm up: the heap grows to what one round needs
        local rss0, fds0 = core.rss(), fds()
        for _ = 1, 4 do round() end
        say("rss growth MB", math.floor((core.rss() - rss0) / 1048576))
        say("fd growth", fds() - fds0)
        cluster.stop()
      end)
    ]], {}, {
      -- under AddressSanitizer (spec/run_sanitized) freed memory waits in a quarantine: turn it
      -- off so that the RSS shows what is kept, not what was freed lately
      env = os.getenv("ASAN_OPTIONS") and { ASAN_OPTIONS = os.getenv("ASAN_OPTIONS") .. ":quarantine_size_mb=0" },
      wait_ms = 60000,  -- 5,000 failing spawns under ASan on a loaded machine took over 15 s
    })
    -- before: three of the cases leaked a forwarder each time (a 64 KiB line buffer, a pipe handle)
    assert.is_true(tonumber(line(out, "rss growth MB")) < 6, out)
    -- a leak is one fd or more a spawn (4,000 spawns between the two counts); the count of a
    -- process whose loop is running moves by one either way with handles closing or opening
    -- between the two counts (CI saw -1 and +1), so only a growth past a few fds is a leak
    assert.is_true(math.abs(tonumber(line(out, "fd growth"))) < 10, out)
  end)
end)


describe("child_process.exec", function()
  after_each(function()
    H.cleanup()
  end)

  it("runs a command through /bin/sh with a callback", function()
    local _, out = run([[
      local c = cp.exec("echo one; echo two >&2; echo $((6*7))", function(err, stdout, stderr)
        say("ok", err, (stdout:gsub("\n", "|")), (stderr:gsub("\n", "|")))
        say("in handler", require("luacluster.lib.coro").in_handler())
        cp.exec("echo partial; exit 7", function(err2, stdout2)
          say("fail", err2.code, err2.signal, type(err2.message), (stdout2:gsub("\n", "|")))
          cp.exec("kill -KILL $$", function(err3)
            say("signal", err3.code, err3.signal)
            cp.exec("echo $PWD $FOO", { cwd = "/tmp", env = { FOO = "x" } }, function(err4, stdout4)
              say("opts", err4, stdout4)
              cluster.stop()
            end)
          end)
        end)
      end)
      say("returns child", type(c), type(c.pid))
    ]])
    assert.equal("nil one|42| two|", line(out, "ok"))
    assert.equal("true", line(out, "in handler"))
    assert.equal("7 nil string partial|", line(out, "fail"))
    assert.equal("nil SIGKILL", line(out, "signal"))
    assert.equal("nil /tmp x", line(out, "opts"))
    assert.equal("table number", line(out, "returns child"))
  end)

  it("waits inside a handler and returns stdout, stderr | nil, err, stdout, stderr", function()
    local _, out = run([[
      timer.after(0, function()
        local stdout, stderr = cp.exec("echo waited; echo e >&2")
        say("ok", (stdout:gsub("\n", "|")), (stderr:gsub("\n", "|")))
        local a, err, so, se = cp.exec("echo so; echo se >&2; exit 4")
        say("fail", a, err.code, (so:gsub("\n", "|")), (se:gsub("\n", "|")))
        local b, err2 = cp.exec_file("/no/such/file", { "a" })
        say("enoent", b, err2.code, err2.message)
        local o = cp.exec_file("printf", { "%s-%s", "$HOME", "a b" })
        say("file", o)
        cluster.stop()
      end)
    ]])
    assert.equal("waited| e|", line(out, "ok"))
    assert.equal("nil 4 so| se|", line(out, "fail"))
    assert.matches("^nil ENOENT .*ENOENT", line(out, "enoent"))
    assert.equal("$HOME-a b", line(out, "file"))
  end)

  it("raises the 'waits' error at top level without a callback", function()
    local _, out = run([[
      local ok, err = pcall(cp.exec, "true")
      say("exec", ok, err)
      local ok2, err2 = pcall(cp.exec_file, "true", {})
      say("exec_file", ok2, err2)
      cluster.stop()
    ]])
    assert.matches("^false .*waits", line(out, "exec"))
    assert.matches("^false .*waits", line(out, "exec_file"))
  end)

  it("reports ENOENT through the callback (err.code) for exec_file", function()
    local _, out = run([[
      cp.exec_file("/no/such/file", {}, function(err, stdout, stderr)
        say("cb", err.code, err.signal, stdout == "", stderr == "")
        cp.exec("true", { cwd = "/no/such/dir" }, function(err2)
          say("cwd", err2.code)
          cluster.stop()
        end)
      end)
      say("returned first")
    ]])
    assert.equal("ENOENT nil true true", line(out, "cb"))
    assert.equal("ENOENT", line(out, "cwd"))
    assert.truthy(out:find("returned first\ncb", 1, true))
  end)

  it("kills on timeout with kill_signal and returns at once, even when a grandchild holds the pipes", function()
    local _, out = run([[
      local core = require("luacluster.core")
      timer.after(0, function()
        local t0 = core.now()
        -- sleep 30 & : a grandchild that keeps stdout open after sh is killed. The timeouts
        -- leave a shell forked from an ASan worker on a loaded machine time to print first;
        -- returning "at once" means well before the grandchild's 5 s or the sleep's 30 s.
        local none, err, stdout = cp.exec("echo early; sleep 5 & sleep 30", { timeout = 1000 })
        say("timeout", none, (stdout:gsub("\n", "|")), err.signal, err.code, (err.message:find("timeout") ~= nil), (err.reason))
        say("elapsed1", core.now() - t0 < 4000)
        local a, err2, so2 = cp.exec("echo x; sleep 30", { timeout = 1000, kill_signal = "SIGKILL" })
        say("kill_signal", a, err2.signal, (so2:gsub("\n", "|")))
        cp.exec("sleep 30", { timeout = 100 }, function(err3, so3)
          say("cb timeout", err3.signal, so3 == "", core.now() - t0 < 8000)
          cluster.stop()
        end)
      end)
    ]])
    assert.equal("nil early| SIGTERM nil true timeout", line(out, "timeout"))
    assert.equal("true", line(out, "elapsed1"))
    assert.equal("nil SIGKILL x|", line(out, "kill_signal"))
    assert.equal("SIGTERM true true", line(out, "cb timeout"))
  end)

  it("ends the command's whole process group on timeout: a grandchild does not outlive it", function()
    local dir = H.tmpdir()
    local _, out = run(([[
      local function alive(pid)
        local f = io.open("/proc/" .. pid .. "/stat")
        if not f then return false end
        local st = f:read("*a")
        f:close()
        return not st:match("^%%d+ %%b() Z")
      end
      timer.after(0, function()
        local none, err = cp.exec("sleep 30 & echo $! > %s/gc.pid; sleep 30", { timeout = 1500 })
        say("exec", none, err.reason, err.killed, err.signal)
        -- the timeout leaves the shell time to write its pid file even when forked from an
        -- ASan process on a loaded machine (300 ms did not, in CI's fresh root)
        local f = io.open("%s/gc.pid")
        local pid = assert(tonumber(f:read("*a")), "the shell wrote no pid before the timeout")
        f:close()
        local t0 = require("luacluster.core").now()
        while alive(pid) and require("luacluster.core").now() - t0 < 3000 do timer.sleep(50) end
        say("grandchild", alive(pid) and "alive" or "gone")
        -- exec_file too, and after the shell itself has exited (its child holds the pipes)
        local _, err2 = cp.exec_file("sh", { "-c", "sleep 30 & echo $! > %s/gc2.pid; exit 0" }, { timeout = 1500 })
        f = io.open("%s/gc2.pid")
        local pid2 = assert(tonumber(f:read("*a")), "the shell wrote no pid before the timeout")
        f:close()
        t0 = require("luacluster.core").now()
        while alive(pid2) and require("luacluster.core").now() - t0 < 3000 do timer.sleep(50) end
        say("grandchild2", err2.reason, alive(pid2) and "alive" or "gone")
        cluster.stop()
      end)
    ]]):format(dir, dir, dir, dir))
    assert.equal("nil timeout true SIGTERM", line(out, "exec"))
    -- (the app's whole output on failure: the fresh root once lost the "grandchild" line)
    assert.equal("gone", line(out, "grandchild"), out)
    assert.equal("timeout gone", line(out, "grandchild2"), out)
  end)

  it("ends an exec's process group when the cluster stops", function()
    local dir = H.tmpdir()
    local p = H.start_app(PRELUDE .. ([[
      cluster.setup({ workers = 0 })
      cp.exec("sleep 60 & echo $! > %s/gc.pid; sleep 60", function() end)
    ]]):format(dir))
    local pid = H.wait_for(function() return tonumber(H.read_file(dir .. "/gc.pid"):match("%d+")) end, 5000)
    assert.truthy(pid)
    p:kill("SIGTERM")
    assert.equal(0, (p:wait(10000)))
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 3000), "the grandchild outlived the stop")
  end)

  it("kills when output passes max_buffer (default 1 MiB) and keeps max_buffer bytes", function()
    local _, out = run([[
      local core = require("luacluster.core")
      timer.after(0, function()
        local t0 = core.now()
        local a, err, so = cp.exec("yes", { max_buffer = 1000 })
        say("small", a, #so, err.signal, err.reason, (err.message:find("max_buffer") ~= nil))
        local b, err2, so2, se2 = cp.exec("head -c 3000000 /dev/zero >&2")
        say("default", b, #so2, #se2, err2.reason)
        local c = cp.exec("head -c 1048576 /dev/zero")
        say("exactly", #c)
        say("elapsed", core.now() - t0 < 5000)
        cluster.stop()
      end)
    ]])
    assert.equal("nil 1000 SIGTERM max_buffer true", line(out, "small"))
    assert.equal("nil 0 1048576 max_buffer", line(out, "default"))
    assert.equal("1048576", line(out, "exactly"))
    assert.equal("true", line(out, "elapsed"))
  end)

  it("feeds opts.input to the child's stdin", function()
    local _, out = run([[
      cp.exec("tr a-z A-Z", { input = "shout" }, function(err, stdout)
        say("input", err, stdout)
        cluster.stop()
      end)
    ]])
    assert.equal("nil SHOUT", line(out, "input"))
  end)
end)


describe("child_process children", function()
  after_each(function()
    H.cleanup()
  end)

  it("are all reaped: no zombie is left under the master", function()
    local p = H.start_app(PRELUDE .. [[
      cluster.setup({ workers = 0 })
      local n, total = 0, 0
      local function done()
        n = n + 1
        if n == total then
          say("all done")
        end
      end
      for i = 1, 5 do
        total = total + 3
        local c = assert(cp.spawn("sh", { "-c", "echo " .. i }))
        c:on("exit", done)
        cp.exec("exit " .. (i % 2), function() done() end)
        cp.exec("sleep 10", { timeout = 50 }, function() done() end)
      end
      timer.every(1000, function() end) -- stay up for the spec to look
    ]])
    assert.truthy(p:wait_output("all done", 10000, true))
    local children = H.wait_for(function()
      local list = H.children(p.pid)
      return #list == 0 and list
    end, 5000)
    assert.same({}, children or H.children(p.pid))
    assert.equal(0, (p:stop(5000)))
  end)

  it("end with the cluster: a stop kills every child but the detached ones", function()
    local p = H.start_app(PRELUDE .. [[
      cluster.setup({ workers = 0 })
      local a = assert(cp.spawn("sleep", { "60" }))
      local b = assert(cp.spawn("sh", { "-c", "trap '' TERM; while :; do sleep 0.2; done" }, { stdio = "ignore" }))
      local d = assert(cp.spawn("sleep", { "60" }, { detached = true, stdio = "ignore" }))
      local f = assert(cp.exec("sleep 60", function() end))
      say("pids", a.pid, b.pid, d.pid, f.pid)
    ]])
    local pids = p:wait_output("pids ([%d ]+)\n", 5000)
    assert.truthy(pids)
    local list = {}
    for pid in pids:gmatch("%d+") do
      list[#list + 1] = tonumber(pid)
    end
    H.sleep(200)
    local t0 = H.now()
    p:kill("SIGTERM")
    local code = p:wait(10000)
    assert.equal(0, code)
    assert.truthy(H.now() - t0 < 6000)
    local detached = table.remove(list, 3)
    assert.same({}, H.wait_for(function()
      local alive = alive_pids(list)
      return #alive == 0 and alive
    end, 3000) or alive_pids(list))
    assert.truthy(H.pid_alive(detached))
    H.sh("kill -9 " .. detached)
    p:stop()
  end)

  it("started by a worker end when cluster.stop() drains it", function()
    local p = H.start_app(PRELUDE .. [[
      if cluster.is_master then
        cluster.on("message", function(w, msg)
          say("pid", msg)
          timer.after(200, function() cluster.stop() end)
        end)
      else
        local c = assert(cp.spawn("sleep", { "60" }))
        cluster.worker:send(c.pid)
      end
    ]], { "-w", 1 })
    local pid = tonumber(p:wait_output("pid (%d+)", 5000))
    assert.truthy(pid)
    assert.equal(0, (p:wait(10000)))
    assert.truthy(H.wait_for(function() return not H.pid_alive(pid) end, 3000))
  end)
end)


describe("examples/shell_tools", function()
  after_each(function()
    H.cleanup()
  end)

  it("runs programs from HTTP handlers in the waiting form, with a timeout", function()
    local port = H.free_port()
    local p = H.start(H.root .. "/examples/shell_tools/app.lua", { "-w", 1, "-p", port }, { dir = H.tmpdir() })
    local body = H.wait_for(function()
      local b, status = H.curl("http://127.0.0.1:" .. port .. "/")
      return status == 200 and b
    end, 5000)
    assert.matches("tools: ", body or p:output(), 1, true)
    local kernel, status = H.curl("http://127.0.0.1:" .. port .. "/kernel")
    assert.equal(200, status)
    assert.matches("^Linux ", kernel)
    local wc, status2 = H.curl("http://127.0.0.1:" .. port .. "/wc", "--data-binary 'one two three'")
    assert.equal(200, status2)
    assert.equal("3 words\n", wc)
    local t0 = H.now()
    local slow, status3 = H.curl("http://127.0.0.1:" .. port .. "/slow")
    assert.equal(504, status3)
    assert.matches("started\n", slow, 1, true)
    assert.truthy(H.now() - t0 < 3000)
    assert.equal(0, (p:stop(8000)))
  end)
end)
