-- luacluster.sched.load: the one place a scheduler named by the app (cluster.setup{scheduler=},
-- pool.map's opts.scheduler) is found: a function is taken as it is, a name is the module
-- luacluster.sched.NAME (built-in or the app's own, on the library's path).
local optional = require("luacluster.lib.optional")


-- s: a name or a function -> the module ({ new =, wants_address = }) or the function, name
-- | nil, reason (the caller says where: "cluster.setup: ..." or "pool.map: ...")
local function load(s)
  if type(s) == "function" then
    return s
  end
  if type(s) ~= "string" or not s:match("^[%w_]+$") then
    return nil, "scheduler must be a built-in name or a function"
  end
  local mod, lerr = optional.require("luacluster.sched." .. s)
  if not mod then
    return nil, lerr and "scheduler '" .. s .. "' does not load: " .. lerr or "unknown scheduler '" .. s .. "'"
  end
  return mod
end


return {
  load = load,
}
