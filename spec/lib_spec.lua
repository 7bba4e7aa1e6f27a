-- The Lua library's smaller promises, against the real binary: process.on("message") where no
-- parent channel exists, load errors inside a scheduler or command module, timer.now(), the
-- caller's file:line in the error of a waiting call made at a top level.
local H = require("helper")

-- H.prelude is 4 lines: the app's own line n is app.lua:(n + 4)
local PRELUDE_LINES = select(2, H.prelude:gsub("\n", ""))


local function line_of(src, needle)
  local n = 0
  for line in (src .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(needle, 1, true) then
      return n + PRELUDE_LINES
    end
  end
  error("no line with " .. needle)
end


describe("library", function()
  after_each(function()
    H.cleanup()
  end)

  describe("process.on", function()
    it("refuses 'message' and 'disconnect' in the master and in a worker, naming the caller's line", function()
      local src = [[
local function try(event)
  local ok, err = pcall(function()
    process.on(event, function() end) -- the call
  end)
  return tostring(ok) .. " " .. tostring(err)
end
if cluster.is_master then
  say("master message:", try("message"))
  say("master disconnect:", try("disconnect"))
  say("master bogus:", try("bogus"))
  cluster.setup{ workers = 1 }
  cluster.on("message", function(w, msg) say("worker " .. msg) cluster.stop() end)
else
  cluster.worker:send("message: " .. try("message"))
end
]]
      local p = H.start_app(src, { "-w", 1 })
      assert.equal(0, (p:wait(10000)), p:output())
      local out = p:output()
      local where = "app.lua:" .. line_of(src, "-- the call") .. ": "
      assert.matches("master message: false [^\n]*" .. where .. "process.on%(\"message\"%) is only available in a process started by child_process.fork", out)
      assert.matches("master disconnect: false [^\n]*" .. where .. "process.on%(\"disconnect\"%) is only available", out)
      assert.matches("master bogus: false [^\n]*" .. where .. "process.on: unknown event 'bogus'", out)
      assert.matches("worker message: false [^\n]*" .. where .. "process.on%(\"message\"%) is only available", out)
    end)
  end)

  describe("a module that is there but does not load", function()
    local files = {
      ["luacluster/sched/broken.lua"] = "local M = {}\nlocal cfg = nil\nM.weight = cfg.weight\nreturn M\n",
      ["luacluster/sched/needy.lua"] = "return require('no_such_dep')\n",
    }

    it("is a scheduler whose own error is reported, not an unknown scheduler", function()
      local src = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 1, scheduler = arg[1] }
else
  http.create_server(function() return 200, "ok\n" end):listen(tonumber(arg[2]))
end
]]
      local port = H.free_port()
      local p = H.start_app(src, { "-w", 1 }, { files = files, args = { "broken", port } })
      assert.not_equal(0, (p:wait(10000)))
      assert.matches("scheduler 'broken' does not load: [^\n]*luacluster/sched/broken.lua:3: attempt to index local 'cfg'", p:stderr())
      assert.not_matches("unknown scheduler", p:stderr(), 1, true)
      p = H.start_app(src, { "-w", 1 }, { files = files, args = { "needy", port } })
      assert.not_equal(0, (p:wait(10000)))
      assert.matches("scheduler 'needy' does not load: module 'no_such_dep' not found", p:stderr(), 1, true)
      -- a name that no module has is still unknown
      p = H.start_app(src, { "-w", 1 }, { files = files, args = { "nosuch", port } })
      assert.not_equal(0, (p:wait(10000)))
      assert.matches("unknown scheduler 'nosuch'", p:stderr(), 1, true)
    end)

    it("is a pool.map scheduler whose own error is raised at the caller", function()
      local src = [[
local pool = require("luacluster.pool")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  timer.after(0, function()
    for _, name in ipairs({ "broken", "nosuch" }) do
      local ok, err = pcall(pool.map, { 1 }, { scheduler = name })
      say(name, ok, err)
    end
    cluster.stop()
  end)
else
  pool.handle(function(t) return t end)
end
]]
      local p = H.start_app(src, { "-w", 1 }, { files = files })
      assert.equal(0, (p:wait(10000)), p:output())
      assert.matches("broken false [^\n]*scheduler 'broken' does not load: [^\n]*broken.lua:3: attempt to index local 'cfg'", p:output())
      assert.matches("nosuch false [^\n]*unknown scheduler 'nosuch'", p:output())
    end)

    it("is a command module whose own error is reported, not 'not available in this build'", function()
      -- a copy of the library whose status command is broken (LUACLUSTER_LUA_DIR picks it)
      local lib = H.tmpdir()
      H.sh("cp -r " .. H.root .. "/lua/. " .. lib)
      H.write_file(lib .. "/luacluster/cmd_status.lua", "local dep = require('luacluster.no_such_dep')\nreturn {}\n")
      H.write_file(lib .. "/luacluster/cmd_metrics.lua", "return {\n  run = function() end\n  oops\n}\n")
      local out, rc = H.sh("LUACLUSTER_LUA_DIR=" .. lib .. " " .. H.bin .. " status --control " .. lib .. "/none.sock")
      assert.not_equal(0, rc)
      assert.matches("the 'status' command does not load: [^\n]*cmd_status.lua:1: module 'luacluster.no_such_dep' not found", out)
      out, rc = H.sh("LUACLUSTER_LUA_DIR=" .. lib .. " " .. H.bin .. " metrics --control " .. lib .. "/none.sock")
      assert.not_equal(0, rc)
      assert.matches("the 'metrics' command does not load: .*cmd_metrics.lua:3: '}' expected", out)
      assert.not_matches("not available in this build", out, 1, true)
    end)
  end)

  describe("timer.now", function()
    it("is a monotonic millisecond clock, the same in the master and the workers, that timers count on", function()
      local src = [[
local top = timer.now()
assert(type(top) == "number", "timer.now() at the top level")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("message", function(w, t)
    say("skew", math.abs(timer.now() - t) < 5000)
    cluster.stop()
  end)
else
  timer.after(0, function()
    local a = timer.now()
    timer.sleep(60)
    local b = timer.now()
    say("slept", b - a >= 60, b - a < 10000, a >= top)
    cluster.worker:send(timer.now())
  end)
end
]]
      local p = H.start_app(src, { "-w", 1 })
      assert.equal(0, (p:wait(10000)), p:output())
      assert.matches("slept true true true", p:output(), 1, true)
      assert.matches("skew true", p:output(), 1, true)
    end)

    it("is what the examples use: none reaches into luacluster.core", function()
      local out = H.sh("grep -rln 'luacluster%.core\\|luacluster\\.core' " .. H.root .. "/examples || true")
      assert.equal("", out)
    end)
  end)

  describe("a waiting call at a top level", function()
    it("raises at the app's own line, not inside the library", function()
      local src = [[
local function try(fn)
  local ok, err = pcall(fn)
  return tostring(ok) .. " " .. tostring(err)
end
if cluster.is_master then
  say("master sleep:", try(function() timer.sleep(10) end)) -- master sleep
  say("master module:", try(function() require("waits_on_load") end))
  cluster.setup{ workers = 1 }
  cluster.on("message", function(w, msg) say(msg) cluster.stop() end)
else
  local a = try(function() cluster.worker:request("hi", 1000) end) -- worker request
  local b = try(function() timer.sleep(10) end) -- worker sleep
  cluster.worker:send("worker request: " .. a .. "\nworker sleep: " .. b)
end
]]
      local mod = "local timer = require('luacluster.timer')\nlocal M = {}\ntimer.sleep(5) -- module sleep\nreturn M\n"
      local p = H.start_app(src, { "-w", 1 }, { files = { ["waits_on_load.lua"] = mod } })
      assert.equal(0, (p:wait(10000)), p:output())
      local out = p:output()
      assert.matches("master sleep: false [^\n]*/app.lua:" .. line_of(src, "-- master sleep")
        .. ": timer.sleep waits, so it can only be called inside a handler", out)
      assert.matches("master module: false [^\n]*/waits_on_load.lua:3: timer.sleep waits", out)
      assert.matches("worker request: false [^\n]*/app.lua:" .. line_of(src, "-- worker request")
        .. ": request waits, so it can only be called inside a handler", out)
      assert.matches("worker sleep: false [^\n]*/app.lua:" .. line_of(src, "-- worker sleep") .. ": timer.sleep waits", out)
      assert.not_matches("channel.lua", out, 1, true)
      assert.not_matches("timer.lua", out, 1, true)
    end)
  end)
end)
