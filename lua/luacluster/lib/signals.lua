-- Signal handling for the process: the runtime's own reactions (a master stops on SIGTERM
-- and SIGINT, reloads on SIGHUP) and the script's process.on("signal", fn) listeners share
-- one handle per signal. Handles do not keep a process alive by themselves.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")

local LISTENABLE, set_action, ignore, add_listener, listener_count

-- the signals a script can listen to with process.on("signal")
LISTENABLE = { "SIGHUP", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH" }

local handles = {}   -- name -> core signal handle
local actions = {}   -- name -> the runtime's function(name), or nil
local listeners = {} -- array of user functions(name)


local function on_signal(name)
  for i = 1, #listeners do
    coro.spawn(listeners[i], name)
  end
  local action = actions[name]
  if action then
    action(name)
  end
end


local function ensure(name)
  if not handles[name] then
    handles[name] = assert(core.signal_new(name, on_signal))
  end
end


-- The runtime's reaction to a signal (replaces any earlier one).
function set_action(name, fn)
  actions[name] = fn
  ensure(name)
end


-- The process ignores this signal (a worker and SIGINT: Ctrl-C reaches the whole group and
-- the master decides); listeners added later still hear it, and it still does not kill.
function ignore(name)
  core.signal_ignore(name)
  actions[name] = false
end


function add_listener(fn)
  listeners[#listeners + 1] = fn
  for _, name in ipairs(LISTENABLE) do
    if actions[name] == nil and (name == "SIGTERM" or name == "SIGINT") then
      -- a listener must not turn these into no-ops: run the listeners, then die as usual
      actions[name] = function(n)
        core.signal_default(n, true)
      end
    end
    ensure(name)
  end
end


function listener_count()
  return #listeners
end


return {
  LISTENABLE = LISTENABLE,
  set_action = set_action,
  ignore = ignore,
  add_listener = add_listener,
  listener_count = listener_count,
}
