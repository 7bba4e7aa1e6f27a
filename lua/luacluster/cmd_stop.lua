-- luacluster stop [app.lua | --control PATH]: graceful stop (as SIGTERM); exits 0 once the
-- master has stopped.
local common = require("luacluster.cmd_common")
local control = require("luacluster.control")
local coro = require("luacluster.coro")
local core = require("luacluster.core")

local _M = {}

function _M.run(o)
  return common.run(o, function(path)
    local reply, err, stream = control.request(path, { cmd = "stop" }, 10000)
    if not reply then
      return common.fail(err)
    end
    -- the master closes the connection when it exits
    local w = coro.waiter("stop")
    stream:read_start(function(event)
      if event ~= "data" then w:wake() end
    end)
    local t = core.timer_new(function() w:wake("timeout") end)
    t:start(120000, 0)
    local timed_out = w:wait()
    if timed_out then
      return common.fail("the master did not stop within 120 s")
    end
    io.stdout:write("stopped\n")
    return 0
  end)
end

return _M
