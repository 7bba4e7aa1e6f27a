-- Resource limits of workers, as users of PM2 and gunicorn expect them:
--   cluster.setup{ max_requests = N }      a worker that has served N requests is replaced
--   cluster.setup{ max_memory = bytes }    a worker whose RSS passes the limit is replaced
--   cluster.setup{ heartbeat_interval = ms, heartbeat_timeout = ms }
--                                          a worker whose event loop does not answer a ping
--                                          within heartbeat_timeout is SIGKILLed (and restarted
--                                          as any crashed worker is); so is one that is not
--                                          ready (master/core.lua's rule: its top level still
--                                          running, or, under ready = "manual", it has not
--                                          called cluster.worker:ready()) that long after it
--                                          started
-- Replacing is graceful, one slot at a time, as a reload does it for that slot: the
-- replacement starts (same id, current generation), and only once it is ready (its top level
-- ran, its listens were answered) does it take the slot and the old worker drain. A
-- replacement that fails to become ready changes nothing; the old worker keeps serving and
-- the next try waits (backoff).
-- The master pings each ready worker every heartbeat_interval ms with a control message; the
-- worker answers from its event loop (worker/limits.lua). The master reads workers' RSS from
-- /proc. A worker counts its requests itself (its HTTP servers' counters) and asks for its
-- replacement (worker/limits.lua).
local core = require("luacluster.core")
local log = require("luacluster.lib.log")
local reload = require("luacluster.master.reload")

local now = core.now

local DEFAULTS, replace, attach

DEFAULTS = {
  max_requests = 0,           -- 0: no limit
  max_memory = 0,             -- bytes of RSS; 0: no limit
  heartbeat_interval = 1000,  -- ms between pings; 0: no heartbeat
  heartbeat_timeout = 30000,  -- ms without an answer before a worker is killed; 0: never
}

local RETRY_FIRST_MS = 1000
local RETRY_MAX_MS = 60000
local REPLACE_TIMEOUT_MS = 30000  -- unless cluster.setup{reload_timeout=}


-- cluster.setup's checks of the keys above (their types are checked by master/core.lua):
-- -> nil | the reason it refuses them
local function check_setup(opts)
  for k in pairs(DEFAULTS) do
    local v = opts[k]
    if v ~= nil and (v < 0 or v ~= v or v == math.huge) then
      return k .. " must be a number >= 0"
    end
  end
  if opts.max_requests and opts.max_requests % 1 ~= 0 then
    return "max_requests must be a whole number"
  end
end


-- ---- the master's side ----

local master
local pending = {}      -- replacement worker -> the worker it replaces
local tick_timer, ticking
-- worker -> what this module keeps about it (the worker object is master/core.lua's):
--   hb_wait   when the oldest ping not answered yet was sent (nil: none is outstanding)
--   hb_seq    the last ping's number
--   started   when it was forked (the start watch)
--   recycling a replacement is starting; recycle_fails, recycle_after: the retry backoff
--   recycle_reason  why it asked to be replaced (max_requests), tried again after a failure
--   deadline  (a replacement) the timer that gives up on it
local per = setmetatable({}, { __mode = "k" })


local function of(w)
  local s = per[w]
  if not s then
    s = {}
    per[w] = s
  end
  return s
end


local function setting(k)
  local v = master.config()[k]
  if v == nil then
    return DEFAULTS[k]
  end
  return v
end


local function mb(bytes)
  return string.format("%.1f MB", bytes / 1048576)
end


local function retry_later(old)
  of(old).recycling = nil
  of(old).recycle_fails = (of(old).recycle_fails or 0) + 1
  of(old).recycle_after = now() + math.min(RETRY_FIRST_MS * 2 ^ (of(old).recycle_fails - 1), RETRY_MAX_MS)
end


-- Starts the replacement of worker `old` for `why`; the switch happens when it is ready.
function replace(old, why)
  if of(old).recycling or old.state == "dead" or old.state == "draining" or old._pending
    or master.workers[old.id] ~= old or master.is_stopping() then
    return false
  end
  if of(old).recycle_after and now() < of(old).recycle_after then
    return false
  end
  if reload.in_progress() then
    return false -- the reload replaces it anyway
  end
  of(old).recycling = true
  log.info(string.format("worker %d (pid %d) %s; starting its replacement", old.id, old.pid, why))
  local new, err = master.spawn(old.id, old._env, master.generation(), true)
  if not new then
    log.warn(string.format("cannot start the replacement of worker %d: %s; it keeps serving", old.id, tostring(err)))
    retry_later(old)
    return false
  end
  pending[new] = old
  local limit = master.config().reload_timeout or REPLACE_TIMEOUT_MS
  of(new).deadline = core.timer_new(function()
    of(new).deadline:close()
    if pending[new] then
      pending[new] = nil
      log.warn(string.format("the replacement of worker %d (pid %d) was not ready within %d ms; worker %d keeps serving",
        old.id, new.pid, limit, old.id))
      master.abandon(new)
      retry_later(old)
    end
  end)
  of(new).deadline:start(limit, 0)
  return true
end


local function on_ready(new)
  local old = pending[new]
  if not old then
    return
  end
  pending[new] = nil
  of(new).deadline:close() -- closing twice is harmless
  local current = master.workers[new.id]
  if (current ~= nil and current ~= old) or master.is_stopping() then
    -- the slot was filled meanwhile (the old worker crashed and was restarted), or the
    -- cluster is stopping: this one is not needed
    master.retire(new)
    return
  end
  master.adopt(new)
  if old.state ~= "dead" then
    master.retire(old)
  end
  log.info(string.format("worker %d: pid %d replaced pid %d", new.id, new.pid, old.pid))
end


local function on_gone(w)
  local old = pending[w]
  if old then -- the replacement died before it was ready
    pending[w] = nil
    of(w).deadline:close()
    log.warn(string.format("the replacement of worker %d exited before it was ready; worker %d keeps serving", w.id, w.id))
    retry_later(old)
  end
end


-- how: what the worker has not done for `ms` ms
local function kill_stuck(w, how, ms)
  log.warn(string.format("worker %d (pid %d) %s for %d ms; killing it with SIGKILL", w.id, w.pid, how, ms))
  master.kill_stuck(w)
end


-- of(w).hb_wait: when the oldest ping not answered yet was sent (nil: none is outstanding)
local function heartbeat(w, t, timeout)
  if timeout > 0 and of(w).hb_wait and t - of(w).hb_wait > timeout and not master.was_killed_stuck(w) then
    return kill_stuck(w, "has not answered a heartbeat (its event loop is stuck)", t - of(w).hb_wait)
  end
  of(w).hb_seq = (of(w).hb_seq or 0) + 1
  if w:_control({ op = "ping", seq = of(w).hb_seq }) and not of(w).hb_wait then
    of(w).hb_wait = t
  end
end


-- A worker in a slot that has not become ready (its top level has not finished, or its
-- listens were not answered) within heartbeat_timeout of its start: its loop cannot answer a
-- ping either. (A new generation's workers and replacements have their own deadline.)
local function start_watch(w, t, timeout)
  if timeout > 0 and of(w).started and t - of(w).started > timeout and not master.was_killed_stuck(w)
    and w.state ~= "dead" and w.pid then
    local why = w._online and w._ready_mode == "manual" and "(it has not called cluster.worker:ready())"
      or w._online and "(it does not serve what its slot served)" or "(its top level has not finished)"
    kill_stuck(w, "has not become ready since it started " .. why, t - of(w).started)
  end
end


local function tick()
  local interval, timeout = setting("heartbeat_interval"), setting("heartbeat_timeout")
  local max_memory = setting("max_memory")
  local t = now()
  for _, w in pairs(master.workers) do
    if not w:is_ready() and not w._pending then
      if interval > 0 then
        start_watch(w, t, timeout)
      end
    elseif w:is_ready() and (w.state == "online" or w.state == "listening") and not w._pending then
      if interval > 0 then
        heartbeat(w, t, timeout)
      end
      if of(w).recycle_reason and not of(w).recycling and not master.was_killed_stuck(w) then
        replace(w, of(w).recycle_reason) -- a try that failed earlier, again after its backoff
      end
      if max_memory > 0 and w.pid and not of(w).recycling and not master.was_killed_stuck(w) then
        local rss = core.pid_rss(w.pid)
        if rss and rss > max_memory then
          replace(w, string.format("uses %s of memory, over max_memory (%s)", mb(rss), mb(max_memory)))
        end
      end
    end
  end
  tick_timer:start(interval > 0 and interval or 1000, 0)
end


-- plugs the master's half into the master (master/plugins.lua)
function attach(m)
  master = m
  m.add_hook("setup_check", check_setup)
  m.register_op("pong", function(w)
    of(w).hb_wait = nil
  end)
  -- a worker that has served max_requests asks for its replacement
  m.register_op("recycle", function(w, msg)
    local max = setting("max_requests")
    if max > 0 and type(msg.requests) == "number" and msg.requests >= max then
      of(w).recycle_reason = string.format("has served %d requests (max_requests %d)", msg.requests, max)
      replace(w, of(w).recycle_reason)
    end
  end)
  -- ticks from the first worker on (cluster.setup has run by then: its settings hold)
  local function start_ticking()
    if not ticking then
      ticking = true
      tick_timer:start(setting("heartbeat_interval") > 0 and setting("heartbeat_interval") or 1000, 0)
    end
  end
  m.add_hook("fork", function(w)
    of(w).started = now()
    start_ticking()
  end)
  m.add_hook("ready", function(w)
    start_ticking()
    local max = setting("max_requests")
    if max > 0 then
      w:_control({ op = "limits", max_requests = max })
    end
    on_ready(w)
  end)
  m.add_hook("gone", on_gone)
  tick_timer = core.timer_new(tick)
  tick_timer:unref()
end


return {
  DEFAULTS = DEFAULTS,
  replace = replace,
  attach = attach,
}
