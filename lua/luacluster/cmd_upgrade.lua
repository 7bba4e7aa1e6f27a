-- luacluster upgrade [app.lua | --control PATH] [--binary PATH]: the running master starts a
-- new master from the binary installed where it was started from (or PATH), hands it its
-- listening sockets, control socket and state, and drains (master/upgrade.lua). Exits 0 once
-- the new master serves, printing its pid; non-zero with the reason if it did not.
local common = require("luacluster.cli.common")
local core = require("luacluster.core")

local run

function run(o)
  local binary = o.binary
  if binary and binary:sub(1, 1) ~= "/" then -- the master's working directory may not be ours
    binary = core.realpath(binary) or binary
  end
  return common.run(o, function(path)
    local reply, code = common.ask(path, { cmd = "upgrade", binary = binary }, 600000, "upgrade failed: ")
    if not reply then
      return code
    end
    io.stdout:write("upgraded: new master pid ", tostring(reply.pid), " serves\n")
    return 0
  end)
end

return {
  run = run,
}
