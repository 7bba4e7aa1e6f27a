-- luacluster reload [app.lua | --control PATH]: exit 0 once the new generation serves,
-- non-zero with the reason if the new code fails.
local common = require("luacluster.cmd_common")
local control = require("luacluster.control")

local _M = {}

function _M.run(o)
  return common.run(o, function(path)
    local reply, err = control.request(path, { cmd = "reload" }, 120000)
    if not reply then
      return common.fail(err)
    end
    if not reply.ok then
      return common.fail("reload failed: " .. tostring(reply.err))
    end
    io.stdout:write("reloaded: generation ", tostring(reply.generation), " serves\n")
    return 0
  end)
end

return _M
