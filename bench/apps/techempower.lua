-- bench/apps/techempower.lua: TechEmpower's plaintext and JSON tests for bench/run's figures 5
-- and 6, and the server of figure 7 (memory per idle keep-alive connection).
--   /json       {"message":"Hello, World!"}, encoded per request with lua-cjson
--   any other   Hello, World!   (text/plain)
-- Every answer carries Server, Date (the runtime's) and Content-Type, as TechEmpower's rules
-- require. keepalive_timeout is nginx's default (75 s) so that figure 7's idle connections stay
-- open while they are counted (luacluster's default is 5 s).
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local cjson = require("cjson")

if cluster.is_worker then
  local encode = cjson.encode
  local text = { ["Server"] = "luacluster", ["Content-Type"] = "text/plain" }
  local json = { ["Server"] = "luacluster", ["Content-Type"] = "application/json" }
  http.create_server(function(req)
    if req.path == "/json" then
      return 200, json, encode({ message = "Hello, World!" })
    end
    return 200, text, "Hello, World!"
  end, { keepalive_timeout = 75000 }):listen()
end
