-- Shell tools over HTTP: each request runs a program with child_process in its waiting form.
-- The handler's coroutine waits for the program's output while the worker serves others; a
-- timeout and an output limit keep a stuck or chatty program from holding a request.
-- Run: build/luacluster -w 2 examples/shell_tools/app.lua
-- then: curl http://127.0.0.1:8080/   curl http://127.0.0.1:8080/uptime
--       curl --data-binary 'one two three' http://127.0.0.1:8080/wc   curl http://127.0.0.1:8080/slow
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
local cp = require("luacluster.child_process")

-- path -> program and arguments (run without a shell: nothing from the request reaches one)
local TOOLS = {
  ["/uptime"] = { "uptime" },
  ["/date"] = { "date", "-u" },
  ["/disk"] = { "df", "-h", "/" },
  ["/kernel"] = { "uname", "-a" },
}

local LIMITS = { timeout = 2000, max_buffer = 64 * 1024 }
local TEXT = { ["Content-Type"] = "text/plain" }


local function index()
  local paths = {}
  for path in pairs(TOOLS) do
    paths[#paths + 1] = path
  end
  table.sort(paths)
  return 200, TEXT, "tools: " .. table.concat(paths, " ") .. " /wc (POST a body) /slow\n"
end


-- A failed run: 504 when it was stopped for taking too long, 500 otherwise.
local function failed(err, stdout)
  local status = err.reason == "timeout" and 504 or 500
  return status, TEXT, err.message .. "\n" .. (stdout or "")
end


local function run_tool(argv)
  local stdout, err, partial = cp.exec_file(argv[1], { unpack(argv, 2) }, LIMITS)
  if not stdout then
    return failed(err, partial)
  end
  return 200, TEXT, stdout
end


local function word_count(req)
  local body, berr = req:body()
  if not body then
    return 400, TEXT, tostring(berr) .. "\n"
  end
  local stdout, err = cp.exec("wc -w", { input = body, timeout = LIMITS.timeout })
  if not stdout then
    return failed(err)
  end
  return 200, TEXT, stdout:match("%d+") .. " words\n"
end


local function handle(req)
  if req.path == "/" then
    return index()
  elseif req.path == "/wc" and req.method == "POST" then
    return word_count(req)
  elseif req.path == "/slow" then
    -- prints at once, then hangs: the timeout kills it and answers with what it printed
    local stdout, err, partial = cp.exec("echo started; exec sleep 30", { timeout = 500 })
    if not stdout then
      return failed(err, partial)
    end
    return 200, TEXT, stdout
  end
  local argv = TOOLS[req.path]
  if not argv then
    return 404, TEXT, "no such tool; see /\n"
  end
  return run_tool(argv)
end


if cluster.is_worker then
  http.create_server(handle):listen()
end
