-- bench/apps/hello.lua: examples/hello with one more path, /pid (the serving worker's pid, for
-- the restart figure). Every system in the HTTP figures answers the same two paths.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local process = require("luacluster.process")

if cluster.is_worker then
  local pid = tostring(process.pid) .. "\n"
  http.create_server(function(req, res)
    if req.path == "/pid" then
      return 200, { ["Content-Type"] = "text/plain" }, pid
    end
    return 200, { ["Content-Type"] = "text/plain" }, "Hello, World!\n"
  end):listen()
end
