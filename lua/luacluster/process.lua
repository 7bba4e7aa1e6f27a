-- The running process: pid, argv, env, cwd(), exit(), on("signal"), and in a process
-- started by child_process.fork, the channel to its parent: send, on("message"),
-- disconnect, on("disconnect").
local core = require("luacluster.core")
local forked_child = require("luacluster.worker.forked_child")
local runtime = require("luacluster.lib.runtime")
local signals = require("luacluster.lib.signals")

local _M = {}

_M.pid = core.pid()
_M.argv = runtime.argv


function _M.cwd()
  return (core.cwd())
end


function _M.exit(code)
  if code ~= nil and (type(code) ~= "number" or code % 1 ~= 0) then
    error("process.exit: code must be a whole number", 2)
  end
  runtime.exit(code or runtime.exit_code or 0)
end


-- a forked child's events (luacluster.worker.forked_child)
local CHILD_EVENTS = { message = true, request = true, disconnect = true }


function _M.on(event, fn)
  if event == "signal" then
    if type(fn) ~= "function" then
      error("process.on: handler must be a function", 2)
    end
    signals.add_listener(fn)
    return _M
  end
  if runtime.role == "child" then
    forked_child.on(event, fn)
    return _M
  end
  -- the master and the workers have no parent channel: a handler here would never run
  if CHILD_EVENTS[event] then
    error("process.on(\"" .. event .. "\") is only available in a process started by child_process.fork"
      .. " (a worker uses cluster.worker:on, the master cluster.on)", 2)
  end
  error("process.on: unknown event '" .. tostring(event) .. "' (\"signal\", and in a forked child"
    .. " \"message\", \"request\", \"disconnect\")", 2)
end


function _M.send(msg, handle)
  if runtime.role ~= "child" then
    error("process.send is only available in a process started by child_process.fork", 2)
  end
  return forked_child.send(msg, handle)
end


function _M.disconnect()
  if runtime.role ~= "child" then
    error("process.disconnect is only available in a process started by child_process.fork", 2)
  end
  return forked_child.disconnect()
end


-- process.argv may be read before boot sets it (a module required early): keep it current
setmetatable(_M, {
  __index = function(_, k)
    if k == "argv" then
      return runtime.argv
    elseif k == "env" then
      local env = core.environ()
      rawset(_M, "env", env)
      return env
    end
  end,
})
_M.argv = nil


return _M
