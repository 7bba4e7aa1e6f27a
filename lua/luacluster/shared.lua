-- luacluster.shared: the cluster's shared dictionaries, declared in the master's
-- cluster.setup{ shared_dicts = { NAME = SIZE } }: `require("luacluster.shared").NAME` is the
-- dictionary NAME in every process of the cluster (the same object as ngx.shared.NAME), with
-- OpenResty's ngx.shared.DICT methods (runtime/shdict.c, shdict_lua.c). A name that is not
-- declared is nil, as in ngx.shared. The master maps a dictionary when cluster.setup creates
-- it; a worker maps them all when it boots (boot.lua), before the app's first line.
local core = require("luacluster.core")
local shdict_ffi = require("luacluster.lib.shdict_ffi")

shdict_ffi.install() -- get, set, incr, ... compiled by the JIT (the C methods otherwise)

return setmetatable({}, {
  __index = function(t, name)
    if type(name) ~= "string" then
      return nil
    end
    local d = core.shdict_all()[name]
    if d then
      rawset(t, name, d) -- one object per dictionary and process
    end
    return d
  end,
})
