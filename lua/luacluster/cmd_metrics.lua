-- luacluster metrics [app.lua | --control PATH]: the running cluster's metrics in the
-- Prometheus text exposition format (the same text as the cluster.setup{ metrics = } listener).
local common = require("luacluster.cli.common")

local run


function run(o)
  return common.run(o, function(path)
    local reply, code = common.ask(path, { cmd = "metrics" }, 10000)
    if not reply then
      return code
    end
    io.stdout:write(reply.text)
    return 0
  end)
end

return {
  run = run,
}
