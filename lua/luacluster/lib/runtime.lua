-- The process's own runtime state, shared by the library's modules (not a public API):
-- its role, the app it runs, the command line's options, and the work in flight that a
-- graceful stop waits for.
local core = require("luacluster.core")

local _M = {
  role = "master",      -- "master" | "worker" | "child" (started by child_process.fork)
  app = nil,            -- absolute path of the script
  app_dir = nil,
  argv = {},            -- as Lua's arg: [0] the script, [1..] its arguments
  options = {},         -- parsed command line (master), or what the master passed (worker)
  exit_code = 0,
  in_flight = 0,        -- requests and connections a drain waits for
  code_generation = 1,  -- the generation of the script code now running (master)
  -- the master code's timers and pubsub subscriptions: { _gen, :stop() } (a reload stops the old code's)
  master_timers = setmetatable({}, { __mode = "k" }),
  staging = nil,        -- master: a reload's stage while its new code's top level runs (master/core.lua's set_staging)
  drain_waiters = {},
}


-- Ends the process: removes the control socket first (the master's), then exits.
function _M.exit(code)
  if _M.control_path then
    os.remove(_M.control_path)
    _M.control_path = nil
  end
  core.exit(code or _M.exit_code or 0)
end


-- ---- the children this process started (child_process registers how to end them) ----

local end_all, end_all_now, count -- nil until child_process is loaded (there are no children then)


-- child_process: graceful(done) ends every child then calls done; now() SIGKILLs them all;
-- live() -> how many are running
function _M.set_children_ender(graceful, now, live)
  end_all, end_all_now, count = graceful, now, live
end


-- how many children started through child_process are running
function _M.live_children()
  return count and count() or 0
end


-- Ends the children (SIGTERM, then SIGKILL) and calls done() once they are gone.
function _M.end_children(done)
  if end_all then
    return end_all(done)
  end
  done()
end


-- SIGKILL to every child now.
function _M.end_children_now()
  if end_all_now then
    end_all_now()
  end
end


function _M.hold()
  _M.in_flight = _M.in_flight + 1
end


function _M.release()
  _M.in_flight = _M.in_flight - 1
  if _M.in_flight <= 0 then
    _M.in_flight = 0
    local waiters = _M.drain_waiters
    _M.drain_waiters = {}
    for i = 1, #waiters do
      waiters[i]()
    end
  end
end


-- Calls fn once nothing is in flight.
function _M.when_idle(fn)
  if _M.in_flight == 0 then
    fn()
  else
    _M.drain_waiters[#_M.drain_waiters + 1] = fn
  end
end


-- Drain hooks: servers register a function that stops accepting and closes idle
-- connections; a drain runs them all.
_M.drain_hooks = {}


function _M.run_drain_hooks()
  for _, hook in pairs(_M.drain_hooks) do
    hook()
  end
end


return _M
