-- counter/app.lua: a newcomer's app for trying `luacluster upgrade`: two workers,
-- one hit counter in a shared dictionary, each answer says the count and the worker's pid.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local shared = require("luacluster.shared")
local process = require("luacluster.process")

if cluster.is_master then
  cluster.setup{ workers = 2, shared_dicts = { hits = "1m" } }
else
  http.create_server(function(req)
    local n = shared.hits:incr("hits", 1, 0)
    return 200, { ["Content-Type"] = "text/plain" },
      "count " .. n .. " pid " .. process.pid .. "\n"
  end):listen()
end
