-- luacluster.master.upgrade: a binary upgrade, the old master's side (`luacluster upgrade`,
-- SIGUSR2), as nginx's USR2 does it. The master starts a new master from the binary installed
-- at the path it was started with (or --binary), with the same command line, and hands it
-- what lib/crossing.lua's registry exports: plain state in one message, listening sockets over
-- the channel between them (SCM_RIGHTS), plain fds (the control socket, the shared
-- dictionaries' memfd) as fds the new process inherits. The steps, over that channel
-- (master/upgraded.lua is the other end):
--   old -> new  "socket" (one per listening socket), then "state"
--   new -> old  "ready"     its first generation is ready (its workers listen; in dispatch mode
--                           it does not accept yet)
--   old -> new  "released"  the old master accepts no more (the same sockets: what waits in
--                           their accept queues stays there) and has closed its control socket
--   new -> old  "serving"   it accepts and answers the control socket; the old master names it
--                           to systemd (MAINPID=), replies to the command, drains as a stop does
--   new -> old  "failed"    why it stops (its app did not load, a worker failed to boot)
-- A new master that exits, fails or is not ready within reload_timeout changes nothing: it is
-- stopped (SIGTERM, then SIGKILL) and the old master serves on. One upgrade at a time; no
-- reload while one runs.
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local crossing = require("luacluster.lib.crossing")
local jobs = require("luacluster.master.jobs")
local keep = require("luacluster.lib.keep")
local log = require("luacluster.lib.log")
local master = require("luacluster.master.core")
local master_listen = require("luacluster.master.listen")
local metrics = require("luacluster.master.metrics")
local ops = require("luacluster.master.ops")
local reload = require("luacluster.master.reload")
local runtime = require("luacluster.lib.runtime")
local shdict = require("luacluster.master.shdict")
local tls_tickets = require("luacluster.master.tls_tickets")

local _M = {}

local DEFAULT_TIMEOUT = 30000   -- reload_timeout's default (master/reload.lua)
local KILL_AFTER_MS = 5000      -- a new master stopped with SIGTERM gets SIGKILL after this
local DRAIN_WAIT_MS = 2000      -- at most this for the dispatch to hand out what it accepted
local SWITCH_TIMEOUT_MS = 3000  -- from "released" to "serving" (one round trip), at most this (or reload_timeout)
local FIRST_FD = 4              -- inherited fds go to the new master as 4, 5, ... (3: the channel)

local running                   -- the upgrade in progress: { proc =, ch =, cb =, ... }
local retake_control            -- fn(): serve the control socket again (master/control.lua)
_M.counts = { done = 0, refused = 0 }


-- ---- what crosses (registered here: the master's own pieces; others register themselves) ----

local function export_control()
  if not runtime.control_server then
    return nil
  end
  return { path = runtime.control_path }, { socket = runtime.control_server:fileno() }
end


local function import_control(v, fds)
  if type(v) == "table" and fds.socket then
    runtime.upgrade_control = { path = v.path, fd = fds.socket } -- served at the switch (upgraded.lua)
  end
end


crossing.register("counts", master.export_counts, master.import_counts)
crossing.register("listeners", master_listen.export, master_listen.import)
crossing.register("shared_dicts", shdict.export, shdict.import)
crossing.register("control", export_control, import_control)
crossing.register("metrics_listener", metrics.export_listener, metrics.import_listener)
-- the TLS session ticket keys: a session made before the upgrade resumes after it (an old master
-- that had none sends nothing: the new one keeps the ring it made)
crossing.register("tls_tickets", tls_tickets.export, function(v)
  if v ~= nil then
    local ok, err = tls_tickets.import(v)
    if not ok then
      log.warn("upgrade: the TLS ticket keys did not cross (" .. tostring(err) .. "): sessions made before the upgrade take a full handshake")
    end
  end
end)
crossing.register("keep", keep.export, keep.import) -- cluster.keep (refreshed at "released")


-- ---- the old master ----

local function finish(u, err, pid)
  if u.done then
    return
  end
  u.done = true
  if u.unhook_stop then
    u.unhook_stop()
    u.unhook_stop = nil
  end
  if u.deadline then
    u.deadline:close()
    u.deadline = nil
  end
  if err then
    _M.counts.refused = _M.counts.refused + 1
    log.warn("upgrade refused: " .. err .. (master.is_stopping() and "" or ("; this master (pid " .. core.pid() .. ") keeps serving")))
  else
    _M.counts.done = _M.counts.done + 1
  end
  u.cb(err, pid)
end


-- the new master is not wanted: SIGTERM (it stops its workers gracefully), SIGKILL later
local function stop_new(u)
  if u.exited or u.stopping then
    return
  end
  u.stopping = true
  u.proc:kill("SIGTERM")
  local t = core.timer_new(function()
    if not u.exited then
      u.proc:kill("SIGKILL")
    end
  end)
  t:start(KILL_AFTER_MS, 0)
  t:unref()
  u.kill_timer = t
end


local function fail(u, err)
  if u.done then
    return
  end
  stop_new(u)
  finish(u, err)
end


-- the old master drains: once its dispatch has handed out what it accepted, it stops as a
-- graceful stop does (its workers finish their requests and exit), but leaves the control
-- socket's file to the new master
local function retire(u)
  runtime.control_path = nil -- (runtime.exit would remove the file: it is the new master's now)
  local waited = 0
  local t
  t = core.timer_new(function()
    waited = waited + 20
    if master_listen.dispatch_pending() == 0 or waited >= DRAIN_WAIT_MS then
      t:close()
      log.info("upgrade: pid " .. u.pid .. " serves; this master drains its workers and exits")
      master.stop(0)
    end
  end)
  t:start(0, 20)
end


local function on_control(u, msg, handle)
  if handle then
    handle:close()
  end
  if type(msg) ~= "table" or u.done and msg.op ~= "serving" then
    return
  end
  if msg.op == "failed" then
    u.reason = type(msg.err) == "string" and msg.err or u.reason
  elseif msg.op == "ready" and master.is_stopping() then
    fail(u, "the cluster is stopping") -- (the stop hook in upgrade() has done it already)
  elseif msg.op == "ready" then
    -- exactly one master accepts at a time: this one stops, then the new one starts
    master_listen.stop_accepting()
    if runtime.control_server then
      core.pipe_keep_file(runtime.control_server)
      runtime.control_server:close()
      runtime.control_server = nil
    end
    u.released = true
    if u.deadline then
      u.deadline:close()
      u.deadline = nil
    end
    -- nobody accepts until the new master does: one that hangs now is killed (SIGKILL: a hung
    -- loop handles no SIGTERM, and one that woke up later must not accept beside this one),
    -- and its exit puts this master back (on_exit)
    local limit = math.min(SWITCH_TIMEOUT_MS, master.config().reload_timeout or DEFAULT_TIMEOUT)
    u.deadline = core.timer_new(function()
      u.deadline:close()
      u.deadline = nil
      if not u.serving and not u.exited then
        u.timed_out = "the new master (pid " .. u.pid .. ") did not serve within " .. limit
          .. " ms after this master let go; it was killed"
        u.proc:kill("SIGKILL")
      end
    end)
    u.deadline:start(limit, 0)
    -- cluster.keep's latest data: what this master's code wrote while the new one started
    local ok, latest = pcall(keep.export)
    -- cluster.job: the new master runs them once it serves, and counts this master's runs in
    -- flight as running (two runs of a job never overlap, across the masters too)
    jobs.hand_over(true)
    u.ch:control({ op = "released", keep = ok and latest or nil, jobs = jobs.running() })
  elseif msg.op == "serving" and u.released and not u.serving then
    u.serving = true
    if u.deadline then
      u.deadline:close()
      u.deadline = nil
    end
    local addr = ops.hand_over_notify() -- systemd: the new master is the unit's main process
    if addr then
      ops.sd_notify_to(addr, "MAINPID=" .. u.pid .. "\nSTATUS=upgraded: pid " .. u.pid .. " serves")
    end
    log.info("upgrade: the new master (pid " .. u.pid .. ") serves")
    finish(u, nil, u.pid)
    retire(u)
  end
end


local function on_exit(u, code, signal)
  u.exited = true
  if u.kill_timer then
    u.kill_timer:close()
  end
  if running == u then
    running = nil
    runtime.upgrading = nil
  end
  if not u.serving then
    local how = signal and ("signal " .. signal) or ("code " .. tostring(code))
    if u.released then
      -- it died between our release and its serving: this master accepts again, and takes its
      -- control socket back (the file is there, nobody answers it: master/control.lua rebinds)
      master_listen.resume_accepting()
      jobs.hand_over(nil)
      runtime.control_path = nil
      if retake_control then
        retake_control()
      end
    end
    fail(u, u.timed_out or ("the new master (pid " .. u.pid .. ") exited with " .. how .. " before it served"
      .. (u.reason and (": " .. u.reason) or "")))
  end
end


-- the binary to start: --binary, else the path this master was started with (argv[0], made
-- absolute at start: a package that replaced the file is what runs next), else its exe
local function binary(opts)
  local path = opts.binary or runtime.exe_invoked or runtime.exe
  if not core.realpath(path) then
    return nil, "cannot run " .. tostring(path) .. ": no such file"
  end
  return path
end


-- an upgrade refused before a new master runs: counted and logged (SIGUSR2 has no other
-- reader), and the caller told
local function refuse(err, cb)
  _M.counts.refused = _M.counts.refused + 1
  log.warn("upgrade refused: " .. err .. (master.is_stopping() and "" or ("; this master (pid " .. core.pid() .. ") keeps serving")))
  return cb(err)
end


-- upgrade({ binary = }, cb): cb(nil, new_pid) once the new master serves, or cb(err)
function _M.upgrade(opts, cb)
  opts = opts or {}
  local refused
  if running then
    refused = "an upgrade is already in progress (new master pid " .. running.pid .. "); try again when it has finished"
  elseif runtime.upgrading then -- (set by master/upgraded.lua in a new master until it serves)
    refused = "this master is an upgrade's new master and does not serve yet; try again when it does"
  elseif reload.in_progress() then
    refused = "a reload is in progress; try again when it has finished"
  elseif master.is_stopping() then
    refused = "the cluster is stopping"
  elseif core.pid() == 1 then
    -- a container's init: its exit ends the container, the new master and its workers with it
    refused = "this master is pid 1 (a container's init): its exit would end the container and the new master;"
      .. " restart the container instead"
  end
  if refused then
    return refuse(refused, cb)
  end
  local exe, berr = binary(opts)
  if not exe then
    return refuse(berr, cb)
  end
  local values, handles = crossing.export_all()
  if not values then
    return refuse(handles, cb)
  end
  -- fds: inherited as 4, 5, ... (stdio entry i is the child's fd i - 1); sockets: over the channel
  local stdio = { "inherit", "inherit", "inherit", false } -- [4]: the channel (fd 3), below
  local fds, sockets = {}, {}
  for piece, set in pairs(handles) do
    for key, h in pairs(set) do
      if type(h) == "number" then
        stdio[#stdio + 1] = { inherit = h }
        fds[piece] = fds[piece] or {}
        fds[piece][key] = #stdio - 1
      else
        sockets[#sockets + 1] = { piece = piece, key = key, handle = h }
      end
    end
  end
  local u = { cb = cb }
  local ch, on_frame = channel.new({
    control = function(msg, handle) on_control(u, msg, handle) end,
    error = function(err) log.warn("upgrade: channel: " .. tostring(err)) end,
    close = function()
      -- its exit usually follows at once and says more (its code); if it does not, it is stopped
      if not u.serving and not u.done then
        local t
        t = core.timer_new(function()
          t:close()
          fail(u, "the new master closed its channel before it served" .. (u.reason and (": " .. u.reason) or ""))
        end)
        t:start(1000, 0)
      end
    end,
  })
  local ipc = core.ipc_new(on_frame)
  ch.handle = ipc
  stdio[4] = ipc
  local env = core.environ()
  env.LUACLUSTER_UPGRADE_FD = "3"
  local notify = ops.notify_env()
  for k, v in pairs(notify) do
    env[k] = v
  end
  local list = {}
  for k, v in pairs(env) do
    list[#list + 1] = k .. "=" .. v
  end
  local proc, err = core.spawn({ file = exe, args = runtime.cmdline, env = list, stdio = stdio }, function(code, signal)
    on_exit(u, code, signal)
  end)
  if not proc then
    u.done = true -- (closing the channel must not fail this upgrade a second time, a second later)
    ipc:close()
    return refuse("cannot start " .. exe .. ": " .. tostring(err), cb)
  end
  u.proc, u.pid, u.ch, u.exe, u.started = proc, proc:pid(), ch, exe, core.now()
  running = u
  -- a stop of this cluster (SIGTERM, `luacluster stop`, systemd's stop) while the new master
  -- starts is a stop of both: the new master is stopped too, never handed the sockets (else it
  -- would serve on after the stop, and systemd would wait for its new MAINPID to exit)
  u.unhook_stop = master.add_hook("stop", function()
    fail(u, "the cluster is stopping")
  end)
  runtime.upgrading = true -- master/reload.lua refuses a reload meanwhile
  log.info("upgrade: started " .. exe .. " as pid " .. u.pid .. "; handing it " .. #sockets .. " listening socket"
    .. (#sockets == 1 and "" or "s") .. " and the master's state")
  for _, s in ipairs(sockets) do
    ch:control({ op = "socket", piece = s.piece, key = s.key }, s.handle)
  end
  ch:control({ op = "state", values = values, fds = fds })
  local timeout = master.config().reload_timeout or DEFAULT_TIMEOUT
  u.deadline = core.timer_new(function()
    u.deadline:close() -- (a one-shot timer that fired still holds its handle until closed)
    u.deadline = nil
    fail(u, "the new master's workers were not ready within " .. timeout .. " ms (reload_timeout)")
  end)
  u.deadline:start(timeout, 0)
end


function _M.in_progress()
  return running ~= nil
end


-- for `luacluster status` (answered by this master until the switch): the upgrade in
-- progress, or nil
function _M.status()
  local u = running
  if not u or u.serving then
    return nil
  end
  return { pid = u.pid, binary = u.exe, elapsed_ms = math.floor(core.now() - u.started),
    step = u.released and "switching" or "starting" }
end


-- master/control.lua: how this master serves its control socket again after an upgrade whose
-- new master died once this one had let the socket go
function _M.set_control_retaker(fn)
  retake_control = fn
end


return {
  counts = _M.counts,
  upgrade = _M.upgrade,
  in_progress = _M.in_progress,
  status = _M.status,
  set_control_retaker = _M.set_control_retaker,
}
