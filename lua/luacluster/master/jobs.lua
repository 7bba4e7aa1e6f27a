-- luacluster.master.jobs: the schedule of cluster.job, kept by the master.
--  * Each job's timer (every: one period after the start, then each period; cron: the next
--    matching minute in local time, lib/cron.lua) makes a run due.
--  * A due run goes to one ready worker of the serving generation, each job's runs round robin
--    over them (the control op "job_run", answered by worker/jobs.lua with "job_done").
--  * Two runs of one job never overlap: a run due while the last one still runs is skipped
--    and counted. A job's state lives by its name across reloads, so a run still going in an
--    old generation's worker counts too.
--  * A run whose worker dies before it answers (a crash, SIGKILL) runs again on another
--    worker, once; a second loss counts as a failure, and so does a run still waiting for a
--    ready worker when the next run is due.
--  * A cron schedule's timer wakes at least every CRON_WAKE_MS to read the wall clock again
--    (a clock set forward or back, a machine that slept: see wait() in arm()).
--  * With cluster.setup{ jobs = { redis = "host:port" } } every run is claimed in Redis
--    first (master/jobs_redis.lua), so that of several hosts only one runs it.
--  * A reload's new code defines its own jobs (lib/jobs.lua stages them); they take the
--    schedule over once the new generation serves (the reload's "done").
--  * A binary upgrade: one master runs the jobs at a time, the old one until it releases the
--    sockets, the new one once it serves; the new one counts the runs still going in the old
--    master's workers as running (a run due meanwhile is skipped) until the old master exits.
-- Every run's end is logged (duration, error) and counted: status() for `luacluster status`,
-- series() for the metrics.
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local cron = require("luacluster.lib.cron")
local defs = require("luacluster.lib.jobs")
local jobs_redis = require("luacluster.master.jobs_redis")
local log = require("luacluster.lib.log")
local reload = require("luacluster.master.reload")

local _M = {}

local RETRIES = 1 -- a run whose worker died runs again this many times
local CRON_WAKE_MS = 10000 -- a cron job's timer reads the wall clock again at least this often
local BACK_JUMP_S = 3 * 3600 -- a wall clock set back more than this restarts a cron schedule
local MISSED_COUNT_MAX = 1000 -- the missed runs of one late wake counted at most (a bound on the loop)

local master
local jobs = {}          -- name -> job (its definition, timer and counters), kept across reloads
local order = {}         -- the scheduled names, in the order they were defined
local runs = {}          -- run id -> run { id, job, worker, attempt, scheduled, tried }
local waiting = {}       -- runs whose worker died, waiting for a ready worker
local next_id = 0
local stopped = false
local elsewhere          -- set during a binary upgrade while the other master runs the jobs
local hold_lease, inherited_alive


local function now_s()
  return core.time()
end


-- how far the loop's clock (which timers count from) is behind now: a timer started at the
-- top level, or late in a long loop turn, would fire that much early
local function stale_ms()
  return math.max(0, core.hrtime() - core.now())
end


-- ---- choosing a worker ----

-- the ready workers of the serving generation, by id, but those in `refused` (the send to
-- them failed just now); a retried run avoids the ids it tried when it can
local function pick(run, refused)
  local list, fresh = {}, {}
  for _, w in pairs(master.workers) do
    if w:is_ready() and w:is_up() and not (refused and refused[w]) then
      list[#list + 1] = w
      if not (run.tried and run.tried[w.id]) then
        fresh[#fresh + 1] = w
      end
    end
  end
  if #fresh > 0 then
    list = fresh
  end
  if #list == 0 then
    return nil
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  local last = run.job and run.job.rr_last or 0 -- the id of the worker that took the job's last run
  for _, w in ipairs(list) do
    if w.id > last then
      return w
    end
  end
  return list[1]
end


-- ---- a run's life ----

local function describe(w)
  return string.format("worker %d (pid %s)", w.id, tostring(w.pid))
end


-- logged at the first skip of a streak, then at the 10th, 100th, ...: a run that never ends
-- is not one line and then silence
local function note_skip(job, why)
  job.skipped = job.skipped + 1
  local n = job.skip_streak + 1
  job.skip_streak = n
  if n == 1 then
    log.warn("job '" .. job.name .. "': a run was due and is skipped: " .. why)
  elseif n >= 10 and 10 ^ math.floor(math.log10(n) + 1e-9) == n then
    log.warn(string.format("job '%s': %d runs in a row were skipped: %s", job.name, n, why))
  end
end


local function end_streak(job)
  if job.skip_streak > 1 then
    log.info(string.format("job '%s': %d runs were skipped in a row", job.name, job.skip_streak))
  end
  job.skip_streak = 0
end


local drop_lease


local function finish(run, ok, err, ms)
  local job = run.job
  runs[run.id] = nil
  drop_lease(run)
  if job.running == run then
    job.running = nil
  end
  job.runs = job.runs + 1
  job.duration_sum = job.duration_sum + (ms or 0) / 1000
  local where = run.worker and describe(run.worker) or "no worker"
  job.last = { at = run.started_at, ms = ms, ok = ok, err = err, worker = run.worker and run.worker.id }
  if ok then
    log.info(string.format("job '%s' ran on %s in %.1f ms", job.name, where, ms or 0))
  else
    job.failures = job.failures + 1
    log.warn(string.format("job '%s' failed on %s after %.1f ms: %s", job.name, where, ms or 0, tostring(err)))
  end
  if job.removed and not job.running then
    jobs[job.name] = nil
  end
end


local function send(run)
  local refused = {}
  while true do
    local w = pick(run, refused)
    if not w then
      run.waiting = true
      waiting[#waiting + 1] = run
      return
    end
    run.waiting = nil
    run.job.rr_last = w.id
    run.worker = w
    run.started_at = run.started_at or now_s()
    local ok, err = w:_control({ op = "job_run", id = run.id, name = run.job.name, scheduled = run.scheduled,
      attempt = run.attempt, claim = run.claim })
    if ok then
      return
    end
    -- it has just died (its "gone" comes later) or the message cannot go
    refused[w] = true
    run.worker = nil
    if not w:is_dead() and not (w._ch and w._ch:is_closed()) then
      return finish(run, false, "cannot send the run: " .. tostring(err), 0)
    end
  end
end


-- the run's worker is gone before it answered: again on another worker, or a failure
local function lost(run, w)
  run.tried = run.tried or {}
  run.tried[w.id] = true
  if run.attempt > RETRIES then
    return finish(run, false, string.format("lost: its worker died %d times (last %s)", run.attempt, describe(w)), 0)
  end
  if stopped or master.is_stopping() then
    return finish(run, false, "lost: its worker ended as the cluster stopped (" .. describe(w) .. ")", 0)
  end
  log.warn(string.format("job '%s': %s died during a run; running it again on another worker", run.job.name,
    describe(w)))
  run.job.lost = run.job.lost + 1
  run.attempt = run.attempt + 1
  run.worker = nil
  send(run)
end


local function pump()
  if #waiting == 0 then
    return
  end
  local list = waiting
  waiting = {}
  for _, run in ipairs(list) do
    if runs[run.id] then
      send(run)
    end
  end
end


-- a run claimed in Redis holds the job's lease until it ends (master/jobs_redis.lua)
function hold_lease(run, lease)
  run.claim, run.lease = lease.key, lease
  local t = core.timer_new(function()
    if run.renewing then -- one renewal at a time: a Redis that hangs is not asked again and again
      return
    end
    run.renewing = true
    coro.spawn(function()
      local ok, err = jobs_redis.renew(lease)
      run.renewing = nil
      if not ok and run.lease == lease and not run.renew_failed then
        run.renew_failed = true -- once per run: another host may run the job once the lease expires
        log.warn("job '" .. run.job.name .. "': cannot renew its lease in Redis: " .. tostring(err))
      end
    end)
  end)
  local every = jobs_redis.renew_every(lease)
  t:start(every, every)
  run.lease_timer = t
end


function drop_lease(run)
  local lease = run.lease
  if not lease then
    return
  end
  run.lease = nil
  run.lease_timer:close()
  run.lease_timer = nil
  coro.spawn(jobs_redis.release, lease)
end


-- a run an upgrade's older master handed over (adopt): going on while its worker lives (or,
-- when it had none yet, while that master lives). By pid, not by the channel to the master
-- before this one: after two upgrades in a row the first master's worker may outlive the second
-- master (review 19).
function inherited_alive(r)
  local pid = r.old_pid or r.old_master
  if not pid then
    return false
  end
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then
    local stat = f:read("*l") or ""
    f:close()
    if stat:match("^%d+ %b() (%a)") == "Z" then
      return false -- exited, not yet reaped
    end
  end
  local ok, err = core.kill(pid, 0)
  return ok ~= nil or not tostring(err):find("ESRCH", 1, true)
end


-- a run of job is due (scheduled: epoch seconds; slot: the claim's key part, with Redis)
local function due(job, scheduled, slot, ttl_ms)
  if stopped or master.is_stopping() or elsewhere then
    return
  end
  local r = job.running
  if r and r.inherited and not inherited_alive(r) then
    job.running = nil -- (an upgrade's older master's run: its worker has exited)
    r = nil
  end
  if r and r.waiting then
    -- its worker died and none has been ready since: it is not held (nor its Redis lease,
    -- which blocks the job on every host) until one comes
    finish(r, false, "lost: no worker was ready to run it again before the next run was due", 0)
    r = nil
  end
  if r then
    local since = r.started_at and string.format(" for %.1f s", now_s() - r.started_at) or ""
    local on = r.worker and (" on " .. describe(r.worker))
      or r.old_pid and (" on the old master's worker (pid " .. r.old_pid .. ")") or ""
    return note_skip(job, "the last run still runs" .. on .. since)
  end
  if not pick({}) then
    return note_skip(job, "no worker is ready")
  end
  next_id = next_id + 1
  local run = { id = next_id, job = job, attempt = 1, scheduled = scheduled }
  job.running = run
  runs[run.id] = run
  local claim = jobs_redis.active()
  if not claim then
    end_streak(job)
    return send(run)
  end
  coro.spawn(function()
    local what, detail = jobs_redis.claim(job.name, slot, ttl_ms)
    if what ~= "ok" or stopped or master.is_stopping() then
      runs[run.id] = nil
      if job.running == run then
        job.running = nil
      end
      if what == "taken" then
        job.elsewhere = job.elsewhere + 1 -- another host has this run: not ours to count
      elseif what == "busy" then
        note_skip(job, "the last run still runs on another host")
      elseif what == "down" then
        note_skip(job, detail)
      elseif what == "ok" then
        coro.spawn(jobs_redis.release, detail) -- claimed as the master stops
      end
      return
    end
    hold_lease(run, detail)
    end_streak(job)
    send(run)
  end)
end


-- ---- timers ----

local function disarm(job)
  if job.timer then
    job.timer:close()
    job.timer = nil
  end
  job.next_at = nil
end


local function arm(job)
  disarm(job)
  local def = job.def
  if def.every then
    local period = def.every
    job.next_at = now_s() + period / 1000
    job.timer = core.timer_new(function()
      local t = now_s()
      job.next_at = t + period / 1000
      due(job, t, string.format("%d", math.floor(t * 1000 / period)), math.max(period, 1000))
    end)
    job.timer:start(period + stale_ms(), period)
    return
  end
  local c = def.cron
  local wait
  local function schedule(after)
    local at = cron.next(c, after)
    if not at then
      job.next_at = nil
      return
    end
    wait(at, after)
  end
  -- the timer counts on the monotonic clock, the schedule is on the wall clock: it wakes at
  -- least every CRON_WAKE_MS to read the wall clock again (one set forward is seen then)
  function wait(at, after)
    job.next_at = at
    local t = core.timer_new(function()
      job.timer:close()
      job.timer = nil
      local now = now_s()
      if now < at - 0.001 then
        -- not yet (a wake to look, or the loop's clock ran ahead of the wall clock). A wall
        -- clock set back more than 3 hours starts the schedule afresh; less, and what has run
        -- is not run again (Vixie cron's rule)
        if now < after - BACK_JUMP_S then
          log.warn(string.format("job '%s': the wall clock went back %.0f s; its schedule starts again from now",
            job.name, after - now))
          return schedule(now)
        end
        return wait(at, after)
      end
      local following = cron.next(c, at)
      due(job, at, string.format("%d", at), math.max(((following or at + 60) - at) * 1000, 1000))
      -- late (the wall clock set forward, the machine slept, the loop stalled): the run due at
      -- `at` goes now, once; those due since are missed and counted, not run one after another
      if following and following <= now then
        local missed, n = 0, following
        while n and n <= now and missed < MISSED_COUNT_MAX do
          missed = missed + 1
          n = cron.next(c, n)
        end
        job.skipped = job.skipped + missed
        log.warn(string.format("job '%s': its schedule woke %.0f s late (the wall clock was set forward, or the"
          .. " machine slept): %s run(s) due meanwhile are skipped", job.name, now - at,
          missed < MISSED_COUNT_MAX and tostring(missed) or ("more than " .. missed)))
      end
      schedule(math.max(at, now))
    end)
    job.timer = t
    t:start(math.min(CRON_WAKE_MS, math.max(0, math.ceil((at - now_s()) * 1000 + stale_ms()))), 0)
  end
  schedule(now_s())
end


local function new_job(def)
  return {
    name = def.name, def = def, runs = 0, failures = 0, skipped = 0, lost = 0, elsewhere = 0,
    duration_sum = 0, skip_streak = 0,
  }
end


-- the schedule becomes these definitions: jobs of the same name keep their counters and a run
-- in flight; a job whose schedule did not change keeps its timer (its phase)
local function take_over(names, by_name)
  local keep = {}
  for _, name in ipairs(names) do
    keep[name] = true
  end
  for name, job in pairs(jobs) do
    if not keep[name] then
      disarm(job)
      job.removed = true
      if not job.running then
        jobs[name] = nil
      end
    end
  end
  order = {}
  for _, name in ipairs(names) do
    local def = by_name[name]
    local job = jobs[name]
    if job then
      local same = job.def.schedule == def.schedule and job.timer ~= nil and not job.removed
      job.def, job.removed = def, nil
      if not same then
        arm(job)
      end
    else
      job = new_job(def)
      jobs[name] = job
      arm(job)
    end
    order[#order + 1] = name
  end
end


-- ---- what the master shows ----

local function iso(t)
  return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or nil
end


-- one row per job: -> array of { name, schedule, runs, failures, skipped, lost, running,
-- last_run, last_ms, last_ok, last_error, last_worker, next_run } (times: UTC ISO 8601)
function _M.status()
  local rows = {}
  for _, name in ipairs(order) do
    local job = jobs[name]
    if job then
      local last, r = job.last or {}, job.running
      rows[#rows + 1] = {
        name = name, schedule = job.def.schedule, runs = job.runs, failures = job.failures,
        skipped = job.skipped, lost = job.lost, elsewhere = job.elsewhere,
        running = r and r.worker and r.worker.id or (r and 0) or nil,
        last_run = iso(last.at), last_ms = last.ms and math.floor(last.ms * 10 + 0.5) / 10 or nil,
        last_ok = last.ok, last_error = last.err, last_worker = last.worker, next_run = iso(job.next_at),
      }
    end
  end
  return rows
end


-- the metrics' job series (master/metrics.lua's family and sample)
function _M.series(out, family, sample)
  local f_runs = family(out, "luacluster_job_runs_total", "counter", "Runs of a job that ended (failed ones included).")
  local f_fail = family(out, "luacluster_job_failures_total", "counter", "Runs of a job that raised or were lost.")
  local f_skip = family(out, "luacluster_job_skipped_total", "counter",
    "Runs of a job that were due and skipped (the last one still ran, no ready worker, Redis down).")
  local f_lost = family(out, "luacluster_job_retried_total", "counter", "Runs of a job run again because their worker died.")
  local f_dur = family(out, "luacluster_job_duration_seconds", "summary", "The duration of a job's runs.")
  local f_running = family(out, "luacluster_job_running", "gauge", "1 while a run of the job is in flight.")
  for _, name in ipairs(order) do
    local job = jobs[name]
    if job then
      local l = { { "job", name } }
      sample(f_runs, nil, l, job.runs)
      sample(f_fail, nil, l, job.failures)
      sample(f_skip, nil, l, job.skipped)
      sample(f_lost, nil, l, job.lost)
      sample(f_dur, "_sum", l, job.duration_sum)
      sample(f_dur, "_count", l, job.runs)
      sample(f_running, nil, l, job.running and 1 or 0)
    end
  end
end


-- ---- a binary upgrade (master/upgrade.lua, the old master; master/upgraded.lua, the new) ----

-- hand_over(true): the other master runs the jobs (the old one once it released the sockets,
-- the new one until it serves); hand_over(nil): this one does (again)
function _M.hand_over(on)
  elsewhere = on or nil
end


-- the old master: its runs in flight -> { name = { started_at =, pid =, master = } }: its
-- own (pid: the worker's; none while it waits for a ready worker: then this master's) and
-- those it adopted itself from the master before it, which may still run (two upgrades in a
-- row: the third master must not start a run beside the first master's)
function _M.running()
  local out = {}
  for name, job in pairs(jobs) do
    local r = job.running
    if r and r.inherited then
      if inherited_alive(r) then
        out[name] = { started_at = r.started_at, pid = r.old_pid, master = r.old_master }
      end
    elseif r then
      out[name] = { started_at = r.started_at, pid = r.worker and r.worker.pid, master = core.pid() }
    end
  end
  return out
end


-- the new master, at the switch: the old master's runs in flight count as running here
function _M.adopt(list)
  for name, r in pairs(type(list) == "table" and list or {}) do
    local job = jobs[name]
    if job and not job.running and type(r) == "table" then
      job.running = { inherited = true, started_at = tonumber(r.started_at), old_pid = tonumber(r.pid),
        old_master = tonumber(r.master) }
    end
  end
end


-- the new master, once the old one has exited: its runs have ended (or died with it); a run
-- it had adopted from the master before it counts until that run's worker has exited
function _M.old_master_gone()
  for _, job in pairs(jobs) do
    if job.running and job.running.inherited and not inherited_alive(job.running) then
      job.running = nil
    end
  end
end


-- ---- plugging in ----

local function on_done(w, msg)
  local run = type(msg.id) == "number" and runs[msg.id]
  if run and run.worker == w then
    finish(run, msg.ok == true, msg.err, tonumber(msg.ms) or 0)
  end
end


local function on_gone(w)
  local affected = {}
  for _, run in pairs(runs) do
    if run.worker == w then
      affected[#affected + 1] = run
    end
  end
  table.sort(affected, function(a, b) return a.id < b.id end)
  for _, run in ipairs(affected) do
    lost(run, w)
  end
  pump()
end


-- before the app's top level (master/plugins.lua): ops and hooks
function _M.attach(m)
  master = m
  m.register_op("job_done", on_done)
  m.add_hook("gone", on_gone)
  m.add_hook("ready", pump)
  m.add_hook("adopt", pump)
  m.add_hook("stop", function()
    stopped = true
    for _, job in pairs(jobs) do
      disarm(job)
    end
  end)
  m.add_hook("setup_check", function(opts)
    if opts.jobs ~= nil then
      return jobs_redis.check(opts.jobs)
    end
  end)
end


-- once the app's top level has run: the first generation's schedule
function _M.start()
  jobs_redis.configure(master.config().jobs)
  take_over(defs.start())
  reload.add_hook(function(event, gen)
    if event == "done" then
      jobs_redis.configure(master.config().jobs)
      take_over(defs.take_staged(gen))
    elseif event == "refused" then
      defs.drop_staged()
    end
  end)
end


return {
  hand_over = _M.hand_over,
  running = _M.running,
  adopt = _M.adopt,
  old_master_gone = _M.old_master_gone,
  attach = _M.attach,
  start = _M.start,
  status = _M.status,
  series = _M.series,
}
