-- luacluster reload [app.lua | --control PATH]: exit 0 once the new generation serves,
-- non-zero with the reason if the new code fails.
local common = require("luacluster.cli.common")

local run

function run(o)
  return common.run(o, function(path)
    local reply, code = common.ask(path, { cmd = "reload" }, 120000, "reload failed: ")
    if not reply then
      return code
    end
    io.stdout:write("reloaded: generation ", tostring(reply.generation), " serves\n")
    return 0
  end)
end

return {
  run = run,
}
