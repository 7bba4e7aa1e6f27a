-- Integration specs of the command line: options, errors an operator sees, check, help,
-- version, and how an app finds its own modules and arguments.
local H = require("helper")


-- runs the binary to its end: -> stdout, stderr, exit code
local function run(args, opts)
  local argv = { H.bin }
  for _, a in ipairs(args) do
    argv[#argv + 1] = tostring(a)
  end
  local p = H.spawn(argv, opts)
  local code, sig = p:wait(10000)
  if code == nil and sig == nil then
    p:stop()
    error("luacluster did not exit: " .. table.concat(argv, " ") .. "\n" .. p:output())
  end
  return p:stdout(), p:stderr(), code
end


local function one_line(s)
  return s:match("^[^\n]+\n$") ~= nil
end


describe("command line", function()
  after_each(function()
    H.cleanup()
  end)

  it("prints its version", function()
    local out, err, code = run({ "--version" })
    assert.equal(0, code)
    assert.matches("^luacluster %d+%.%d+%.%d+", out)
    assert.equal("", err)
  end)

  it("prints its usage with --help and -h", function()
    for _, flag in ipairs({ "--help", "-h" }) do
      local out, _, code = run({ flag })
      assert.equal(0, code)
      assert.matches("usage: luacluster [options] app.lua", out, 1, true)
      for _, word in ipairs({ "--workers", "--mode", "--port", "--watch", "--control", "reload", "status", "stop", "check", "nginx-conf" }) do
        assert.matches(word, out, 1, true)
      end
    end
  end)

  it("refuses an unknown option with one line on stderr", function()
    local dir = H.app({ ["app.lua"] = "print('ran')" })
    local out, err, code = run({ "--frobnicate", dir .. "/app.lua" })
    assert.not_equal(0, code)
    assert.is_true(one_line(err), err)
    assert.matches("unknown option '--frobnicate'", err, 1, true)
    assert.equal("", out)
  end)

  it("refuses bad option values with one line on stderr", function()
    local dir = H.app({ ["app.lua"] = "print('ran')" })
    for _, args in ipairs({ { "-w", "many" }, { "-w", "-1" }, { "--port", "70000" }, { "-m", "magic" }, { "-w" } }) do
      local argv = { unpack(args) }
      if #args > 1 then argv[#argv + 1] = dir .. "/app.lua" end
      local out, err, code = run(argv)
      assert.not_equal(0, code, table.concat(args, " "))
      assert.is_true(one_line(err), err)
      assert.not_matches("ran", out)
    end
  end)

  it("refuses a missing app file with one line on stderr", function()
    local out, err, code = run({ "/nonexistent/dir/app.lua" })
    assert.not_equal(0, code)
    assert.is_true(one_line(err), err)
    assert.matches("/nonexistent/dir/app.lua", err, 1, true)
    assert.equal("", out)
  end)

  it("says that a command comes first when it follows an option (luacluster --control PATH stop)", function()
    local ctl = H.tmpdir() .. "/control.sock"
    for _, c in ipairs({ { "--control", ctl, "stop" }, { "--control", ctl, "status", "--json" }, { "-w", "2", "nginx-conf", "app.lua" } }) do
      local out, err, code = run(c)
      assert.not_equal(0, code, table.concat(c, " "))
      assert.is_true(one_line(err), err)
      assert.matches("'" .. c[3] .. "' is a command: it comes first (luacluster " .. c[3] .. " ", err, 1, true)
      assert.not_matches("cannot open", err)
      assert.equal("", out)
    end
  end)

  it("refuses a missing app argument with one line on stderr", function()
    local _, err, code = run({ "-w", "2" })
    assert.not_equal(0, code)
    assert.is_true(one_line(err), err)
  end)

  it("exits non-zero with file:line on a syntax error, before any worker starts", function()
    local dir = H.app({ ["app.lua"] = "local x = 1\nprint('top')\nlocal = oops\n" })
    local out, err, code = run({ "-w", "2", dir .. "/app.lua" })
    assert.not_equal(0, code)
    assert.matches(dir .. "/app.lua:3:", err, 1, true)
    assert.not_matches("[worker", out .. err, 1, true)
    assert.not_matches("top", out)
  end)

  it("exits non-zero with one line (file:line: reason, no traceback) when the master's top level raises", function()
    local dir = H.app({ ["app.lua"] = "local cluster = require('luacluster.cluster')\nerror('master cannot start')\n" })
    local out, err, code = run({ "-w", "2", dir .. "/app.lua" })
    assert.not_equal(0, code)
    assert.equal("luacluster: " .. dir .. "/app.lua:2: master cannot start\n", err)
    assert.not_matches("[worker", out .. err, 1, true)
  end)

  describe("check", function()
    it("exits 0 for an app that loads, without running it", function()
      local dir = H.app({ ["app.lua"] = "print('ran')\n" })
      local out, err, code = run({ "check", dir .. "/app.lua" })
      assert.equal(0, code, err)
      assert.not_matches("ran", out)
      assert.matches("ok", out)
    end)

    it("exits non-zero with file:line for a syntax error", function()
      local dir = H.app({ ["app.lua"] = "print('a')\n\nfunction (\n" })
      local out, err, code = run({ "check", dir .. "/app.lua" })
      assert.not_equal(0, code)
      assert.matches("app.lua:3:", err, 1, true)
      assert.not_matches("ran", out)
    end)

    it("exits non-zero for a missing file", function()
      local _, err, code = run({ "check", "/nonexistent/app.lua" })
      assert.not_equal(0, code)
      assert.is_true(one_line(err), err)
    end)

    it("reports with file:line a require of a module that the app would not find, without running it", function()
      local dir = H.app({
        ["app.lua"] = table.concat({
          "local cluster = require('luacluster.cluster')",   -- 1: the binary's own
          "local core, ffi = require('luacluster.core'), require 'ffi'",
          "local mine = require('lib.helpers')",              -- 3: the app's own, followed
          "-- require('commented_out')",
          "local s = \"require('in_a_string')\"",
          "local ok = pcall(require, 'optional_dep')",         -- 6: not a literal require call
          "local name = 'x'",
          "local dyn = pcall(function() return require('dyn.' .. name) end)",
          "io.stdout:write('ran\\n')",
          "if cluster.is_worker then",
          "  local json = require('jsonn')",                    -- 11: the typo
          "end",
          "",
        }, "\n"),
        ["lib/helpers.lua"] = "local M = {}\n--[==[ require('no') ]==]\n\nM.t = require([[luacluster.timerr]])\nreturn M\n",
      })
      local out, err, code = run({ "check", dir .. "/app.lua" })
      assert.not_equal(0, code)
      assert.matches("app.lua:11: module 'jsonn' not found", err, 1, true)
      assert.matches("lib/helpers.lua:4: module 'luacluster.timerr' not found", err, 1, true)
      for _, name in ipairs({ "commented_out", "in_a_string", "optional_dep", "dyn.", "'no'", "luacluster.core", "ffi" }) do
        assert.not_matches(name, err, 1, true)
      end
      assert.not_matches("ran", out, 1, true)
      -- fixed, it passes; an own module that does not compile is a file:line too
      H.write_file(dir .. "/app.lua", "local mine = require('lib.helpers')\nlocal cluster = require('luacluster.cluster')\n")
      H.write_file(dir .. "/lib/helpers.lua", "return { t = require('luacluster.timer') }\n")
      out, err, code = run({ "check", dir .. "/app.lua" })
      assert.equal(0, code, err)
      assert.matches("ok", out, 1, true)
      H.write_file(dir .. "/lib/helpers.lua", "return {\n  oops oops\n}\n")
      out, err, code = run({ "check", dir .. "/app.lua" })
      assert.not_equal(0, code)
      assert.matches("lib/helpers.lua:2:", err, 1, true)
    end)

    it("only notes a missing module when the app changes package.path itself", function()
      local dir = H.app({ ["app.lua"] = "package.path = './vendor/?.lua;' .. package.path\nlocal x = require('vendored')\n" })
      local out, err, code = run({ "check", dir .. "/app.lua" })
      assert.equal(0, code, err)
      assert.matches("ok", out, 1, true)
      assert.matches("note: [^\n]*app.lua:2: module 'vendored'", err)
    end)
  end)

  it("finds modules beside the app, in the master and in workers, from any working directory", function()
    local dir = H.app({
      ["app.lua"] = H.prelude .. [[
        local util = require("util")
        local deep = require("lib.deep")
        if cluster.is_master then
          say("master", util.name, deep.name)
          cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
        else
          cluster.worker:send("worker " .. util.name .. " " .. deep.name)
        end
      ]],
      ["util.lua"] = "return { name = 'util-from-app-dir' }\n",
      ["lib/deep.lua"] = "return { name = 'deep-from-app-dir' }\n",
    })
    for _, case in ipairs({ { cwd = "/", app = dir .. "/app.lua" }, { cwd = dir .. "/lib", app = "../app.lua" } }) do
      local p = H.start(case.app, { "-w", 1 }, { cwd = case.cwd, dir = H.tmpdir() })
      assert.equal(0, (p:wait(10000)), p:output())
      assert.matches("master util-from-app-dir deep-from-app-dir", p:output(), 1, true)
      assert.matches("worker util-from-app-dir deep-from-app-dir", p:output(), 1, true)
    end
  end)

  it("passes the script's arguments (options after app.lua included) to master and workers", function()
    local p = H.start_app([[
      local a = process.argv
      local line = string.format("%s %s %s %s %s", tostring(a[0]):match("[^/]*$"), tostring(a[1]),
        tostring(a[2]), tostring(a[3]), tostring(arg and arg[1]))
      if cluster.is_master then
        say("master", line)
        cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
      else
        cluster.worker:send("worker " .. line)
      end
    ]], { "--workers=1" }, { args = { "one", "-w", "3" } })
    assert.equal(0, (p:wait(10000)))
    assert.matches("master app.lua one -w 3 one", p:output(), 1, true)
    assert.matches("worker app.lua one -w 3 one", p:output(), 1, true)
    assert.equal(1, p:count("worker app.lua", true))
  end)

  describe("stop", function()
    it("prints stopped only once the master's process is gone, not when its control connection ends", function()
      -- a master that is still busy after its control connection has ended: once its worker has
      -- gone, it shuts its sockets down (as a master may lose them while it exits), and it still
      -- ends a child that ignores SIGTERM (SIGKILL after a grace period) before exiting itself
      local dir = H.app({ ["app.lua"] = H.prelude .. [[
local ffi = require("ffi")
ffi.cdef("int shutdown(int fd, int how);")
local cp = require("luacluster.child_process")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cp.spawn("/bin/sh", { "-c", "trap '' TERM; sleep 5" }, { stdio = "ignore" })
  cluster.on("exit", function()
    for fd = 3, 255 do ffi.C.shutdown(fd, 2) end
  end)
  cluster.on("online", function() say("up") end)
end
]] })
      local ctl = H.tmpdir() .. "/control.sock"
      local p = H.start(dir .. "/app.lua", { "--control", ctl })
      assert.truthy(p:wait_output("up", 8000), p:output())
      local out, rc = H.sh(H.bin .. " stop --control " .. ctl)
      local alive = H.pid_alive(p.pid)
      assert.equal(0, rc, out)
      assert.matches("stopped", out, 1, true)
      assert.is_false(alive, "the master still runs after `stopped`")
      assert.equal(0, (p:wait(5000)))
    end)
  end)
end)
