-- luacluster.master.core: the master's side of the cluster. It starts workers as new processes
-- of this executable, keeps the table of live workers, restarts crashed ones with backoff, and
-- stops the whole cluster gracefully. It owns the worker objects: its functions are the only
-- writers of a worker's state, and "ready" is defined here (worker:is_ready). What plugs into
-- it (control ops from workers, hooks) registers through register_op and add_hook, in the
-- order master/plugins.lua lists. Decisions live here; the processes, pipes and signals are
-- the C runtime's (runtime/process.c, ipc.c, signal.c).
local core = require("luacluster.core")
local channel = require("luacluster.lib.channel")
local codec = require("luacluster.lib.codec")
local defaults = require("luacluster.lib.defaults")
local emitter = require("luacluster.lib.emitter")
local emit3 = emitter.emit3
local error_line = require("luacluster.lib.error_line")
local keep = require("luacluster.lib.keep")
local log = require("luacluster.lib.log")
local registry = require("luacluster.lib.registry")
local routing = require("luacluster.master.routing")
local runtime = require("luacluster.lib.runtime")
local sequence = require("luacluster.master.sequence")
local shdict = require("luacluster.master.shdict")
local signals = require("luacluster.lib.signals")
local timer0 = require("luacluster.lib.timer0")

local now = core.now

local _M = {}

local QUICK_CRASH_MS = 1000      -- a worker that dies sooner than this after starting is backed off
local BACKOFF_FIRST_MS = 100
local BACKOFF_MAX_MS = 10000
local EXIT_GRACE_MS = 500        -- after a worker's exit, how long to wait for its last frames

-- the public table (cluster.*) is passed in by cluster.lua so that events land on it
local cluster
local cfg = {
  workers = nil, mode = nil, scheduler = "round_robin", drain_timeout = 30000, restart = true,
  start = "parallel", max_message_size = nil,
}
local setup_called, fork_called = false, false
local workers = {}        -- id -> live worker (cluster.workers)
local reserved = {}       -- id -> true while a restart for that id is pending
local backoff = {}        -- id -> consecutive quick crashes
local generation = 1
local stopping, stop_code = false, 0
local retired = {}        -- worker -> true: an old generation's workers, draining after a reload
local restarts = {}       -- id -> restarts of that slot
local slot_addrs = {}     -- id -> { "host:port" = true }: what the slot's worker serves (readiness)
local slot_error = {}     -- id -> the last crash of the slot's worker: its reason, one line
local restart_at = {}     -- id -> when a pending restart (backoff) starts the slot again
local logged_detail = {}  -- id -> the last top-level error logged in full for that slot
-- the first start: until every worker the top level asked for has been ready once, a worker
-- that fails before it is ready stops the master ("failed to boot"), as gunicorn does
local boot = { open = true, starting = true, waiting = 0 }
-- a worker's listen that fails before any listen was ever granted ends the whole start
local listened_once, last_listen_error = false, nil

local plugs = registry.new("master", { "fork", "online", "draining", "gone", "adopt", "ready", "stop", "setup_check" })

local worker_mt = {}
worker_mt.__index = worker_mt
emitter.mixin(worker_mt)


-- emits on the worker object, then on the cluster with the worker first
local function emit(w, event, ...)
  local a = w:emit(event, ...)
  local b = cluster:emit(event, w, ...)
  return a or b
end


local function report_error(w, err)
  local handled = w and w:emit("error", err)
  if not cluster:emit("error", err) and not handled then
    log.error(err)
  end
end


-- ---- worker objects ----

function worker_mt:send(msg, handle)
  if self.state == "dead" or not self._ch then
    return nil, "worker " .. self.id .. " has exited"
  end
  local ok, err = self._ch:send(msg, handle) -- refuses a closed channel itself: "channel closed"
  if not ok and err == "channel closed" then
    return nil, "worker " .. self.id .. " has exited"
  end
  if ok and handle then
    handle:close() -- ownership moved to the worker
  end
  return ok, err
end


function worker_mt:request(msg, timeout_ms, cb)
  if self.state == "dead" or not self._ch or self._ch:is_closed() then
    return channel.fail_request(timeout_ms, cb, "worker " .. self.id .. " has exited")
  end
  return self._ch:request(msg, timeout_ms, cb)
end


function worker_mt:kill(signal)
  signal = signal or "SIGTERM"
  if type(signal) ~= "string" or not core.signum(signal) then
    error("worker:kill: unknown signal '" .. tostring(signal) .. "'", 2)
  end
  if self.state == "dead" then
    return nil, "worker " .. self.id .. " has exited"
  end
  self.exited_after_disconnect = true
  return self._proc:kill(signal)
end


function worker_mt:disconnect()
  if self.state == "dead" or self.state == "draining" then
    return
  end
  self.exited_after_disconnect = true
  self.state = "draining"
  plugs:run("draining", self)
  if self._ch and not self._ch:is_closed() then
    -- the worker's own deadline is the one the master keeps (a reload may have changed it)
    self._ch:control({ op = "disconnect", drain_timeout = cfg.drain_timeout })
  end
  self._drain_timer = core.timer_new(function()
    if self.state ~= "dead" then
      log.warn(string.format("worker %d (pid %d) did not drain within %d ms; killing it", self.id, self.pid, cfg.drain_timeout))
      self._proc:kill("SIGKILL")
    end
  end)
  self._drain_timer:start(cfg.drain_timeout, 0)
end


function worker_mt:is_dead()
  return self.state == "dead"
end


-- ready: see "readiness" below (the one definition; reload, sequence, limits and status ask this)
function worker_mt:is_ready()
  return self._ready == true
end


-- up: its top level has run, it has its channel, and it is neither draining nor dead (it can
-- take a pool task; ready or not)
function worker_mt:is_up()
  return (self.state == "online" or self.state == "listening") and self._online == true and self._ch ~= nil
end


-- a runtime control message to this worker (listen results, ...); the handle is kept here
function worker_mt:_control(msg, handle)
  if self.state == "dead" or not self._ch or self._ch:is_closed() then
    return nil, "worker " .. self.id .. " has exited"
  end
  return self._ch:control(msg, handle)
end


-- ---- readiness ----
-- A worker is ready (hooks.ready: a reload or a sequential start goes on, the first start
-- counts it, the heartbeat watches it) when
--   ready = "manual": it has called cluster.worker:ready() (sent after its top level ran);
--   otherwise: one loop turn after its top level ran ("settled"), once it serves every
--   address its slot served before (w._expect), or an address its slot did not (new code
--   that listens elsewhere); or as soon as it calls cluster.worker:ready().
-- A worker that never becomes ready is a reload's reload_timeout or the heartbeat's start
-- watch (luacluster.master.limits) to deal with.

local function served(w)
  local set = {}
  for _, l in pairs(w._listens or {}) do
    if l.addr then
      set[l.addr] = true
    end
  end
  return set
end


local function serves_enough(w)
  local have = served(w)
  for addr in pairs(have) do
    if not w._expect[addr] then
      return true -- it listens where its slot did not: the code moved
    end
  end
  for addr in pairs(w._expect) do
    if not have[addr] then
      return false
    end
  end
  return true
end


local function boot_check()
  if boot.open and not boot.starting and boot.waiting <= 0 then
    boot.open = false
  end
end


local function check_ready(w)
  if w._ready or w.state == "dead" or w.state == "draining" or not w._online then
    return
  end
  if w._said_ready then
    -- the app said so
  elseif w._ready_mode == "manual" or not w._settled or not serves_enough(w) then
    return
  end
  w._ready = true
  if workers[w.id] == w then
    slot_addrs[w.id] = served(w)
  end
  if w._boot then
    w._boot = nil
    boot.waiting = boot.waiting - 1
    boot_check()
  end
  plugs:run("ready", w)
end


-- the first line of an error, without the lines `require` adds (where it looked)
-- a worker's failure (w._failed: its first line, w._failed_detail: the whole error) as one line
-- that keeps the reason (lib/error_line.lua)
local function short(w)
  return error_line.line(w._failed_detail or w._failed)
end


-- ---- lifecycle ----

local spawn_worker


local function check_stopped()
  if stopping and next(workers) == nil and next(retired) == nil then
    -- children started through child_process end too (SIGTERM, then SIGKILL)
    runtime.end_children(function() runtime.exit(stop_code) end)
  end
end


local function schedule_restart(w, uptime)
  local id = w.id
  local n = backoff[id] or 0
  if uptime < QUICK_CRASH_MS then
    n = n + 1
  else
    n = 0
  end
  backoff[id] = n
  restarts[id] = (restarts[id] or 0) + 1
  local delay = n == 0 and 0 or math.min(BACKOFF_FIRST_MS * 2 ^ (n - 1), BACKOFF_MAX_MS)
  restart_at[id] = now() + delay
  log.warn(string.format("restarting worker %d in %d ms%s", id, delay,
    n > 0 and string.format(" (%d quick crash%s in a row)", n, n == 1 and "" or "es") or ""))
  reserved[id] = true
  local t
  t = core.timer_new(function()
    t:close()
    reserved[id] = nil
    restart_at[id] = nil
    if not stopping and not workers[id] then
      spawn_worker(id, w._env, generation)
    end
  end)
  t:start(delay, 0)
end


local function finish(w)
  if w._finished then
    return
  end
  w._finished = true
  if w._grace then
    w._grace:close()
  end
  if w._drain_timer then
    w._drain_timer:close()
  end
  if not w._disconnected then
    w._disconnected = true
    emit(w, "disconnect")
  end
  w.state = "dead"
  if workers[w.id] == w then
    workers[w.id] = nil
  end
  retired[w] = nil
  plugs:run("gone", w)
  local code, signal = w._exit_code, w._exit_signal
  local uptime = now() - w._started
  local crashed = signal ~= nil or code ~= 0
  local how = signal and ("signal " .. signal) or ("code " .. tostring(code))
  local fatal_listen = code == 98 and not listened_once and last_listen_error ~= nil
  -- a worker of the first start that fails before it is ready (not one the heartbeat killed)
  local boot_failed = w._boot and crashed and not w.exited_after_disconnect and not w._hb_killed
    and not fatal_listen and not stopping
  if w._boot then
    w._boot = nil
    boot.waiting = boot.waiting - 1
  end
  if crashed and not w.exited_after_disconnect and not w._pending then
    slot_error[w.id] = w._failed and short(w) or ("exited with " .. how .. " after " .. math.floor(uptime) .. " ms")
  end
  if crashed and not w.exited_after_disconnect and not fatal_listen and not boot_failed and not stopping then
    local why = w._failed and (": " .. short(w)) or ""
    log.warn(string.format("worker %d (pid %d) exited with %s after %d ms%s", w.id, w.pid, how, uptime, why))
    -- the whole error (a require's list of paths, the traceback) once per slot and error
    if w._failed_detail and w._failed_detail ~= logged_detail[w.id] then
      logged_detail[w.id] = w._failed_detail
      log.error("worker " .. w.id .. " failed at its top level: " .. w._failed_detail)
    end
  end
  emit(w, "exit", code, signal)
  if fatal_listen and not stopping then
    -- the cluster could not start serving (a port in use, no permission): say so once, stop
    error_line.report(last_listen_error)
    _M.stop(1)
    return
  end
  if boot_failed then
    -- one clear line, not a traceback per restart: the app cannot start, so neither can the cluster
    error_line.report(string.format("worker %d failed to boot: %s", w.id,
      w._failed and short(w) or ("it exited with " .. how .. " before it was ready")))
    _M.stop(1)
    return
  end
  boot_check()
  if crashed and not w.exited_after_disconnect and cfg.restart ~= false and not stopping and not fatal_listen
    and not w._pending and not retired[w] then
    schedule_restart(w, uptime)
  end
  check_stopped()
end


local function on_process_exit(w, code, signal)
  w._exit_code, w._exit_signal = code, signal
  w._exited = true
  if w._disconnected then
    finish(w)
    return
  end
  -- the channel may still hold the worker's last messages: read them, but not forever
  w._grace = core.timer_new(function()
    w._ch:close()
  end)
  w._grace:start(EXIT_GRACE_MS, 0)
end


local function on_channel_close(w)
  if w._disconnected then
    return
  end
  w._disconnected = true
  if w.state ~= "dead" then
    emit(w, "disconnect")
  end
  if w._exited then
    finish(w)
  end
end


-- "online" fires once per worker, before its "listening": a worker that listens at its top
-- level asks for the socket before it reports online, so listen_master calls this first.
function _M.mark_online(w)
  if w._online then
    return
  end
  w._online = true
  if w.state == "starting" then
    w.state = "online"
  end
  emit(w, "online")
  plugs:run("online", w)
end


local function on_control(w, msg, handle)
  if type(msg) ~= "table" then
    return
  end
  local op = msg.op
  if op == "online" then -- its top level has run
    _M.mark_online(w)
  elseif op == "settled" then -- one loop turn later: listens asked for by then are answered
    w._settled = true
    check_ready(w)
  elseif op == "ready" then -- cluster.worker:ready()
    w._said_ready = true
    check_ready(w)
  elseif op == "failed" then -- its top level raised (boot.lua): why, before it exits
    w._failed = type(msg.err) == "string" and msg.err or nil
    w._failed_detail = type(msg.detail) == "string" and msg.detail or nil
  elseif op == "disconnecting" then -- the worker called cluster.worker:disconnect()
    if w.state ~= "dead" and w.state ~= "draining" then
      w.exited_after_disconnect = true
      w.state = "draining"
      plugs:run("draining", w)
    end
  elseif plugs:handler(op) then
    plugs:handler(op)(w, msg, handle)
  elseif handle then
    handle:close()
  end
end


-- wcfg: the setup of the worker's generation (a reload's new workers start while the old
-- generation's setup is still the live one)
local function env_list(extra, id, gen, wcfg)
  local env = core.environ()
  if extra then
    for k, v in pairs(extra) do
      env[tostring(k)] = tostring(v)
    end
  end
  local o = runtime.options
  env.LUACLUSTER_ROLE = "worker"
  env.LUACLUSTER_WORKER_ID = tostring(id)
  env.LUACLUSTER_GENERATION = tostring(gen)
  env.LUACLUSTER_IPC_FD = "3"
  env.LUACLUSTER_PORT = tostring(o.port)
  env.LUACLUSTER_HOST = o.host
  env.LUACLUSTER_MODE = wcfg.mode or o.mode
  env.LUACLUSTER_WORKERS = tostring(wcfg.workers or defaults.workers(o)) -- ngx.worker.count()
  env.LUACLUSTER_DRAIN_TIMEOUT = tostring(wcfg.drain_timeout)
  env.LUACLUSTER_MAX_MESSAGE_SIZE = wcfg.max_message_size and tostring(wcfg.max_message_size) or nil
  env.LUACLUSTER_LOG_FORMAT = o.log_format
  env.LUACLUSTER_SHDICT = shdict.env_value() -- the shared dictionaries' file (stdio entry 5)
  local list = {}
  for k, v in pairs(env) do
    list[#list + 1] = k .. "=" .. v
  end
  return list
end



-- pending: a worker of a new generation during a reload; it joins cluster.workers (and gets
-- connections and routed messages) only when the reload switches to it (_M.adopt)
local function new_worker(id, env, gen, pending, wcfg)
  return setmetatable({
    id = id, generation = gen or generation, state = "starting", exited_after_disconnect = false,
    _env = env, _started = now(), _pending = pending or nil, _ready_mode = (wcfg or cfg).ready,
  }, worker_mt)
end


-- w: an object made earlier by new_worker (a fork during a reload's new top level);
-- wcfg: the setup of the worker's generation (master/reload.lua: the new code's), else the live one
function spawn_worker(id, env, gen, pending, w, wcfg)
  gen = gen or generation
  wcfg = wcfg or cfg
  w = w or new_worker(id, env, gen, pending, wcfg)
  w._started = now()
  w._ready_mode = wcfg.ready -- its generation's rule (a reload's new code may have changed it)
  w._setup = wcfg -- its generation's setup (_M.setup_of)
  local expect = {}
  for addr in pairs(slot_addrs[id] or {}) do
    expect[addr] = true
  end
  w._expect = expect
  local ch, on_frame = channel.new({
    message = function(msg, handle)
      -- emit(w, "message", msg, handle), with the cluster's handlers on emit3's cheaper path
      local a = w:emit("message", msg, handle)
      if not emit3(cluster, "message", w, msg, handle) and not a and handle then
        handle:close()
      end
    end,
    control = function(msg, handle) on_control(w, msg, handle) end,
    request = emitter.request_handler(cluster, "the master has no cluster.on(\"request\") handler", w),
    error = function(err) report_error(w, "worker " .. id .. ": " .. tostring(err)) end,
    close = function() on_channel_close(w) end,
  })
  local ipc = core.ipc_new(function(kind, peer, seq, payload, handle)
    if routing.is_routed(kind) and handle == nil then
      return routing.forward(workers, retired, w, kind, peer, seq, payload)
    end
    return on_frame(kind, peer, seq, payload, handle)
  end)
  ch.handle = ipc
  w._serial = ipc:serial() -- this process's channel: the dispatch keys what it sent it by this
  if wcfg.max_message_size then
    ipc:set_max_frame(wcfg.max_message_size)
  end
  local args = { runtime.app }
  for i = 1, #runtime.argv do
    args[#args + 1] = runtime.argv[i]
  end
  local prefix = "[worker " .. id .. "] "
  local proc, err = core.spawn({
    file = runtime.exe,
    args = args,
    env = env_list(env, id, gen, wcfg),
    stdio = { "ignore", { prefix = prefix, fd = 1 }, { prefix = prefix, fd = 2 }, ipc, shdict.stdio_entry() },
  }, function(code, signal)
    on_process_exit(w, code, signal)
  end)
  if not proc then
    ipc:close()
    report_error(nil, "cannot start worker " .. id .. ": " .. tostring(err))
    return nil, err
  end
  w.pid = proc:pid()
  w._proc = proc
  w._ch = ch
  if not pending then
    routing.route_to(w, ipc) -- routed messages to id now reach this worker
    workers[id] = w
    if boot.open then
      w._boot = true
      boot.waiting = boot.waiting + 1
    end
  end
  emit(w, "fork")
  plugs:run("fork", w)
  return w
end


local function free_id()
  local id = 1
  while workers[id] or reserved[id] do
    id = id + 1
  end
  return id
end


-- ---- the cluster API (master side) ----

local SETUP_KEYS = {
  workers = "number", mode = "string", scheduler = true, drain_timeout = "number",
  restart = "boolean", start = "string", max_message_size = "number", reload_timeout = "number",
  ready = "string", -- "auto" (default) | "manual": the worker says when with cluster.worker:ready()
  -- resource limits and the heartbeat (luacluster.master.limits)
  max_requests = "number", max_memory = "number", heartbeat_interval = "number", heartbeat_timeout = "number",
  metrics = true, -- "host:port" or a port: the Prometheus listener (luacluster.master.metrics)
  jobs = "table", -- { redis = "host:port" }: cluster.job's runs claimed in Redis (luacluster.master.jobs)
  pubsub = "table", -- { redis = "host:port" }: publishes across hosts (luacluster.master.pubsub_redis)
  shared_dicts = "table", -- name = size: luacluster.shared's dictionaries (master/shdict.lua)
  tls_ticket_rotate = "number", -- ms between TLS session ticket key rotations (master/tls_tickets.lua)
}


function _M.setup(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("cluster.setup: expected a table of options", 2)
  end
  for k, v in pairs(opts) do
    local want = SETUP_KEYS[k]
    if not want then
      error("cluster.setup: unknown option '" .. tostring(k) .. "'", 2)
    end
    if want ~= true and type(v) ~= want then
      error("cluster.setup: " .. k .. " must be a " .. want, 2)
    end
  end
  if opts.workers and (opts.workers < 0 or opts.workers % 1 ~= 0) then
    error("cluster.setup: workers must be a whole number >= 0", 2)
  end
  if opts.mode and not defaults.is_mode(opts.mode) then
    error("cluster.setup: mode must be " .. defaults.MODE_NAMES, 2)
  end
  if opts.start and opts.start ~= "parallel" and opts.start ~= "sequential" then
    error("cluster.setup: start must be \"parallel\" or \"sequential\"", 2)
  end
  if opts.ready and opts.ready ~= "auto" and opts.ready ~= "manual" then
    error("cluster.setup: ready must be \"auto\" or \"manual\"", 2)
  end
  if opts.drain_timeout and opts.drain_timeout < 0 then
    error("cluster.setup: drain_timeout must be >= 0", 2)
  end
  if opts.max_message_size and not (opts.max_message_size >= 16 and opts.max_message_size <= core.max_message_size) then
    error("cluster.setup: max_message_size must be from 16 to " .. core.max_message_size
      .. " bytes (the longest string LuaJIT holds)", 2)
  end
  local refused = plugs:first("setup_check", opts) -- the plugins' own options (limits, metrics)
  if refused then
    error("cluster.setup: " .. refused, 2)
  end
  if opts.shared_dicts then -- created now: the top level may use them, every worker maps them
    local want, serr = shdict.check(opts.shared_dicts)
    if want then
      serr = select(2, shdict.declare(want, runtime.staging ~= nil, fork_called or next(workers) ~= nil))
    end
    if serr then
      error("cluster.setup: " .. serr, 2)
    end
  end
  if runtime.staging then -- a reload is running the new code: its setup applies at the switch
    for k, v in pairs(opts) do
      runtime.staging.cfg[k] = v
    end
    runtime.staging.setup_called = true
    return
  end
  for k, v in pairs(opts) do
    cfg[k] = v
  end
  setup_called = true
end


function _M.fork(env)
  if env ~= nil and type(env) ~= "table" then
    error("cluster.fork: env must be a table", 2)
  end
  if stopping then
    return nil, "the cluster is stopping"
  end
  if runtime.staging then -- the new code's top level during a reload: these start as its generation
    local forks = runtime.staging.forks
    local w = new_worker(#forks + 1, env, runtime.staging.gen, true)
    forks[#forks + 1] = w -- started by master/reload.lua (spawn_next); its events fire on this object
    return w
  end
  fork_called = true
  return spawn_worker(free_id(), env)
end


-- cluster.keep(name [, initial]) -> table: state a reload carries into the new code (lib/keep.lua)
function _M.keep(name, initial)
  return keep.keep(runtime.staging, name, initial)
end


function _M.broadcast(msg)
  local bytes, err = codec.encode(msg)
  if not bytes then
    return nil, err
  end
  local max = cfg.max_message_size
  if max and #bytes > max then
    return nil, string.format("message of %d bytes is over the limit of %d bytes", #bytes, max)
  end
  for _, w in pairs(workers) do
    if w.state ~= "dead" then
      w._ch:send_encoded(bytes)
    end
  end
  -- an old generation's draining workers still have clients to tell (until they exit)
  for w in pairs(retired) do
    if w.state ~= "dead" and w._ch and not w._ch:is_closed() then
      w._ch:send_encoded(bytes)
    end
  end
  return true
end


function _M.stop(code)
  if code ~= nil and (type(code) ~= "number" or code % 1 ~= 0) then
    error("cluster.stop: code must be a whole number", 2)
  end
  if stopping then
    return
  end
  stopping = true
  stop_code = code or 0
  runtime.exit_code = stop_code
  plugs:run("stop")
  local ids = {}
  for id in pairs(workers) do
    ids[#ids + 1] = id
  end
  table.sort(ids, function(a, b) return a > b end)
  if cfg.start == "sequential" then
    sequence.disconnect_in_order(_M, ids) -- each after the previous has exited
  else
    for _, id in ipairs(ids) do
      workers[id]:disconnect()
    end
  end
  for w in pairs(retired) do
    w:disconnect()
  end
  -- with no worker to wait for, exit once the caller's callback (or top level) has finished
  timer0.next_turn(check_stopped)
end


local function stop_now(code)
  for _, w in pairs(workers) do
    if w._proc then
      w._proc:kill("SIGKILL")
    end
  end
  for w in pairs(retired) do
    if w._proc then
      w._proc:kill("SIGKILL")
    end
  end
  runtime.end_children_now()
  runtime.exit(code)
end


function _M.config()
  return cfg
end


-- the setup of w's generation: a reload's new workers start while the old setup is still the
-- live one (master/tls_tickets.lua reads their tls_ticket_rotate)
function _M.setup_of(w)
  return w._setup or cfg
end


-- ---- the other writers of a worker's state go through these ----

-- master/listen.lua: worker w was given a listening socket
function _M.listen_granted(w)
  listened_once = true
  if not w._online then
    _M.mark_online(w) -- a listen at the worker's top level comes before its "online"
  end
  w.state = w.state == "draining" and "draining" or "listening"
end


-- the listens a worker was granted: key -> listener (master/listen.lua keeps what is in them)
function _M.listens(w)
  local l = w._listens
  if not l then
    l = {}
    w._listens = l
  end
  return l
end


-- master/listen.lua: the connections handed to w and not closed yet (w.connections, which
-- the least_connections scheduler reads) change by delta, never below 0
function _M.count_connections(w, delta)
  local n = (w.connections or 0) + delta
  w.connections = n > 0 and n or 0
end


-- master/limits.lua: a worker whose loop is stuck gets SIGKILL (it is restarted as a crash is,
-- but is not a failed boot)
function _M.kill_stuck(w)
  w._hb_killed = true
  w._proc:kill("SIGKILL")
end


function _M.was_killed_stuck(w)
  return w._hb_killed == true
end


-- a new worker that is no longer wanted (a reload that failed, a replacement that was not
-- ready in time): SIGKILL, and it is not restarted
function _M.abandon(w)
  w.exited_after_disconnect = true
  if w.state ~= "dead" then
    w._proc:kill("SIGKILL")
  end
end


-- a reload's forks (cluster.fork() in the new code) that were never started are dead
function _M.discard_unstarted(forks)
  for _, w in ipairs(forks) do
    if not w._proc then
      w.state = "dead"
    end
  end
end


-- master/listen.lua: a worker's listen failed -> fatal (nothing has listened yet: the start ends)
function _M.listen_failed(err)
  last_listen_error = err
  return not listened_once
end


-- master/listen.lua: worker w could not listen because its certificate did not load: the
-- worker's failure (its first), so that a reload's refusal names the file (master/reload.lua)
function _M.note_worker_failure(w, err)
  w._failed = w._failed or tostring(err)
end


-- master/reload.lua: the new code's top level runs in this stage (nil once it has run); while
-- it is set, cluster.setup, cluster.fork, cluster.keep and listens go to the stage
function _M.set_staging(stage)
  runtime.staging = stage -- (in runtime: serve/listen.lua and cluster.lua read it, below this module)
end


function _M.generation()
  return generation
end


function _M.is_stopping()
  return stopping
end


-- how many serving workers are ready (the first generation's start: systemd's READY=1, an
-- upgrade's switch)
function _M.ready_count()
  local n = 0
  for _, w in pairs(workers) do
    if w:is_ready() then
      n = n + 1
    end
  end
  return n
end


-- ---- what plugs into the master (master/plugins.lua lists it, in order) ----
-- control ops: a worker's control message of that op -> fn(worker, msg, handle);
-- hooks fn(worker): fork, online, draining (it starts draining), gone (it exited), adopt (a
-- reload's new worker takes its slot), ready (see readiness); fn(): stop (a graceful stop
-- begins); fn(opts) -> nil | reason: setup_check (cluster.setup's options of a plugin).

-- register_op(name, fn) -> remover (a name taken already raises, naming both registrations);
-- add_hook(list, fn) -> remover (hooks of a list run in the order they were added)
_M.register_op, _M.add_hook = plugs:api()


-- what is plugged in, one line per op and per hook list (file:line of each registration)
function _M.describe_plugs()
  return plugs:describe()
end


-- ---- generations (used by master/reload.lua) ----

function _M.spawn(id, env, gen, pending, w, wcfg)
  return spawn_worker(id, env, gen, pending, w, wcfg)
end


-- a new generation's worker takes its slot: cluster.workers, routed messages, connections
function _M.adopt(w)
  w._pending = nil
  workers[w.id] = w
  slot_addrs[w.id] = served(w)
  slot_error[w.id] = nil
  routing.route_to(w, w._ch.handle)
  plugs:run("adopt", w)
end


-- an old generation's worker leaves cluster.workers and drains
function _M.retire(w)
  if workers[w.id] == w then
    workers[w.id] = nil
  end
  if w.state ~= "dead" then
    retired[w] = true
    w:disconnect()
  end
end


function _M.set_generation(g)
  generation = g
end


function _M.replace_config(new_cfg, new_setup_called)
  for k in pairs(cfg) do
    cfg[k] = nil
  end
  for k, v in pairs(new_cfg) do
    cfg[k] = v
  end
  setup_called = new_setup_called
end


function _M.default_config()
  return {
    workers = nil, mode = nil, scheduler = "round_robin", drain_timeout = 30000, restart = true,
    start = "parallel", max_message_size = nil,
  }
end


function _M.restarts(id)
  return restarts[id] or 0
end


-- A binary upgrade (lib/crossing.lua, registered by master/upgrade.lua): the generation count
-- and each slot's restarts go on in the new master, whose first workers are the next generation
function _M.export_counts()
  local r = {}
  for id, n in pairs(restarts) do
    r[#r + 1] = { id, n }
  end
  return { generation = generation, restarts = r }
end


function _M.import_counts(v)
  if type(v) ~= "table" then
    return
  end
  generation = (tonumber(v.generation) or 0) + 1
  for _, e in ipairs(v.restarts or {}) do
    restarts[e[1]] = e[2]
  end
end


-- the last crash of slot id's worker (one line), or nil
function _M.slot_error(id)
  return slot_error[id]
end


-- slots waiting out a restart's backoff: id -> ms until the restart
function _M.backoff_slots()
  local list, t = {}, now()
  for id in pairs(reserved) do
    if not workers[id] then
      list[id] = math.max(0, math.floor((restart_at[id] or t) - t))
    end
  end
  return list
end


function _M.retired()
  return retired
end


-- every worker with a process: the serving ones and an old generation's draining ones, by id
-- then generation
function _M.live_workers()
  local list = {}
  for _, w in pairs(workers) do
    list[#list + 1] = w
  end
  for w in pairs(retired) do
    list[#list + 1] = w
  end
  table.sort(list, function(a, b)
    if a.id ~= b.id then return a.id < b.id end
    return a.generation < b.generation
  end)
  return list
end


-- how many workers a top level asks for: its setup's count, else as many as it forked, else
-- the command line's (or one per CPU)
function _M.wanted_workers(c, was_setup, forks)
  if was_setup then
    return c.workers or defaults.workers(runtime.options)
  elseif forks and forks > 0 then
    return forks
  end
  return defaults.workers(runtime.options)
end
-- master/listen.lua emits "listening" through this: a listen can make a worker ready
function _M.emit(w, event, ...)
  local r = emit(w, event, ...)
  if event == "listening" then
    if workers[w.id] == w and w._ready then
      slot_addrs[w.id] = served(w) -- a listen made later (after a ready): the slot serves it too
    end
    check_ready(w)
  end
  return r
end


-- an event of the cluster itself (reload)
function _M.emit_cluster(event, ...)
  return cluster:emit(event, ...)
end

_M.workers = workers


-- options: the command line's; the_cluster: the public table (luacluster.cluster) whose
-- events (cluster.on) the master emits
function _M.init(options, the_cluster)
  cluster = the_cluster
  local function on_stop_signal(name)
    if stopping then
      log.warn(name .. " again: stopping at once")
      stop_now(1)
    end
    log.info(name .. ": stopping gracefully (send it again to stop at once)")
    _M.stop(0)
  end
  signals.set_action("SIGINT", on_stop_signal)
  signals.set_action("SIGTERM", on_stop_signal)
  _M.options = options
end


function _M.after_top_level()
  -- the workers its cluster.fork() calls started are all it asked for (without a setup)
  local n = fork_called and not setup_called and 0 or _M.wanted_workers(cfg, setup_called)
  _M.initial_workers = n -- the first generation serves once n workers are ready (master/ops.lua: READY=1)
  local function started()
    boot.starting = false
    boot_check()
  end
  if cfg.start == "sequential" then
    sequence.start(_M, n, started) -- one at a time, each after the previous is ready
    return
  end
  for _ = 1, n do
    _M.fork()
  end
  started()
end


-- a reload that switched ends the first start's watch (its workers are retired anyway)
function _M.end_boot()
  boot.open = false
end


return _M
