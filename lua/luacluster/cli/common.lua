-- Shared by the commands that talk to a running master (reload, status, stop): finds its
-- control socket and runs the command in a coroutine on the event loop.
local core = require("luacluster.core")
local control = require("luacluster.lib.control")
local coro = require("luacluster.lib.coro")

local control_path, run, fail, ask


function control_path(o)
  if o.control then
    return o.control
  end
  if not o.app then
    return nil, "give the app (luacluster " .. o.command .. " app.lua) or --control PATH"
  end
  local abs = core.realpath(o.app)
  if not abs then
    return nil, "cannot open " .. o.app .. ": no such file"
  end
  return control.default_path(abs)
end


-- run(o, fn): fn(path) runs in a coroutine and returns the exit code
function run(o, fn)
  local path, err = control_path(o)
  if not path then
    io.stderr:write("luacluster: ", err, "\n")
    return 2
  end
  coro.spawn(function()
    local code = fn(path)
    io.stdout:flush()
    core.exit(code or 0)
  end)
  return nil
end


function fail(msg)
  io.stderr:write("luacluster: ", msg, "\n")
  return 1
end


-- A control request whose reply must say ok: -> reply | nil, exit code (the reason printed,
-- after `prefix` for a refusal)
function ask(path, msg, timeout_ms, prefix)
  local reply, err = control.request(path, msg, timeout_ms)
  if not reply then
    return nil, fail(err)
  end
  if not reply.ok then
    return nil, fail((prefix or "") .. tostring(reply.err))
  end
  return reply
end


return {
  control_path = control_path,
  run = run,
  fail = fail,
  ask = ask,
}
