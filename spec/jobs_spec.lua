-- Integration specs of cluster.job against the real binary: an every job's timing (counted
-- over a window, loose bounds: the machine is shared), round robin over two workers, no
-- overlap (a job longer than its period: skipped runs counted), a job that raises (logged with
-- its traceback, counted, the worker goes on), the failover of a run whose worker is
-- SIGKILLed mid-run, `luacluster status` and `luacluster metrics` rows, a reload that hands
-- the schedule over, and the errors of bad input.
local H = require("helper")
local cjson = require("cjson")
local cron = require("luacluster.lib.cron")

-- the apps' lines carry wall-clock times (core.time(), seconds) so that runs in different
-- processes can be ordered
local PRELUDE = 'local core = require("luacluster.core")\n'
  .. 'local function T() return string.format("%.4f", core.time()) end\n'


-- starts src with its own control socket (and the app's arguments args); -> app { p, ctl, dir, path }
local function start(src, options, args)
  local dir = H.tmpdir()
  local app = { dir = dir, path = dir .. "/app.lua", ctl = dir .. "/ctl.sock" }
  H.write_file(app.path, H.prelude .. PRELUDE .. src)
  local argv = { "--control", app.ctl }
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = o
  end
  app.p = H.start(app.path, argv, { args = args })
  return app
end


local function ctl(app, cmd, extra)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. app.ctl .. " " .. (extra or ""))
end


local function status(app)
  local out, rc = ctl(app, "status", "--json")
  assert(rc == 0, "status failed: " .. out)
  return cjson.decode(out)
end


local function job_row(app, name)
  for _, j in ipairs(status(app).jobs) do
    if j.name == name then
      return j
    end
  end
end


-- the value of one sample of `luacluster metrics` (name and labels as printed)
local function metric(app, series)
  local out, rc = ctl(app, "metrics")
  assert(rc == 0, "metrics failed: " .. out)
  for line in out:gmatch("[^\n]+") do
    local s, v = line:match("^(%S+) (%S+)$")
    if s == series then
      return tonumber(v), out
    end
  end
  return nil, out
end


-- every "WORD a b c ..." line of the output as arrays of fields, WORD first
local function lines_of(p, word)
  local list = {}
  for line in p:output():gmatch("[^\n]+") do
    local rest = line:match("%f[%w]" .. word .. " (.*)$")
    if rest then
      local f = {}
      for x in rest:gmatch("%S+") do
        f[#f + 1] = x
      end
      list[#list + 1] = f
    end
  end
  return list
end


local function wait_lines(p, word, n, timeout_ms)
  local got = H.wait_for(function()
    local l = lines_of(p, word)
    return #l >= n and l
  end, timeout_ms or 15000)
  assert(got, string.format("fewer than %d '%s' lines:\n%s", n, word, p:output()))
  return got
end


-- runs as { from, to } pairs (begin/end lines: id-or-tag, pid, time), checked not to overlap
local function assert_no_overlap(p)
  local open, spans = {}, {}
  for line in p:output():gmatch("[^\n]+") do
    local what, pid, t = line:match("%f[%w](%a+) %S+ (%d+) (%d+%.%d+)$")
    if what == "begin" then
      open[pid] = tonumber(t)
    elseif what == "end" and open[pid] then
      spans[#spans + 1] = { open[pid], tonumber(t) }
      open[pid] = nil
    end
  end
  for _, from in pairs(open) do
    spans[#spans + 1] = { from, math.huge } -- still running
  end
  table.sort(spans, function(a, b) return a[1] < b[1] end)
  for i = 2, #spans do
    assert(spans[i][1] >= spans[i - 1][2] - 0.001, string.format("run %d began at %.4f, before run %d ended at %.4f\n%s",
      i, spans[i][1], i - 1, spans[i - 1][2], p:output()))
  end
  return spans
end


describe("cluster.job", function()
  after_each(function()
    H.cleanup()
  end)

  it("runs an every job one period after the start, then each period, round robin over the workers", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 2 } end
      cluster.job("tick", { every = 400 }, function(run)
        say("fired", cluster.worker.id, string.format("%.4f", run.scheduled), T())
      end)
      if cluster.is_master then
        -- a slow top level: the loop's clock, which timers count from, is left behind
        local t0 = core.hrtime()
        while core.hrtime() - t0 < 300 do end
        say("start", T())
      end
    ]])
    local start_t = tonumber(wait_lines(app.p, "start", 1)[1][1])
    local first = wait_lines(app.p, "fired", 1)[1]
    local lag = tonumber(first[2]) - start_t
    assert(lag >= 0.39 and lag < 3, "the first run came " .. lag .. " s after the start")
    wait_lines(app.p, "fired", 3)
    -- counted over a window of 2.4 s: 6 periods (loose: a loaded machine delays ticks)
    local before = #lines_of(app.p, "fired")
    H.sleep(2400)
    local n = #lines_of(app.p, "fired") - before
    assert(n >= 3 and n <= 8, n .. " runs in 2.4 s of a 400 ms job\n" .. app.p:output())
    -- one worker per run, in turns once both serve
    local runs = lines_of(app.p, "fired")
    local seen = {}
    for i, r in ipairs(runs) do
      seen[r[1]] = true
      if i > 2 then
        assert(r[1] ~= runs[i - 1][1], "two runs in a row on worker " .. r[1] .. "\n" .. app.p:output())
      end
    end
    assert.truthy(seen["1"] and seen["2"])
    -- and each run once, in its own period
    for i = 2, #runs do
      local gap = tonumber(runs[i][2]) - tonumber(runs[i - 1][2])
      assert(gap > 0.2, "two runs " .. gap .. " s apart\n" .. app.p:output())
    end
  end)

  it("turns each job's runs over the workers, whatever other jobs run", function()
    -- two jobs of the same period: one turn over all runs would give each job one worker
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 2 } end
      for _, name in ipairs({ "a", "b" }) do
        cluster.job(name, { every = 300 }, function(run)
          say("fired", run.name, cluster.worker.id, T())
        end)
      end
    ]])
    wait_lines(app.p, "fired", 12)
    for _, name in ipairs({ "a", "b" }) do
      local ids = {}
      for _, r in ipairs(lines_of(app.p, "fired")) do
        if r[1] == name then
          ids[#ids + 1] = r[2]
        end
      end
      assert(#ids >= 4, app.p:output())
      for i = 3, #ids do
        assert(ids[i] ~= ids[i - 1], "job " .. name .. ": two runs in a row on worker " .. ids[i] .. "\n" .. app.p:output())
      end
    end
  end)

  it("never overlaps two runs: a run due while the last one runs is skipped and counted", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 2 } end
      cluster.job("slow", { every = 100 }, function()
        say("begin", cluster.worker.id, process.pid, T())
        timer.sleep(450)
        say("end", cluster.worker.id, process.pid, T())
      end)
    ]])
    wait_lines(app.p, "end", 4)
    local spans = assert_no_overlap(app.p)
    assert(#spans >= 4)
    local row = job_row(app, "slow")
    assert(row.skipped >= 4, "skipped: " .. tostring(row.skipped))
    assert(row.runs >= 4)
    assert.equal(0, row.failures)
    local skipped, text = metric(app, 'luacluster_job_skipped_total{job="slow"}')
    assert(skipped and skipped >= 4, text)
    local count = metric(app, 'luacluster_job_duration_seconds_count{job="slow"}')
    local sum = metric(app, 'luacluster_job_duration_seconds_sum{job="slow"}')
    assert(count >= 4 and sum >= 0.4 * count, text)
    -- the skips are logged once per streak, not once each
    assert(app.p:count("a run was due and is skipped", true) < skipped, app.p:output())
  end)

  it("keeps saying so while a run that never ends holds the job (stuck_run)", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      cluster.job("stuck", { every = 50 }, function()
        say("stuck begins")
        timer.sleep(1e9)
      end)
    ]])
    assert(app.p:wait_output("stuck begins", 10000, true), app.p:output())
    -- one line at the first skip, then at the 10th and the 100th: not silence until it ends
    assert(app.p:wait_output("job 'stuck': 10 runs in a row were skipped: the last run still runs on worker 1",
      15000, true), app.p:output())
    assert(app.p:wait_output("job 'stuck': 100 runs in a row were skipped", 30000, true), app.p:output())
    assert(app.p:count("job 'stuck'", true) <= 4, app.p:output())
  end)

  it("logs a job that raises with its traceback, counts it, and the worker goes on", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      local function inner() error("boom in the job") end
      cluster.job("bad", { every = 200 }, function()
        say("try", process.pid)
        inner()
      end)
    ]])
    local tries = wait_lines(app.p, "try", 3)
    for _, t in ipairs(tries) do
      assert.equal(tries[1][1], t[1]) -- the same worker process every time
    end
    assert(app.p:wait_output("job 'bad' failed on worker 1", 5000, true), app.p:output())
    local out = app.p:output()
    assert.truthy(out:find("job 'bad' failed: [^\n]*app%.lua:%d+: boom in the job"), out)
    assert.truthy(out:find("stack traceback:", 1, true), out)
    assert.truthy(out:find("'inner'", 1, true), out) -- the job's own frames
    local row = job_row(app, "bad")
    assert(row.failures >= 2)
    assert.equal(false, row.last_ok)
    assert.truthy(row.last_error:find("boom in the job", 1, true))
    local failures, text = metric(app, 'luacluster_job_failures_total{job="bad"}')
    assert(failures and failures >= 2, text)
    assert.equal(0, status(app).workers[1].restarts)
  end)

  it("runs a run again on another worker when its worker is SIGKILLed mid-run", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 2 } end
      cluster.job("long", { every = 500 }, function(run)
        say("start", cluster.worker.id, process.pid, run.attempt, string.format("%.4f", run.scheduled))
        timer.sleep(1500)
        say("done", cluster.worker.id, process.pid, run.attempt, string.format("%.4f", run.scheduled))
      end)
    ]])
    local first = wait_lines(app.p, "start", 1)[1]
    local victim, sched = tonumber(first[2]), first[4]
    assert.equal("1", first[3])
    H.sh("kill -9 " .. victim)
    local again = H.wait_for(function()
      for _, s in ipairs(lines_of(app.p, "start")) do
        if s[4] == sched and s[3] == "2" then
          return s
        end
      end
    end, 15000)
    assert(again, "the run was not run again:\n" .. app.p:output())
    assert.not_equal(first[1], again[1]) -- another worker (the killed one's slot restarts)
    assert.not_equal(tostring(victim), again[2])
    local done = H.wait_for(function()
      for _, d in ipairs(lines_of(app.p, "done")) do
        if d[4] == sched then
          return d
        end
      end
    end, 15000)
    assert(done, app.p:output())
    assert.equal(again[2], done[2])
    assert.equal("2", done[3])
    assert.truthy(app.p:output():find("died during a run; running it again on another worker", 1, true))
    local retried, text = metric(app, 'luacluster_job_retried_total{job="long"}')
    assert(retried and retried >= 1, text)
  end)

  it("abandons a run when the master is SIGKILLed: the worker exits instead of running it on alone", function()
    -- a restarted master (or another host, with Redis) runs the job again: an orphaned run that
    -- went on to its end would overlap it
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      cluster.job("long", { every = 300 }, function(run)
        say("start", cluster.worker.id, process.pid, run.attempt)
        timer.sleep(60000)
      end)
    ]])
    local first = wait_lines(app.p, "start", 1)[1]
    local worker = tonumber(first[2])
    assert(H.pid_alive(worker))
    H.sh("kill -9 " .. app.p.pid)
    assert(H.wait_for(function() return not H.pid_alive(worker) end, 10000),
      "the worker ran its job on after its master died:\n" .. app.p:output())
  end)

  it("runs a run again when its worker crashes, and fails it when the second worker dies too", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 2 } end
      cluster.job("crashy", { every = 400 }, function(run)
        say("attempt", run.attempt, string.format("%.4f", run.scheduled), process.pid)
        if run.attempt == 1 then os.exit(3) end
        say("survived", string.format("%.4f", run.scheduled))
      end)
    ]])
    local first = wait_lines(app.p, "attempt", 1)[1]
    assert.equal("1", first[1])
    local survived = H.wait_for(function()
      for _, l in ipairs(lines_of(app.p, "survived")) do
        if l[1] == first[2] then
          return true
        end
      end
    end, 15000)
    assert(survived, app.p:output())
    local row = job_row(app, "crashy")
    assert(row.lost >= 1 and row.runs >= 1, cjson.encode(row))
  end)

  it("gives up a run waiting for a worker when the next run is due (waiting_run)", function()
    -- one worker; the first run kills it, and its replacement is not ready for 4 s
    local dir = H.tmpdir()
    local app = start([[
      local mark = process.argv[1]
      if cluster.is_master then cluster.setup{ workers = 1, ready = "manual" } end
      if cluster.is_worker then
        local f = io.open(mark)
        timer.after(f and 4000 or 0, function() cluster.worker:ready() end)
        if f then f:close() end
      end
      cluster.job("once", { every = 400 }, function(run)
        say("attempt", run.attempt, process.pid)
        if run.attempt == 1 and not io.open(mark) then
          io.open(mark, "w"):close()
          os.exit(3)
        end
      end)
    ]], {}, { dir .. "/crashed" })
    assert(app.p:wait_output("died during a run", 15000, true), app.p:output())
    -- the run is not held (nor its Redis lease) until a worker comes: lost at the next tick
    assert(app.p:wait_output("lost: no worker was ready to run it again before the next run was due", 3000, true),
      app.p:output())
    H.sleep(4500)
    local out = app.p:output()
    assert.falsy(out:find("attempt 2", 1, true), out)
  end)

  it("fails a run that kills every worker it runs on after its second try", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 2 } end
      cluster.job("deadly", { every = 300 }, function(run)
        say("attempt", run.attempt, process.pid)
        os.exit(3)
      end)
    ]])
    assert(app.p:wait_output("job 'deadly' failed on worker %d+ %(pid %d+%) after [%d.]+ ms: lost: its worker died 2 times",
      15000), app.p:output())
    local row = job_row(app, "deadly")
    assert(row.failures >= 1, cjson.encode(row))
    assert.truthy(row.last_error:find("lost: its worker died 2 times", 1, true))
  end)

  it("lets a run in flight finish at a graceful stop, and does not run again one cut by drain_timeout", function()
    local src = [[
      if cluster.is_master then cluster.setup{ workers = 1, drain_timeout = %d } end
      cluster.job("work", { every = 300 }, function()
        say("begin", process.pid)
        timer.sleep(%d)
        say("end", process.pid)
      end)
    ]]
    -- the run ends before the worker exits
    local app = start(src:format(30000, 600))
    wait_lines(app.p, "begin", 1)
    app.p:kill("SIGTERM")
    assert.equal(0, app.p:wait(15000))
    assert.equal(1, #lines_of(app.p, "end"), app.p:output())
    -- and the wait is said
    assert.truthy(app.p:output():find("job 'work': the worker drains once this run ends", 1, true), app.p:output())
    -- a run longer than drain_timeout: its worker is killed, the run is lost, not run again
    app = start(src:format(200, 5000))
    wait_lines(app.p, "begin", 1)
    app.p:kill("SIGTERM")
    app.p:wait(15000)
    local out = app.p:output()
    assert.truthy(out:find("lost: its worker ended as the cluster stopped", 1, true), out)
    assert.falsy(out:find("running it again", 1, true), out)
    assert.equal(1, #lines_of(app.p, "begin"), out)
  end)

  it("shows each job in luacluster status (last run, next run, failures) and in the metrics", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      cluster.job("tick", { every = 300 }, function() timer.sleep(20) end)
      cluster.job("nightly", { cron = "30 3 * * *" }, function() end)
    ]])
    local row = H.wait_for(function()
      local ok, r = pcall(job_row, app, "tick")
      return ok and r and r.runs >= 2 and r
    end, 15000)
    assert(row, app.p:output())
    assert.equal("every 300 ms", row.schedule)
    assert.equal(0, row.failures)
    assert.equal(true, row.last_ok)
    assert.equal(1, row.last_worker)
    assert(row.last_ms >= 15, "last_ms " .. tostring(row.last_ms))
    assert.truthy(row.last_run:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"))
    assert.truthy(row.next_run:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"))
    assert(row.next_run >= row.last_run)
    local nightly = job_row(app, "nightly")
    assert.equal("cron 30 3 * * *", nightly.schedule)
    assert.equal(0, nightly.runs)
    assert.is_nil(nightly.last_run)
    local want = cron.next(cron.parse("30 3 * * *"), os.time())
    assert.equal(os.date("!%Y-%m-%dT%H:%M:%SZ", want), nightly.next_run)
    -- the text form: a header and a row per job
    local text = ctl(app, "status")
    assert.truthy(text:find("job%s+schedule%s+runs%s+fail%s+skip%s+last run%s+last ms%s+next run"), text)
    assert.truthy(text:find("\ntick%s+every 300 ms%s+%d+%s+0%s+%d+%s+%d%d%d%d%-"), text)
    local day = os.date("!%Y-%m-%d", want):gsub("%-", "%%-")
    assert.truthy(text:find("\nnightly%s+cron 30 3 %* %* %*%s+0%s+0%s+0%s+%-%s+%-%s+" .. day), text)
    -- metrics: a series per job
    local runs, mtext = metric(app, 'luacluster_job_runs_total{job="tick"}')
    assert(runs and runs >= 2, mtext)
    assert.equal(0, (metric(app, 'luacluster_job_runs_total{job="nightly"}')))
    assert.truthy(mtext:find("# TYPE luacluster_job_duration_seconds summary", 1, true))
  end)

  it("hands the schedule over to a reload's new generation; a run in flight finishes in the old worker, no overlap",
    function()
    local V1 = [[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      local V = "%s"
      cluster.job("tick", { every = 300 }, function()
        say("begin", V, process.pid, T())
        timer.sleep(900)
        say("end", V, process.pid, T())
      end)
      %s
    ]]
    local app = start(V1:format("v1", 'cluster.job("old_only", { every = 60000 }, function() end)'))
    local b = wait_lines(app.p, "begin", 1)[1]
    assert.equal("v1", b[1])
    -- a run of v1 is in flight: reload to v2 now
    H.write_file(app.path .. ".new", H.prelude .. PRELUDE .. V1:format("v2", ""))
    os.rename(app.path .. ".new", app.path)
    local out, rc = ctl(app, "reload")
    assert(rc == 0, "reload failed: " .. out .. "\n" .. app.p:output())
    local reloaded_at = H.now()
    -- v2 runs; no v1 run begins after the switch; the v1 run that was in flight ended
    local v2 = H.wait_for(function()
      local n = 0
      for _, l in ipairs(lines_of(app.p, "begin")) do
        if l[1] == "v2" then n = n + 1 end
      end
      return n >= 2
    end, 15000)
    assert(v2, app.p:output())
    local ends = {}
    for _, l in ipairs(lines_of(app.p, "end")) do
      ends[l[1] .. " " .. l[2]] = (ends[l[1] .. " " .. l[2]] or 0) + 1
    end
    local begins_v1 = 0
    for _, l in ipairs(lines_of(app.p, "begin")) do
      if l[1] == "v1" then begins_v1 = begins_v1 + 1 end
    end
    assert.equal(begins_v1, ends["v1 " .. b[2]], "every v1 run ended in the old worker\n" .. app.p:output())
    assert_no_overlap(app.p)
    local lines = app.p:output()
    local last_v1 = 0
    for i in lines:gmatch("()begin v1") do last_v1 = i end
    local first_v2 = lines:find("begin v2", 1, true)
    assert(last_v1 < first_v2, lines)
    -- the new code's schedule: old_only is gone, tick's counters carried over
    local st = status(app)
    assert.equal(1, #st.jobs)
    assert.equal("tick", st.jobs[1].name)
    assert(st.jobs[1].runs >= begins_v1, cjson.encode(st.jobs[1]))
    assert(H.now() - reloaded_at < 30000)
  end)

  it("raises a clear error for a bad spec, a duplicate name, a missing function or bad setup", function()
    local cases = {
      { 'cluster.job("x", { cron = "61 * * * *" }, function() end)', "cluster.job('x'): cron '61 * * * *': minute 61 is out of range 0-59" },
      { 'cluster.job("x", { cron = "* * *" }, function() end)', "has 3 fields" },
      { 'cluster.job("x", { cron = "0 0 30 2 *" }, function() end)', "matches no date" },
      { 'cluster.job("x", { every = 0 }, function() end)', "every must be a number of milliseconds >= 1" },
      { 'cluster.job("x", { every = "5" }, function() end)', "every must be a number of milliseconds >= 1" },
      -- past 2^53 ms the runtime's timer could not hold it (a double cast to 64 bits)
      { 'cluster.job("x", { every = 1e20 }, function() end)', "every must be a number of milliseconds >= 1 (at most 2^53)" },
      { 'cluster.job("x", { every = 100, cron = "* * * * *" }, function() end)', "give every or cron, not both" },
      { 'cluster.job("x", { evry = 100 }, function() end)', "unknown option 'evry'" },
      { 'cluster.job("x", {}, function() end)', "expected { every = ms } or { cron" },
      { 'cluster.job("x", { every = 100 })', "the third argument must be a function" },
      { 'cluster.job("", { every = 100 }, function() end)', "the name must be a non-empty string" },
      { 'cluster.job("x", { every = 100 }, function() end)\ncluster.job("x", { every = 200 }, function() end)',
        "a job named 'x' is defined already (at " },
      { 'cluster.setup{ jobs = { redis = "nohost" } }', "jobs.redis must be \"host:port\"" },
      { 'cluster.setup{ jobs = { redis = "127.0.0.1:6379", ttl = 5 } }', "jobs: unknown option 'ttl'" },
    }
    for _, case in ipairs(cases) do
      local app = start("if cluster.is_master then cluster.setup{ workers = 1 } end\n" .. case[1] .. "\n")
      local code = app.p:wait(10000)
      assert(code and code ~= 0, case[1] .. ": exit " .. tostring(code) .. "\n" .. app.p:output())
      local out = app.p:output()
      assert(out:find(case[2], 1, true), case[1] .. ":\n" .. out)
      assert.truthy(out:find("app.lua:%d+:"), out) -- at the app's line
    end
  end)

  it("fails each run of a job the workers do not define, saying so", function()
    local app = start([[
      if cluster.is_master then
        cluster.setup{ workers = 1 }
        cluster.job("master_only", { every = 200 }, function() end)
      end
    ]])
    assert(app.p:wait_output("job 'master_only' failed on worker 1", 10000, true), app.p:output())
    assert.truthy(app.p:output():find("worker 1 has no job named 'master_only' (call cluster.job at the top level"
      .. " of the script in the workers too)", 1, true))
    assert.equal(0, status(app).workers[1].restarts)
  end)

  it("raises when cluster.job is called after the top level, in the master and in a worker", function()
    local app = start([[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      timer.after(10, function()
        local ok, err = pcall(cluster.job, "late", { every = 100 }, function() end)
        say(cluster.is_master and "master" or "worker", "late:", tostring(ok), err)
      end)
    ]])
    assert(app.p:wait_output("master late: false", 10000, true), app.p:output())
    assert(app.p:wait_output("worker late: false", 10000, true), app.p:output())
    assert.equal(2, app.p:count("must be called at the script's top level", true))
    assert.equal(0, #status(app).jobs)
  end)
end)


-- A wall clock the spec moves: an LD_PRELOAD shim (built here) adds the seconds written in
-- the file LCSPEC_WALL_OFFSET to CLOCK_REALTIME, time() and gettimeofday(); the monotonic
-- clock (libuv's timers) runs on as it is.
local SHIM = [[
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
static long long offset(void) {
  const char *p = getenv("LCSPEC_WALL_OFFSET");
  long long o = 0;
  FILE *f = p ? fopen(p, "r") : NULL;
  if (f) {
    if (fscanf(f, "%lld", &o) != 1) o = 0;
    fclose(f);
  }
  return o;
}
int clock_gettime(clockid_t id, struct timespec *ts) {
  static int (*real)(clockid_t, struct timespec *);
  if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
  int r = real(id, ts);
  if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) ts->tv_sec += offset();
  return r;
}
time_t time(time_t *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}
int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
  struct timespec ts;
  (void)tz;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (tv) {
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return 0;
}
]]


describe("cluster.job's cron schedule when the wall clock moves (wall_clock)", function()
  after_each(function()
    H.cleanup()
  end)

  it("runs once, late, after the clock is set forward (no burst), and starts afresh after it is set far back",
    function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/shim.c", SHIM)
    local out, rc = H.sh("cc -shared -fPIC -O1 -o " .. dir .. "/shim.so " .. dir .. "/shim.c -ldl")
    assert(rc == 0, "cannot build the clock shim: " .. out)
    local offset_file = dir .. "/offset"
    -- the app's wall clock starts at second 52 of a minute: its first run comes some 8 s later
    local offset = (52 - os.time() % 60) % 60
    H.write_file(offset_file, tostring(offset))
    local function wall()
      return os.time() + offset
    end
    local function move(by)
      offset = offset + by
      H.write_file(offset_file, tostring(offset))
    end
    local app = { dir = dir, path = dir .. "/app.lua", ctl = dir .. "/ctl.sock" }
    H.write_file(app.path, H.prelude .. PRELUDE .. [[
      if cluster.is_master then cluster.setup{ workers = 1 } end
      cluster.job("minutely", { cron = "* * * * *" }, function(run)
        say("fired", run.scheduled, string.format("%.0f", core.time()))
      end)
    ]])
    app.p = H.start(app.path, { "--control", app.ctl }, { env = { LD_PRELOAD = dir .. "/shim.so",
      LCSPEC_WALL_OFFSET = offset_file,
      -- (the sanitizer build: the shim comes before ASan's runtime, and that is fine here)
      ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "detect_leaks=0") .. ":verify_asan_link_order=0" } })
    local first = tonumber(wait_lines(app.p, "fired", 1, 75000)[1][1])
    -- forward an hour: the run due a minute after the first goes once (late, within the wake
    -- of 10 s), the 59 others of that hour are counted as skipped, not run one after another
    move(3600)
    local jumped = H.now()
    local second = wait_lines(app.p, "fired", 2, 25000)[2]
    assert.equal(first + 60, tonumber(second[1]))
    assert(H.now() - jumped < 20000, "the late run came " .. (H.now() - jumped) .. " ms after the jump")
    assert(app.p:wait_output("woke %d+ s late", 5000), app.p:output())
    H.sleep(1500)
    assert(#lines_of(app.p, "fired") <= 3, app.p:output())
    local row = job_row(app, "minutely")
    assert(row.skipped >= 55 and row.skipped <= 60, "skipped " .. row.skipped)
    assert(row.next_run > os.date("!%Y-%m-%dT%H:%M:%SZ", wall()), row.next_run)
    -- back five hours, to second 50 of a minute: the schedule starts again from the new time
    -- (it does not wait five hours for the run it had planned)
    local n = #lines_of(app.p, "fired")
    move(-5 * 3600 + (50 - wall() % 60) % 60)
    local back = wait_lines(app.p, "fired", n + 1, 40000)[n + 1]
    assert(tonumber(back[1]) < first, app.p:output())
    assert.truthy(app.p:output():find("the wall clock went back", 1, true))
  end)
end)
