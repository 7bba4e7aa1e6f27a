-- luacluster stop [app.lua | --control PATH]: graceful stop (as SIGTERM); prints "stopped" and
-- exits 0 only once the master's process is gone (its pid from the stop reply), so that what
-- comes next (a new start on the same ports, a package upgrade) never meets it.
local common = require("luacluster.cli.common")
local control = require("luacluster.lib.control")
local coro = require("luacluster.lib.coro")
local core = require("luacluster.core")

local run

local DEADLINE_MS = 120000
local POLL_MS = 20


-- a zombie has released everything; only its parent can reap it
local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then
    local stat = f:read("*l") or ""
    f:close()
    return stat:match("^%d+ %b() (%a)") == "Z"
  end
  local ok, err = core.kill(pid, 0)
  return not ok and tostring(err):find("ESRCH", 1, true) ~= nil
end


local function sleep(ms)
  local w = coro.waiter("stop")
  local t = core.timer_new(function() w:wake() end)
  t:start(ms, 0)
  w:wait()
  t:close()
end


function run(o)
  return common.run(o, function(path)
    local started = core.now()
    local reply, err, stream = control.request(path, { cmd = "stop" }, 10000)
    if not reply then
      return common.fail(err)
    end
    local pid = tonumber(reply.pid)
    -- the master closes the connection when it exits
    local w = coro.waiter("stop")
    stream:read_start(function(event)
      if event ~= "data" then w:wake() end
    end)
    local t = core.timer_new(function() w:wake("timeout") end)
    t:start(DEADLINE_MS, 0)
    local timed_out = w:wait()
    t:close()
    -- and its pid must be gone too: the connection's end alone is not its exit
    while not timed_out and pid and not gone(pid) do
      if core.now() - started > DEADLINE_MS then
        timed_out = true
      else
        sleep(POLL_MS)
      end
    end
    if timed_out then
      return common.fail("the master" .. (pid and " (pid " .. pid .. ")" or "") .. " has not exited within "
        .. DEADLINE_MS / 1000 .. " s of the stop; it may still be draining (luacluster status)")
    end
    io.stdout:write("stopped\n")
    return 0
  end)
end

return {
  run = run,
}
