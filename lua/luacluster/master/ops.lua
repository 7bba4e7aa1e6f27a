-- What an operator sees of a running cluster, set up once per process:
--  * the log format (--log-format text | json) and the runtime's lines about workers
--    (started, exited) next to those master/core.lua and master/reload.lua write (crashes, restart
--    backoff, reload steps, refused reloads);
--  * SIGUSR1: reopen the access logs (logrotate); the master passes it on to its workers;
--  * systemd's notify protocol (Type=notify): READY=1 once the first generation serves,
--    RELOADING=1 then READY=1 around a reload, STOPPING=1 on a stop, WATCHDOG=1 when the
--    unit asks for it (runtime/notify.c sends the datagrams);
--  * the metrics listener of cluster.setup{ metrics = } (luacluster.master.metrics).
local core = require("luacluster.core")
local access_log = require("luacluster.lib.access_log")
local error_line = require("luacluster.lib.error_line")
local log = require("luacluster.lib.log")
local runtime = require("luacluster.lib.runtime")
local signals = require("luacluster.lib.signals")

local sd_notify, child_init, master_early, master_init

local notify_addr   -- $NOTIFY_SOCKET, taken from the environment (children do not see it)
local watchdog_usec
local ready_sent = false


-- ---- systemd ----

local function sd_notify_to(addr, state)
  local ok, err = core.sd_notify(addr, state)
  if not ok then
    log.warn("sd_notify: " .. tostring(err))
  end
  return ok, err
end


function sd_notify(state)
  if not notify_addr then
    return nil, "no NOTIFY_SOCKET"
  end
  return sd_notify_to(notify_addr, state)
end


-- ---- a binary upgrade (master/upgrade.lua) ----

-- the environment a new master needs to speak to systemd itself: NOTIFY_SOCKET (and the
-- watchdog's interval; its WATCHDOG_PID would be ours, so it is left out)
local function notify_env()
  local env = {}
  if notify_addr then
    env.NOTIFY_SOCKET = notify_addr
    if watchdog_usec then
      env.WATCHDOG_USEC = tostring(watchdog_usec)
    end
  end
  return env
end


-- The old master hands systemd over: -> the address (to send MAINPID= once), and from now
-- on it sends nothing more (STOPPING=1 would be about the unit, which goes on)
local function hand_over_notify()
  local addr = notify_addr
  notify_addr = nil
  return addr
end


local function status_line(master)
  local n = 0
  for _ in pairs(master.workers) do
    n = n + 1
  end
  return string.format("STATUS=generation %d serving with %d worker%s", master.generation(), n, n == 1 and "" or "s")
end


-- READY=1 once the first generation's workers are all ready (their top level ran and their
-- listens were answered) and the control socket answers (ExecReload needs it)
local function watch_first_generation(master)
  local timer
  local function check()
    if ready_sent then
      return
    end
    if master.ready_count() < (master.initial_workers or 0) or not (runtime.control_server or runtime.no_control) then
      return
    end
    ready_sent = true
    timer:close()
    sd_notify("READY=1\n" .. status_line(master) .. "\nMAINPID=" .. core.pid())
  end
  timer = core.timer_new(check)
  timer:start(0, 20)
  timer:unref()
end


local function start_watchdog()
  local usec = watchdog_usec
  if not usec then
    return
  end
  local t = core.timer_new(function()
    sd_notify("WATCHDOG=1")
  end)
  local every = math.max(1, math.floor(usec / 2000))
  t:start(every, every)
  t:unref()
end


-- ---- processes ----

-- In a worker or a forked child, before its script runs.
function child_init(role, format, worker_id)
  log.set_format(log.FORMATS[format or ""] and format or "text", role == "worker" and worker_id or nil)
  if role == "worker" then
    signals.set_action("SIGUSR1", function()
      access_log.reopen_all()
    end)
  end
end


-- In the master, before its script runs (and so before any worker is started): the log
-- format (--log-format, else LUACLUSTER_LOG_FORMAT) and systemd's variables, taken out of
-- the environment. -> nil | an error message
function master_early(o, env_format)
  o.log_format = o.log_format or env_format
  if o.log_format and not log.FORMATS[o.log_format] then
    return "LUACLUSTER_LOG_FORMAT must be text or json, not '" .. o.log_format .. "'"
  end
  log.set_format(o.log_format or "text")
  local addr = os.getenv("NOTIFY_SOCKET")
  local usec, pid = tonumber(os.getenv("WATCHDOG_USEC")), tonumber(os.getenv("WATCHDOG_PID"))
  for _, name in ipairs({ "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID" }) do
    core.unsetenv(name)
  end
  notify_addr = addr ~= "" and addr or nil
  if usec and usec > 0 and (not pid or pid == core.pid()) then
    watchdog_usec = usec
  end
end


-- master/plugins.lua passes the master's core, reload and metrics (ops is below them: a
-- worker loads it too)
function master_init(options, master, reload, metrics)

  -- the runtime's lines about workers (crashes and restarts are master/core.lua's)
  local function started(w)
    log.info(string.format("worker %d (pid %d) started, generation %d", w.id, w.pid, w.generation))
  end
  local ids = {}
  for id in pairs(master.workers) do -- those the top level has started already
    ids[#ids + 1] = id
  end
  table.sort(ids)
  for _, id in ipairs(ids) do
    started(master.workers[id])
  end
  master.add_hook("fork", started)
  master.add_hook("gone", function(w)
    local code, signal = w._exit_code, w._exit_signal
    if w.exited_after_disconnect or (code == 0 and not signal) then
      -- "finished", not "exited with": that wording is master/core.lua's for a crash
      log.info(string.format("worker %d (pid %d) finished (%s)", w.id, w.pid,
        signal and ("signal " .. signal) or ("exit code " .. tostring(code))))
    end
  end)

  -- logrotate: the master's own access logs, then every worker's
  signals.set_action("SIGUSR1", function()
    log.info("SIGUSR1: reopening the access logs")
    access_log.reopen_all()
    for _, w in ipairs(master.live_workers()) do
      if w.state ~= "dead" and w._proc then
        w._proc:kill("SIGUSR1")
      end
    end
  end)

  -- systemd
  if notify_addr then
    watch_first_generation(master)
    start_watchdog()
  end

  reload.add_hook(function(event)
    if event == "start" then
      sd_notify("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" .. core.monotonic_usec())
    else
      if event == "done" then
        local ok, err = metrics.apply(master.config().metrics)
        if not ok then
          log.error("metrics: " .. tostring(err))
        end
      end
      sd_notify("READY=1\n" .. status_line(master))
    end
  end)
  master.add_hook("stop", function()
    sd_notify("STOPPING=1\nSTATUS=stopping")
  end)

  -- the metrics listener: a port it cannot have stops the cluster, as an app's port does
  local ok, err = metrics.apply(master.config().metrics)
  if not ok then
    -- (error_line: the one last line, JSON under --log-format json, and an upgrade's new master
    -- tells the old one this reason, which `luacluster upgrade` prints)
    error_line.report("metrics: " .. tostring(err))
    master.stop(1)
  end
end


return {
  sd_notify = sd_notify,
  notify_env = notify_env,
  hand_over_notify = hand_over_notify,
  sd_notify_to = sd_notify_to,
  child_init = child_init,
  master_early = master_early,
  master_init = master_init,
}
