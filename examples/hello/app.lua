-- Hello, World: one HTTP server, served by one worker per CPU.
-- Run: build/luacluster examples/hello/app.lua   then: curl http://127.0.0.1:8080/
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

if cluster.is_worker then
  http.create_server(function(req, res)
    return 200, { ["Content-Type"] = "text/plain" }, "Hello, World!\n"
  end):listen()
end
