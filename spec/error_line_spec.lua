-- The app's errors that end a start or a reload, one line each (#13 §7): the real reason and its
-- file:line, without require's search list or a traceback through the library's own files
-- (error_line.lua), for a missing module and a syntax error in a module, required at the app's
-- top level (run in the master) or in the worker branch; the same line in status's last error,
-- and a JSON record under --log-format json.
local H = require("helper")

local MASTER = 'if cluster.is_master then cluster.setup({ workers = 1 }) end\n'
local BROKEN = "local M = {}\nfunction M.f() end end\nreturn M\n" -- line 2: '<eof>' expected near 'end'

-- the four apps; "TOP" requires in the master (every process runs it), "WORKER" in the worker branch
local APPS = {
  top_missing = MASTER .. 'local u = require("chatutil")\n',
  top_syntax = MASTER .. 'local u = require("chatfmt")\n',
  worker_missing = MASTER .. 'if cluster.is_worker then\n  local u = require("chatutil")\nend\n',
  worker_syntax = MASTER .. 'if cluster.is_worker then\n  local u = require("chatfmt")\nend\n',
}
local GOOD = MASTER .. 'if cluster.is_worker then require("luacluster.net") end\n'


local function expected(case, dir)
  local app, fmt = dir .. "/app.lua", dir .. "/chatfmt.lua"
  local syntax = fmt .. ":2: '<eof>' expected near 'end' (loading module 'chatfmt')"
  return ({
    top_missing = app .. ":6: module 'chatutil' not found",
    top_syntax = syntax,
    worker_missing = app .. ":7: module 'chatutil' not found",
    worker_syntax = syntax,
  })[case]
end


-- stderr without the master's own log lines ("[master] ... info: worker 1 ... started")
local function own(s)
  local out = {}
  for l in s:gmatch("[^\n]*\n") do
    if not l:find("^%[master%] ") and not l:find('"level":"info"', 1, true) then
      out[#out + 1] = l
    end
  end
  return table.concat(out), #out
end


local function start(src, options)
  local opts = { files = { ["chatfmt.lua"] = BROKEN } }
  local dir = H.tmpdir()
  opts.dir = dir
  local p, appdir = H.start_app(src, options or { "-p", H.free_port() }, opts)
  return p, appdir
end


describe("an app's error at a fresh start", function()
  after_each(function()
    H.cleanup()
  end)

  for _, case in ipairs({ "top_missing", "top_syntax", "worker_missing", "worker_syntax" }) do
    it("is one line with the reason and its file:line (" .. case .. ")", function()
      local p, dir = start(APPS[case])
      assert.equal(1, (p:wait(10000)))
      local err, n = own(p:stderr())
      local want = case:match("^worker") and ("luacluster: worker 1 failed to boot: " .. expected(case, dir))
        or ("luacluster: " .. expected(case, dir))
      assert.equal(want .. "\n", err)
      assert.equal(1, n)
    end)
  end

  it("is a JSON record (level error, process master) under --log-format json", function()
    for _, case in ipairs({ "top_missing", "worker_syntax" }) do
      local p, dir = start(APPS[case], { "--log-format", "json", "-p", H.free_port() })
      assert.equal(1, (p:wait(10000)))
      local err, n = own(p:stderr())
      assert.equal(1, n, err)
      local json = require("dkjson")
      local rec = json.decode(err)
      assert.equal("error", rec.level)
      assert.equal("master", rec.process)
      local want = case:match("^worker") and ("worker 1 failed to boot: " .. expected(case, dir)) or expected(case, dir)
      assert.equal(want, rec.msg)
    end
  end)
end)


describe("an app's error on reload", function()
  after_each(function()
    H.cleanup()
  end)

  it("is one line with the reason and its file:line, in the reply and in the master's log", function()
    local ctl = H.tmpdir() .. "/c.sock"
    local p, dir = start(GOOD, { "--control", ctl, "-p", H.free_port() })
    assert.truthy(p:wait_output("started, generation 1", 10000, true))
    -- the first worker must have read app.lua and be ready before the file changes under it
    -- (else it boots the broken code: a boot failure, not a reload)
    assert.truthy(H.wait_for(function()
      local st = H.sh(H.bin .. " status --json --control " .. ctl)
      return st:find('"state":"online"', 1, true) or st:find('"state":"listening"', 1, true)
    end, 10000, 50), p:output())
    for _, case in ipairs({ "top_missing", "top_syntax", "worker_missing", "worker_syntax" }) do
      H.write_file(dir .. "/app.lua", H.prelude .. APPS[case])
      local out, rc = H.sh(H.bin .. " reload --control " .. ctl)
      assert.equal(1, rc)
      local want = case:match("^worker") and ("new worker 1 exited with code 1 before it was ready: " .. expected(case, dir))
        or expected(case, dir)
      assert.equal("luacluster: reload failed: " .. want .. "\n", out)
      -- the reply may reach the command before the master's log line reaches this reader
      assert.truthy(p:wait_output("warn: reload refused: " .. want .. "\n", 5000, true), case .. ":\n" .. p:output())
    end
    -- no traceback, no search list in the master's log
    assert.falsy(p:output():find("stack traceback", 1, true))
    assert.falsy(p:output():find("no file '", 1, true))
    assert.equal(0, (p:stop(5000)))
  end)
end)


describe("status's last error of a crash-looping slot", function()
  after_each(function()
    H.cleanup()
  end)

  it("keeps the reason of a module's syntax error", function()
    local ctl = H.tmpdir() .. "/c.sock"
    local p, dir = start(MASTER .. [[
      if cluster.is_worker then
        local f = io.open(require("luacluster.lib.runtime").app_dir .. "/broken")
        if f then f:close() require("chatfmt") end
        cluster.worker:send(process.pid)
      else
        cluster.on("message", function(_, pid) say("worker pid", pid) end)
      end
    ]], { "--control", ctl, "-p", H.free_port() })
    local pid = tonumber(p:wait_output("worker pid (%d+)", 10000))
    assert.truthy(pid, p:output())
    H.write_file(dir .. "/broken", "")
    H.sh("kill -9 " .. pid)
    local want = "last error: " .. dir .. "/chatfmt.lua:2: '<eof>' expected near 'end' (loading module 'chatfmt')\n"
    local st
    assert.truthy(H.wait_for(function()
      st = H.sh(H.bin .. " status --control " .. ctl)
      return st:find(want, 1, true)
    end, 10000), st)
    assert.equal(0, (p:stop(5000)))
  end)
end)
