-- luacluster.master.upgraded: a binary upgrade, the new master's side (master/upgrade.lua is
-- the old master's and says the steps). boot.lua calls receive() instead of taking the control
-- socket when LUACLUSTER_UPGRADE_FD names the channel to the old master: the state and the
-- sockets are imported (lib/crossing.lua) before the app's top level runs; once the first
-- generation is ready the old master is told, and when it has released the sockets this
-- master accepts (master/listen.lua's take_over) and serves the control socket it inherited.
-- Until then a failure (the app does not load, a worker fails to boot) is told to the old
-- master, and this master exits; so does it when the old master goes away first.
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local crossing = require("luacluster.lib.crossing")
local error_line = require("luacluster.lib.error_line")
local jobs = require("luacluster.master.jobs")
local keep = require("luacluster.lib.keep")
local log = require("luacluster.lib.log")
local master = require("luacluster.master.core")
local master_listen = require("luacluster.master.listen")
local runtime = require("luacluster.lib.runtime")
require("luacluster.master.upgrade") -- the registrations of what crosses (both ends load them)

local _M = {}

local ch
local phase = "receiving" -- receiving | starting | ready | serving


local function tell(msg)
  if ch and not ch:is_closed() then
    ch:control(msg)
  end
end


-- the app or its start failed: the old master hears why (it goes on serving)
function _M.failed(reason)
  tell({ op = "failed", err = reason })
end


-- after the app's top level: tells the old master once the first generation is ready (at
-- the worker's "ready" hook, not on a timer: the switch waits for nothing more)
function _M.started()
  phase = "starting"
  local unhook
  local function check()
    if phase ~= "starting" or master.is_stopping() then
      return
    end
    if master.ready_count() >= (master.initial_workers or 0) then
      phase = "ready"
      if unhook then
        unhook()
      end
      tell({ op = "ready", pid = core.pid() })
    end
  end
  unhook = master.add_hook("ready", check)
  check()
end


local function take_over(serve_control, kept, old_runs)
  local spec_die = os.getenv("LUACLUSTER_SPEC_UPGRADE_DIE") -- specs: dies (or hangs) where the old master has let go
  if spec_die == "hang" then
    core.kill(core.pid(), "SIGSTOP")
  elseif spec_die then
    core.exit(3)
  end
  phase = "serving"
  runtime.upgrading = nil
  keep.refresh(kept) -- (cluster.keep: the old master's latest data, before this master's code sees another event)
  jobs.adopt(old_runs) -- (cluster.job: the old master's runs in flight count as running until it exits)
  jobs.hand_over(nil)
  master_listen.take_over(master.live_workers())
  local c = runtime.upgrade_control
  runtime.upgrade_control = nil
  if c then
    local ok, err = serve_control(c.fd, c.path)
    if not ok then
      log.error("upgrade: cannot serve the control socket " .. tostring(c.path) .. ": " .. tostring(err))
    end
  end
  error_line.set_listener(nil)
  log.info("upgrade: this master (pid " .. core.pid() .. ") serves, generation " .. master.generation())
  tell({ op = "serving", pid = core.pid() })
end


-- receive(fd, serve_control, on_state): reads the old master's sockets and state from the
-- channel on fd and imports them; on_state(true) then (the app starts), or on_state(nil, err).
-- serve_control(fd, path) -> true | nil, err: serves the inherited control socket (at the switch)
function _M.receive(fd, serve_control, on_state)
  runtime.upgrading = true -- no reload before the switch (master/reload.lua)
  jobs.hand_over(true) -- nor a job run: the old master runs them until the switch
  local sockets = {}
  error_line.set_listener(_M.failed)
  core.set_cloexec(fd)
  local err
  ch, err = channel.open_fd(fd, {
    control = function(msg, handle)
      if type(msg) ~= "table" then
        if handle then handle:close() end
        return
      end
      if msg.op == "socket" and handle then
        sockets[msg.piece] = sockets[msg.piece] or {}
        sockets[msg.piece][msg.key] = handle
      elseif msg.op == "state" and phase == "receiving" then
        local handles = sockets
        for piece, set in pairs(msg.fds or {}) do
          handles[piece] = handles[piece] or {}
          for key, n in pairs(set) do
            core.set_cloexec(n) -- inherited: never this master's workers' (they would hold the control socket)
            handles[piece][key] = n
          end
        end
        local ok, ierr = crossing.import_all(msg.values, handles)
        if not ok then
          _M.failed(ierr)
          return on_state(nil, ierr)
        end
        on_state(true)
      elseif msg.op == "released" and phase == "ready" then
        take_over(serve_control, msg.keep, msg.jobs)
      elseif handle then
        handle:close()
      end
    end,
    error = function(e) log.warn("upgrade: channel: " .. tostring(e)) end,
    close = function()
      if phase == "serving" then
        jobs.old_master_gone() -- (it has exited: its workers' runs are over)
      end
      if phase ~= "serving" then
        log.error("upgrade: the old master went away before the switch; stopping")
        if phase == "receiving" then
          runtime.exit(1)
        else
          master.stop(1)
        end
      end
    end,
  })
  if not ch then
    return on_state(nil, "upgrade: cannot open the channel to the old master: " .. tostring(err))
  end
end


-- the app does not even load (boot.lua): one frame to the old master, sent as this process
-- exits (runtime/main.c flushes the channels)
function _M.fail_early(fd, reason)
  local c = fd and channel.open_fd(fd, { control = function() end })
  if c then
    c:control({ op = "failed", err = error_line.line(reason) })
  end
end


return {
  fail_early = _M.fail_early,
  receive = _M.receive,
  started = _M.started,
  failed = _M.failed,
}
