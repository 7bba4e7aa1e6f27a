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
end)
