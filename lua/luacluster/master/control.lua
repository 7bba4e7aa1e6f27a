-- The master's side of the control channel (lib/control.lua): reload, status and stop from
-- `luacluster reload|status|stop`, plus SIGHUP and --watch, which reload too.
local core = require("luacluster.core")
local control = require("luacluster.lib.control")
local coro = require("luacluster.lib.coro")
local error_line = require("luacluster.lib.error_line")
local jobs = require("luacluster.master.jobs")
local log = require("luacluster.lib.log")
local master = require("luacluster.master.core")
local metrics = require("luacluster.master.metrics")
local reload = require("luacluster.master.reload")
local shdict = require("luacluster.master.shdict")
local stats = require("luacluster.master.stats")
local upgrade = require("luacluster.master.upgrade")
local runtime = require("luacluster.lib.runtime")
local signals = require("luacluster.lib.signals")

local _M = {}

local started_at = core.now()
-- one row per worker, with the counters each worker reports (waits up to 1 s for them)
function _M.status()
  local rows = {}
  local now = core.now()
  local ps = core.ps_stats() -- publishes: the master's routing, the workers' deliveries summed
  local pubsub = { published = ps.published, forwarded = ps.forwarded, dropped = ps.dropped, delivered = 0, slow_closed = 0 }
  for _, item in ipairs(stats.collect()) do
    local w, st = item.worker, item.stats
    pubsub.delivered = pubsub.delivered + (st.pubsub and st.pubsub.delivered or 0)
    pubsub.slow_closed = pubsub.slow_closed + (st.pubsub and st.pubsub.slow_closed or 0)
    if w.state ~= "dead" then -- (one that exited while the others answered has no row)
      rows[#rows + 1] = {
        id = w.id, pid = w.pid, generation = w.generation, state = w.state,
        uptime = math.floor((now - w._started) / 1000),
        requests = st.requests or 0, connections = st.connections or 0, restarts = master.restarts(w.id),
        websockets = st.http and st.http.websockets or 0, -- of those connections
        ws_messages_in = st.http and st.http.websocket_messages_in or 0,
        ws_messages_out = st.http and st.http.websocket_messages_out or 0,
        rss = core.pid_rss(w.pid) or 0,
        -- a slot that crashed and has not served since: why (a crash loop shows here)
        last_error = not w:is_ready() and w.generation == master.generation() and master.slot_error(w.id) or nil,
      }
    end
  end
  -- a slot whose worker crashed and waits out its restart backoff has no process: a row anyway
  for id, ms in pairs(master.backoff_slots()) do
    rows[#rows + 1] = {
      id = id, generation = master.generation(), state = "backoff", uptime = 0, requests = 0,
      connections = 0, rss = 0, restarts = master.restarts(id), restart_in = ms,
      last_error = master.slot_error(id),
    }
  end
  table.sort(rows, function(a, b)
    if a.id ~= b.id then return a.id < b.id end
    return a.generation < b.generation
  end)
  return {
    pid = core.pid(), mode = master.config().mode or runtime.options.mode,
    generation = master.generation(), uptime = math.floor((core.now() - started_at) / 1000),
    app = runtime.app, rss = core.rss(), workers = rows,
    lua_heap_kb = math.floor(collectgarbage("count")), -- garbage not yet collected included
    jobs = jobs.status(), -- cluster.job: one row per job (master/jobs.lua)
    shared_dicts = shdict.stats(), -- capacity, used, entries, evictions (read without their locks)
    pubsub = pubsub,
    upgrade = upgrade.status(), -- a binary upgrade in progress: the new master's pid, its binary
  }
end


local function handle(msg, conn)
  if type(msg) ~= "table" then
    return conn:close()
  end
  if msg.cmd == "reload" then
    reload.reload(function(err, gen)
      -- one line that keeps the reason (whatever the error's path through master/reload.lua)
      conn:reply(err and { ok = false, err = error_line.line(err) } or { ok = true, generation = gen })
    end)
  elseif msg.cmd == "upgrade" then
    upgrade.upgrade({ binary = type(msg.binary) == "string" and msg.binary or nil }, function(err, pid)
      conn:reply(err and { ok = false, err = error_line.line(err) } or { ok = true, pid = pid })
    end)
  elseif msg.cmd == "status" then
    conn:reply({ ok = true, status = _M.status() })
  elseif msg.cmd == "metrics" then
    conn:reply({ ok = true, text = metrics.render() })
  elseif msg.cmd == "stop" then
    conn:reply({ ok = true, pid = core.pid() }) -- luacluster stop waits for this pid to go
    master.stop(0)
  else
    conn:reply({ ok = false, err = "unknown command " .. tostring(msg.cmd) })
  end
end


local function reload_quietly(why)
  log.info(why .. ": reloading")
  reload.reload(function() end)
end


-- --watch: .lua files under the app's folder (each subfolder is watched: inotify is not
-- recursive), debounced so that an editor's burst of writes is one reload. A save while a
-- reload or a binary upgrade runs is reloaded once that has finished (a refused reload would
-- leave the saved code unserved until the next save); a master that stops reloads nothing.
local function watch(dir)
  local debounce, waiting
  local function changed(name)
    if not name:match("%.lua$") then
      return
    end
    if debounce then
      debounce:close()
    end
    debounce = core.timer_new(function()
      if master.is_stopping() then
        debounce:close()
        debounce = nil
        return
      end
      if reload.in_progress() or runtime.upgrading then
        if not waiting then
          waiting = true
          log.info("--watch: " .. name .. " changed: reloading once the " .. (runtime.upgrading and "upgrade" or "reload")
            .. " in progress has finished")
        end
        return debounce:start(300, 0)
      end
      debounce:close()
      debounce = nil
      waiting = nil
      reload_quietly("--watch: " .. name .. " changed")
    end)
    debounce:start(300, 0)
  end
  local p = io.popen("find '" .. dir:gsub("'", "'\\''") .. "' -maxdepth 6 -type d -not -path '*/.*' 2>/dev/null")
  local n = 0
  for sub in p:lines() do
    if n < 256 and core.fswatch(sub, changed) then
      n = n + 1
    end
  end
  p:close()
end


-- Takes the control socket before the app's top level runs (boot.lua), so that a second master
-- for the same app is refused before it starts a worker: on_taken(true) once it serves (at
-- once, or after asking a socket file left there whether its master still answers), or
-- on_taken(nil, err). Requests wait for the loop, which runs once the start is done.
function _M.take_control(options, on_taken)
  local path, err = options.control, nil
  if not path then
    path, err = control.default_path(runtime.app)
  end
  if not path then
    log.warn("no control socket: " .. tostring(err))
    runtime.no_control = true
    return on_taken(true)
  end
  control.serve(path, handle, function(srv, serr)
    if not srv then
      if serr and serr:find("another luacluster master is running", 1, true) then
        serr = serr .. "; stop it first, or give this one its own --control PATH"
      end
      return on_taken(nil, serr)
    end
    runtime.control_path = path
    runtime.control_server = srv
    on_taken(true)
  end)
end


-- A binary upgrade's new master, at the switch: it serves the control socket it inherited
-- (the same socket and file as the old master's) -> true | nil, err
function _M.serve_inherited(fd, path)
  local srv, err = control.serve_fd(fd, handle)
  if not srv then
    return nil, err
  end
  runtime.control_path = path
  runtime.control_server = srv
  return true
end


-- After the app's top level: reloads on SIGHUP and --watch, upgrades on SIGUSR2.
function _M.start(options)
  signals.set_action("SIGHUP", function()
    reload_quietly("SIGHUP")
  end)
  upgrade.set_control_retaker(function()
    _M.take_control(options, function(ok, err)
      if not ok then
        log.error("upgrade: cannot serve the control socket again: " .. tostring(err))
      end
    end)
  end)
  signals.set_action("SIGUSR2", function()
    log.info("SIGUSR2: upgrading the binary")
    upgrade.upgrade({}, function() end) -- (the steps and a refusal are logged)
  end)
  if options.watch then
    watch(runtime.app_dir)
  end
end


return {
  status = _M.status,
  take_control = _M.take_control,
  serve_inherited = _M.serve_inherited,
  start = _M.start,
}
