-- luacluster.lib.defaults: what the command line and cluster.setup mean when they leave a
-- choice unsaid, and the choices they accept: the cluster modes and the worker count.
local core = require("luacluster.core")

local MODES = { dispatch = true, shared = true, reuseport = true, ports = true }
local MODE_NAMES = "dispatch, shared, reuseport or ports"


local function is_mode(m)
  return MODES[m] == true
end


-- the worker count when nothing else says: --workers, else one per CPU
local function workers(options)
  return options.workers or core.cpu_count()
end


return {
  MODE_NAMES = MODE_NAMES,
  is_mode = is_mode,
  workers = workers,
}
