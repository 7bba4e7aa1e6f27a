-- Loaded by the apps of the ngx specs (spec/ngx_tcp_spec.lua, spec/ngx_drivers_spec.lua), whose
-- package.path has spec/ in it: the worker's HTTP server that runs tests[name] for the path
-- /name (its error and traceback as a 500), and the count of the worker's descriptors.
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")

local M = {}


-- serve(tests): in a worker, GET /name answers 200, tests.name(req) (404 for no such test)
function M.serve(tests)
  if not cluster.is_worker then
    return
  end
  http.create_server(function(req)
    local test = tests[req.path:sub(2)]
    if not test then
      return 404, "no such test"
    end
    local ok, out = xpcall(test, debug.traceback, req)
    return ok and 200 or 500, out
  end):listen()
end


-- how many descriptors this process has open
function M.fd_count()
  local p = io.popen("ls /proc/" .. require("luacluster.process").pid .. "/fd")
  local n = select(2, p:read("*a"):gsub("%d+", ""))
  p:close()
  return n
end


-- (made, left): descriptors open after make() ran n times with the collector stopped, and
-- after a full collection
function M.collected(n, make)
  collectgarbage()
  local before = M.fd_count()
  collectgarbage("stop") -- none collected before they are counted
  for _ = 1, n do
    make()
  end
  local made = M.fd_count() - before
  collectgarbage("restart")
  collectgarbage()
  collectgarbage()
  require("luacluster.timer").sleep(100)
  return made, M.fd_count() - before
end


return M
