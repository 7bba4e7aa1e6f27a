-- cluster.job across hosts: two luacluster instances (two masters, as on two hosts) name the
-- same real redis-server (started on a free loopback port, stopped by pid) in
-- cluster.setup{ jobs = { redis = } }: each run happens on one of them only, and runs on the
-- two never overlap; a host killed mid-run holds the job until its lease expires, then the
-- later runs happen on the other; while Redis is down runs are skipped (logged once) and they
-- resume when it answers.
local H = require("helper")

local APP = [[
local core = require("luacluster.core")
local HOST, REDIS, RUN_MS = process.argv[1], process.argv[2], tonumber(process.argv[3])
if cluster.is_master then
  cluster.setup{ workers = 1, jobs = { redis = "127.0.0.1:" .. REDIS, prefix = "spec:", lease = 1500 } }
end
cluster.job("tick", { every = 500 }, function(run)
  say("begin", HOST, process.pid, run.claim, string.format("%.4f", core.time()))
  timer.sleep(RUN_MS)
  say("end", HOST, process.pid, run.claim, string.format("%.4f", core.time()))
end)
]]


local start_redis = H.start_redis


local function redis_cli(port, cmd)
  local out = H.sh("redis-cli -p " .. port .. " " .. cmd)
  return (out:gsub("%s+$", ""))
end


-- { host, pid, claim, t, done } of every "begin" of the instances, by time (done: its end)
local function begins(...)
  local list, ends = {}, {}
  for _, app in ipairs({ ... }) do
    local out = app:output()
    for claim, t in out:gmatch("end %a %d+ (%S+) (%d+%.%d+)") do
      ends[claim] = tonumber(t)
    end
    for host, pid, claim, t in out:gmatch("begin (%a) (%d+) (%S+) (%d+%.%d+)") do
      list[#list + 1] = { host = host, pid = pid, claim = claim, t = tonumber(t) }
    end
  end
  for _, r in ipairs(list) do
    r.done = ends[r.claim]
  end
  table.sort(list, function(a, b) return a.t < b.t end)
  return list
end


describe("cluster.job with jobs = { redis = }", function()
  local redis, port, dir

  before_each(function()
    port = H.free_port()
    redis = start_redis(port)
    dir = H.app({ ["app.lua"] = H.prelude .. APP })
  end)

  after_each(function()
    H.cleanup()
    if redis then
      redis:stop()
    end
  end)

  -- an instance ("a host") whose runs last run_ms
  local function instance(tag, run_ms)
    local own = H.tmpdir()
    local p = H.start(dir .. "/app.lua", { "--control", own .. "/ctl.sock" },
      { args = { tag, port, run_ms or 300 }, dir = own })
    p.ctl = own .. "/ctl.sock"
    return p
  end


  local function slot(claim)
    return tonumber(claim:match("(%d+)$"))
  end

  it("runs each run on one host only", function()
    -- short runs, and the second host's ticks some 200 ms after the first's: the job is free
    -- again when the other host's tick for the same run comes
    local a = instance("A", 20)
    H.sleep(200)
    local b = instance("B", 20)
    assert(H.wait_for(function() return #begins(a, b) >= 2 end, 15000), a:output() .. b:output())
    local n0 = #begins(a, b)
    H.sleep(3000)
    local list = begins(a, b)
    -- one run per period of 500 ms over 3 s, not one per host (loose: a loaded machine)
    local n = #list - n0
    assert(n >= 3 and n <= 8, n .. " runs in 3 s\n" .. a:output() .. b:output())
    local seen = {}
    for _, r in ipairs(list) do
      assert(not seen[r.claim], "run " .. r.claim .. " ran twice\n" .. a:output() .. b:output())
      seen[r.claim] = r.host
      assert.truthy(r.claim:match("^spec:tick:%d+$"), r.claim)
    end
    -- no run began before the one before it had ended, on either host
    for i = 2, #list do
      local prev = list[i - 1].done or math.huge
      assert(list[i].t >= prev - 0.001, "two runs overlap\n" .. a:output() .. b:output())
    end
    -- the claims are in Redis, each naming the master that took it
    local last = list[#list]
    local owner = redis_cli(port, "GET " .. last.claim)
    local master_pid = tonumber(owner:match(":(%d+) %d+$"))
    assert(master_pid, owner)
    assert.equal(last.host == "A" and a.pid or b.pid, master_pid)
  end)

  it("a host killed mid-run holds the job until its lease expires; the later runs happen on the other", function()
    local a, b = instance("A"), instance("B")
    local victim_run = H.wait_for(function()
      local list = begins(a, b)
      local r = list[#list]
      return #list >= 2 and not r.done and r -- mid-run
    end, 15000, 5)
    assert(victim_run, a:output() .. b:output())
    local victim = victim_run.host == "A" and a or b
    local other = victim == a and b or a
    victim:kill_group("SIGKILL")
    victim:wait(5000)
    local killed_at = H.now()
    -- the run it was running never ended; the job's lease expires (1.5 s), its run's key too
    assert.is_nil(victim_run.done)
    assert.is_nil(begins(victim)[#begins(victim)].done, victim:output())
    assert(H.wait_for(function() return redis_cli(port, "EXISTS spec:tick:running") == "0" end, 5000),
      "the lease did not expire")
    assert(H.wait_for(function() return redis_cli(port, "EXISTS " .. victim_run.claim) == "0" end, 5000),
      "the run's claim did not expire")
    -- later runs: on the other host
    local later = H.wait_for(function()
      local n = 0
      for _, r in ipairs(begins(other)) do
        if slot(r.claim) > slot(victim_run.claim) then
          n = n + 1
        end
      end
      return n >= 3
    end, 15000)
    assert(later, other:output())
    assert(H.now() - killed_at < 15000)
    -- none of them before the lease ran out: at least a lease (1.5 s) after the claim, less
    -- the slack of a loaded machine
    local first
    for _, r in ipairs(begins(other)) do
      if slot(r.claim) > slot(victim_run.claim) then
        first = first or r
      end
    end
    assert(first.t - victim_run.t >= 1.2, string.format("the other host ran %.3f s after the killed run began",
      first.t - victim_run.t))
    -- the other host counted the runs it skipped while the dead one held the job
    local st = require("cjson").decode((H.sh(H.bin .. " status --json --control " .. other.ctl)))
    assert(st.jobs[1].skipped >= 1, other:output())
  end)

  it("sends a long lease as the whole number it is (lease_digits)", function()
    -- 10^14 ms: Lua's tostring writes it "1e+14", which Redis refuses as an expiry
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup{ workers = 1, jobs = { redis = "127.0.0.1:" .. process.argv[1], lease = 1e14 } }
      end
      cluster.job("tick", { every = 200 }, function(run) say("tick ran", run.claim) end)
    ]], {}, { args = { port } })
    assert(p:wait_output("tick ran", 10000, true), p:output())
    assert.equal(0, p:count("cannot claim runs in Redis", true))
  end)

  it("renews a lease one request at a time while Redis hangs (lease_renew)", function()
    -- a run of 8 s with a lease of 300 ms: renewed every 100 ms; Redis stopped (SIGSTOP: the
    -- kernel still takes connections, nothing answers) for 2.5 s, each renewal waits its 2 s
    local own = H.tmpdir()
    local p = H.start_app([[
      if cluster.is_master then
        cluster.setup{ workers = 1, jobs = { redis = "127.0.0.1:" .. process.argv[1], lease = 300 } }
      end
      cluster.job("long", { every = 200 }, function(run)
        say("long begins", run.claim)
        timer.sleep(8000)
      end)
    ]], { "--control", own .. "/ctl.sock" }, { args = { port } })
    assert(p:wait_output("long begins", 15000, true), p:output())
    local function sockets()
      local out = H.sh("ls -l /proc/" .. p.pid .. "/fd")
      local n = 0
      for _ in out:gmatch("socket:") do
        n = n + 1
      end
      return n
    end
    H.sleep(300)
    local before = sockets()
    redis:kill(19) -- SIGSTOP
    H.sleep(2500)
    local during = sockets()
    redis:kill(18) -- SIGCONT
    assert(during - before <= 3, string.format("%d sockets before Redis hung, %d after 2.5 s\n%s", before, during,
      p:output()))
  end)

  it("skips runs while Redis is down (logged once) and claims again when it answers", function()
    local a = instance("A")
    assert(H.wait_for(function() return #begins(a) >= 1 end, 15000), a:output())
    redis:stop()
    redis = nil
    assert(a:wait_output("cannot claim runs in Redis", 10000, true), a:output())
    local n_down = #begins(a)
    H.sleep(1500)
    assert.equal(1, a:count("cannot claim runs in Redis", true))
    assert(#begins(a) <= n_down + 1, a:output()) -- (one that was claimed as Redis went)
    local st = require("cjson").decode((H.sh(H.bin .. " status --json --control " .. a.ctl)))
    assert(st.jobs[1].skipped >= 1, a:output())
    redis = start_redis(port)
    assert(a:wait_output("answers again", 10000, true), a:output())
    local n_back = #begins(a)
    assert(H.wait_for(function() return #begins(a) >= n_back + 2 end, 15000), a:output())
  end)
end)


-- A "Redis" that is not one (another service on that port, a proxy that adds bytes): a
-- luacluster app whose worker answers every command with what its mode says and prints how
-- many connections it holds open.
local FAKE = [[
local net = require("luacluster.net")
local MODE, PORT = process.argv[1], tonumber(process.argv[2])
local REPLY = {
  extra = function() return "+OK\r\n+EXTRA\r\n" end,             -- a reply, then bytes no command asked for
  http = function() return "HTTP/1.1 400 Bad Request\r\n\r\n" end, -- another service on the port
  -- the SET of the job's lease is taken and never answered (a reply lost on the way)
  hang_lease = function(data)
    if data:find("EVAL", 1, true) then
      say("eval", data:match("(luacluster:job:%S-:running)"))
      return ":1\r\n"
    elseif data:find(":running", 1, true) then
      return nil
    end
    return "+OK\r\n"
  end,
}
if cluster.is_worker then
  local open = 0
  net.create_server(function(sock)
    open = open + 1
    say("open", open)
    sock:on("close", function()
      open = open - 1
      say("open", open)
    end)
    sock:on("data", function(data)
      local reply = REPLY[MODE](data)
      if reply then
        sock:write(reply)
      end
    end)
  end):listen(PORT)
  say("fake redis listens")
end
]]

local CLIENT = [[
local REDIS = process.argv[1]
if cluster.is_master then
  cluster.setup{ workers = 1, jobs = { redis = "127.0.0.1:" .. REDIS, lease = 900 } }
end
cluster.job("tick", { every = 150 }, function(run)
  say("ran", run.claim)
end)
]]

describe("cluster.job with a Redis that answers what Redis does not (hostile_redis)", function()
  after_each(function()
    H.cleanup()
  end)

  local function fake(mode)
    local port = H.free_port()
    local p = H.start_app(FAKE, { "-w", 1 }, { args = { mode, port } })
    assert(p:wait_output("fake redis listens", 10000, true), p:output())
    assert(H.wait_listening(port, 10000), p:output())
    return p, port
  end

  local function most_open(p)
    local most = 0
    for n in p:output():gmatch("open (%d+)") do
      most = math.max(most, tonumber(n))
    end
    return most
  end

  it("says Redis does not answer and skips the runs when the reply is not Redis's", function()
    local f, port = fake("http")
    local own = H.tmpdir()
    local a = H.start_app(CLIENT, { "--control", own .. "/ctl.sock" }, { args = { port } })
    -- not a silent "another host has it": logged as Redis down, the runs counted as skipped
    assert(a:wait_output("cannot claim runs in Redis", 10000, true), a:output())
    assert.truthy(a:output():find("HTTP/1.1 400", 1, true), a:output())
    H.sleep(1000)
    assert.equal(0, a:count("ran ", true))
    local st = require("cjson").decode((H.sh(H.bin .. " status --json --control " .. own .. "/ctl.sock")))
    assert(st.jobs[1].skipped >= 2, a:output())
    -- and no connection kept open per command
    assert(most_open(f) <= 4, "the fake Redis held " .. most_open(f) .. " connections open\n" .. a:output())
  end)

  it("gives the job's lease back when the SET that took it got no answer", function()
    local f, port = fake("hang_lease")
    local a = H.start_app(CLIENT, {}, { args = { port } })
    assert(a:wait_output("cannot claim runs in Redis", 15000, true), a:output())
    -- the SET may have been done: the lease is released if it is ours, not left to its expiry
    assert(f:wait_output("eval luacluster:job:tick:running", 10000, true), f:output() .. a:output())
    -- a Redis that answers half a claim is not "back": logged once, not twice a run
    assert(H.wait_for(function() return f:count("eval ", true) >= 3 end, 15000), f:output())
    assert.equal(1, a:count("cannot claim runs in Redis", true))
    assert.equal(0, a:count("answers again", true))
    assert.equal(0, a:count("ran ", true))
  end)

  it("closes a connection that holds bytes no command asked for instead of leaving it open", function()
    local f, port = fake("extra")
    local a = H.start_app(CLIENT, {}, { args = { port } })
    assert(H.wait_for(function() return a:count("ran ", true) >= 8 end, 15000), a:output() .. f:output())
    -- each run sends two or three commands: one connection kept per command would be dozens
    assert(most_open(f) <= 4, "the fake Redis held " .. most_open(f) .. " connections open\n" .. a:output())
  end)
end)
