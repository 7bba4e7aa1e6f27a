-- bench/apps/shdict.lua: bench/run's `shdict` figures on luacluster's shared dictionaries. The
-- loops are bench/apps/shdict_ops.lua, which OpenResty runs unchanged on ngx.shared
-- (bench/lib/fig_shdict.lua); this app only serves them over HTTP.
-- Dictionaries: `bench` (the operation loops) and `mem` (the memory per entry), sized as
-- OpenResty's lua_shared_dict in the figure.
local cluster = require("luacluster.cluster")
local process = require("luacluster.process")
local ops = require("shdict_ops")

if cluster.is_master then
  cluster.setup({ shared_dicts = { bench = "8m", mem = "64m" } })
end

if cluster.is_worker then
  local http = require("luacluster.http")
  local dicts = require("luacluster.shared")
  local text = { ["Content-Type"] = "text/plain" }
  local pid = process.pid
  http.create_server(function(req)
    return 200, text, ops.handle(dicts, req.path, req.query, pid)
  end):listen()
end
