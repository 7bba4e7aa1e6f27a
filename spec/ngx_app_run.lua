-- The spec side of spec/ngx_app.lua: starts an app whose worker serves tests at /name (one
-- worker, a free port, spec/ on its package.path as SPEC_DIR), waits until it answers, and
-- gets a test's answer, which must be a 200.
local H = require("helper")
local luassert = require("luassert")

local M = {}


-- start(src, env) -> app (the process), get(path [, curl_args]) -> body
function M.start(src, env)
  local port = H.free_port()
  env.SPEC_DIR = H.root .. "/spec"
  local app = H.start_app(src, { "-w", 1, "-p", port }, { env = env })
  assert(H.wait_for(function()
    local _, status = H.curl("http://127.0.0.1:" .. port .. "/none")
    return status == 404
  end, 10000), app:output())
  local function get(path, curl_args)
    local body, status = H.curl("http://127.0.0.1:" .. port .. path, curl_args)
    luassert.equal(200, status, body .. "\n" .. app:output())
    return body
  end
  return app, get, port
end


return M
