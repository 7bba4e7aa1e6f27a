-- Soak: runs a cluster (bench/soak_app.lua) for a given time under load from a bounded client
-- (keep-alive and new connections, GET, POST, a 64 kB and a streamed answer) while it SIGKILLs
-- workers at random and reloads repeatedly; then reports requests sent and failed, the RSS and
-- open file descriptors of the master and of the workers at the start (after a warm-up) and at
-- the end. Only 127.0.0.1, a port of its own; it stops by itself.
--
--   luajit bench/soak.lua [seconds=60] [--workers 2] [--conns 16] [--kill-every 3000]
--                          [--reload-every 7000] [--max-requests 0] [--warmup 5]
--                          [--master-slope 20]
--
-- Every answer names the worker pid that made it. A request that fails counts as "on a
-- killed worker" when its connection was last answered by a worker this script SIGKILLed, or
-- when its connection had no answer yet and a kill happened between its connect and its
-- failure (the master may have handed it to the worker being killed). Any other failure is
-- "unexplained" and makes the exit status 1, as does RSS or fd growth past the tolerances.
-- The master's RSS is also sampled every 2 s: its least-squares slope over the second half of
-- the run, and never before 300 s, must stay under --master-slope kB per minute (default 20):
-- a master that keeps something per restart or per generation grows at a steady rate there,
-- while one that is only warming up (its JIT compiling the paths that restarts and reloads
-- take, its Lua and C heaps reaching their high-water marks: 2-4 minutes under this load) has
-- flattened out by then. A run whose window is shorter than 2 minutes (under 420 s) reports
-- the slope without judging it. See bench/README.md, "Soak".
package.path = "./spec/?.lua;" .. package.path
local H = require("helper")
local ffi = require("ffi")
local C = ffi.C

ffi.cdef [[
long read(int fd, void *buf, unsigned long n);
long write(int fd, const void *buf, unsigned long n);
int poll(void *fds, unsigned long nfds, int timeout);
int fcntl(int fd, int cmd, ...);
int close(int fd);
]]

-- ---- options ----
local opt = { seconds = 60, workers = 2, conns = 16, kill_every = 3000, reload_every = 7000, max_requests = 0, warmup = 5,
  master_slope = 20 }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a:match("^%-%-") then
      local k = a:sub(3):gsub("-", "_")
      assert(opt[k] ~= nil, "unknown option " .. a)
      opt[k] = tonumber(arg[i + 1])
      i = i + 2
    else
      opt.seconds = tonumber(a)
      i = i + 1
    end
  end
end

math.randomseed(os.time())
local port = H.free_port()
local app = os.getenv("SOAK_APP") or (H.root .. "/bench/soak_app.lua")
local control = H.tmpdir() .. "/control.sock"
local master = H.start(app, { "-p", port, "--control", control }, {
  dir = H.tmpdir(),
  env = { SOAK_WORKERS = opt.workers, SOAK_MAX_REQUESTS = opt.max_requests },
})

local function log(...)
  io.stdout:write(string.format("[%7.1fs] ", (H.now() - (START or H.now())) / 1000), string.format(...), "\n")
  io.stdout:flush()
end

-- ---- /proc, and the master's status ----

-- the master's Lua heap in kB (status --json), or nil
local function master_lua_heap()
  local out = H.sh(H.bin .. " status --control " .. control .. " --json 2>/dev/null")
  return tonumber(out:match('"lua_heap_kb":(%d+)'))
end


-- least-squares slope of samples {t = s, v = kB} in kB per minute
local function slope_per_min(samples)
  local n, st, sv = #samples, 0, 0
  if n < 3 then
    return 0
  end
  for _, p in ipairs(samples) do
    st, sv = st + p.t, sv + p.v
  end
  local mt, mv, num, den = st / n, sv / n, 0, 0
  for _, p in ipairs(samples) do
    num = num + (p.t - mt) * (p.v - mv)
    den = den + (p.t - mt) ^ 2
  end
  return den > 0 and num / den * 60 or 0
end

local function status_kb(pid, field)
  return tonumber(H.read_file("/proc/" .. pid .. "/status"):match(field .. ":%s*(%d+)"))
end

local function fd_count(pid)
  local out = H.sh("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  return tonumber(out:match("%d+")) or 0
end

local function worker_pids()
  local list = {}
  for _, pid in ipairs(H.children(master.pid)) do
    if H.read_file("/proc/" .. pid .. "/cmdline"):find(app, 1, true) then
      list[#list + 1] = pid
    end
  end
  return list
end

local function snapshot()
  local s = { master_rss = status_kb(master.pid, "VmRSS"), master_fds = fd_count(master.pid), workers = {} }
  local rss, fds = 0, 0
  for _, pid in ipairs(worker_pids()) do
    local r, f = status_kb(pid, "VmRSS") or 0, fd_count(pid)
    s.workers[#s.workers + 1] = { pid = pid, rss = r, fds = f }
    rss, fds = rss + r, fds + f
  end
  s.worker_rss_avg = #s.workers > 0 and rss / #s.workers or 0
  s.worker_fds_avg = #s.workers > 0 and fds / #s.workers or 0
  return s
end

-- ---- the client ----
local POLLIN, O_NONBLOCK, F_SETFL, F_GETFL = 1, 2048, 4, 3
local conns = {}
local stats = { sent = 0, ok = 0, failed = 0, failed_killed = 0, unexplained = 0, connects = 0, bad = {} }
local killed = {}     -- pid -> time it was killed
local kill_times = {} -- times of kills
local buf = ffi.new("char[65536]")

local REQUESTS = {
  { w = 70, s = "GET / HTTP/1.1\r\nHost: soak\r\n\r\n" },
  { w = 10, s = "GET /big HTTP/1.1\r\nHost: soak\r\n\r\n" },
  { w = 10, s = "GET /stream HTTP/1.1\r\nHost: soak\r\n\r\n" },
  { w = 10, s = "POST /p HTTP/1.1\r\nHost: soak\r\nContent-Length: 300\r\n\r\n" .. string.rep("b", 300) },
}

local function pick_request()
  local r = math.random(100)
  for _, q in ipairs(REQUESTS) do
    if r <= q.w then
      return q.s
    end
    r = r - q.w
  end
  return REQUESTS[1].s
end

local function new_conn(slot)
  local s = H.connect(port)
  local c = { slot = slot, connected_at = H.now(), left = math.random(1, 60) }
  if not s then
    c.dead = true
    return c
  end
  C.fcntl(s.fd, F_SETFL, bit.bor(C.fcntl(s.fd, F_GETFL), O_NONBLOCK))
  c.sock = s
  stats.connects = stats.connects + 1
  return c
end

local function send_next(c)
  c.data = ""
  c.sent_at = H.now()
  c.left = c.left - 1
  stats.sent = stats.sent + 1
  local req = pick_request()
  if c.left <= 0 then
    req = req:gsub("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
  end
  local n = C.write(c.sock.fd, req, #req)
  if n ~= #req then
    return false
  end
  return true
end

local function kill_explains(c, now)
  if c.pid then
    return killed[c.pid] ~= nil
  end
  for _, t in ipairs(kill_times) do
    if t >= c.connected_at - 1000 and t <= now then
      return true
    end
  end
  return false
end

local function fail(c, why)
  local now = H.now()
  stats.failed = stats.failed + 1
  if kill_explains(c, now) then
    stats.failed_killed = stats.failed_killed + 1
  else
    stats.unexplained = stats.unexplained + 1
    if #stats.bad < 10 then
      stats.bad[#stats.bad + 1] = string.format("%s (worker %s, %d requests on the connection)", why, tostring(c.pid), c.done or 0)
    end
  end
  if c.sock then
    c.sock:close()
  end
  conns[c.slot] = new_conn(c.slot)
  if conns[c.slot].sock then
    if not send_next(conns[c.slot]) then
      fail(conns[c.slot], "write failed")
    end
  end
end

-- -> true when c.data holds a whole response
local function complete(c)
  local d = c.data
  local he = d:find("\r\n\r\n", 1, true)
  if not he then
    return false
  end
  local head = d:sub(1, he)
  local body = d:sub(he + 4)
  local cl = tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength:%s*(%d+)"))
  if cl then
    return #body >= cl, head
  end
  if head:lower():find("transfer%-encoding:%s*chunked") then
    return body:sub(-5) == "0\r\n\r\n", head
  end
  return false
end

local function on_readable(c)
  local n = C.read(c.sock.fd, buf, 65536)
  if n <= 0 then
    if n == 0 then
      return fail(c, "closed before the answer")
    end
    local errno = ffi.errno()
    if errno == 11 then
      return
    end
    return fail(c, "read error " .. errno)
  end
  c.data = c.data .. ffi.string(buf, n)
  local done, head = complete(c)
  if not done then
    return
  end
  local status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
  c.pid = tonumber(head:match("\r\nX%-Worker%-Pid: (%d+)")) or c.pid
  if status ~= 200 then
    return fail(c, "status " .. tostring(status))
  end
  stats.ok = stats.ok + 1
  c.done = (c.done or 0) + 1
  if c.left <= 0 or head:lower():find("\r\nconnection: close", 1, true) then
    c.sock:close()
    conns[c.slot] = new_conn(c.slot)
    c = conns[c.slot]
    if not c.sock then
      return fail(c, "connect failed")
    end
  end
  if not send_next(c) then
    fail(c, "write failed")
  end
end

-- ---- run ----
assert(master:wait_output("listening", 10000, true) or H.wait_for(function() return #worker_pids() >= opt.workers end, 10000),
  master:output())
H.wait_for(function() return #worker_pids() >= opt.workers end, 10000)
START = H.now()
log("soak: %d s, %d workers, %d connections, SIGKILL every %d ms, reload every %d ms, max_requests %d (port %d)",
  opt.seconds, opt.workers, opt.conns, opt.kill_every, opt.reload_every, opt.max_requests, port)
for i = 1, opt.conns do
  conns[i] = new_conn(i)
  send_next(conns[i])
end
local pfds = ffi.new("struct lc_pollfd[?]", opt.conns)
local start_snap, kills, reloads = nil, 0, 0
local next_kill = H.now() + opt.warmup * 1000 + opt.kill_every
local next_reload = H.now() + opt.warmup * 1000 + opt.reload_every
local deadline = START + opt.seconds * 1000
local next_report = H.now() + 60000
local rss_samples, next_sample = {}, H.now() -- the master's RSS every 2 s: { t = s, v = kB }
while H.now() < deadline do
  local now = H.now()
  if now >= next_sample then
    next_sample = now + 2000
    rss_samples[#rss_samples + 1] = { t = (now - START) / 1000, v = status_kb(master.pid, "VmRSS") }
  end
  if not start_snap and now >= START + opt.warmup * 1000 then
    start_snap = snapshot()
    start_snap.sent = stats.sent
    start_snap.lua_heap = master_lua_heap()
    log("start (after %d s of warm-up): master rss %d kB, lua heap %s kB, fds %d; workers rss %.0f kB, fds %.1f on average",
      opt.warmup, start_snap.master_rss, tostring(start_snap.lua_heap), start_snap.master_fds, start_snap.worker_rss_avg,
      start_snap.worker_fds_avg)
  end
  if opt.kill_every > 0 and now >= next_kill then
    next_kill = now + opt.kill_every * (0.5 + math.random())
    local pids = worker_pids()
    if #pids > 0 then
      local victim = pids[math.random(#pids)]
      killed[victim] = now
      kill_times[#kill_times + 1] = now
      C.kill(victim, 9)
      kills = kills + 1
    end
  end
  if opt.reload_every > 0 and now >= next_reload then
    next_reload = now + opt.reload_every
    master:kill("SIGHUP")
    reloads = reloads + 1
  end
  if now >= next_report then
    next_report = now + 60000
    local s = snapshot()
    log("%d sent, %d failed (%d unexplained); master rss %d kB, lua heap %s kB, fds %d; workers rss %.0f kB fds %.1f",
      stats.sent, stats.failed, stats.unexplained, s.master_rss, tostring(master_lua_heap()), s.master_fds,
      s.worker_rss_avg, s.worker_fds_avg)
  end
  for i = 1, opt.conns do
    pfds[i - 1].fd = conns[i].sock and conns[i].sock.fd or -1
    pfds[i - 1].events = POLLIN
    pfds[i - 1].revents = 0
  end
  if C.poll(pfds, opt.conns, 50) > 0 then
    for i = 1, opt.conns do
      if pfds[i - 1].revents ~= 0 and conns[i].sock and pfds[i - 1].fd == conns[i].sock.fd then
        on_readable(conns[i])
      end
    end
  end
  for i = 1, opt.conns do -- a connection that could not be made, or an answer that never comes
    local c = conns[i]
    if c.dead then
      fail(c, "connect failed")
    elseif c.sent_at and H.now() - c.sent_at > 10000 then
      fail(c, "no answer within 10 s")
    end
  end
end
-- let what is in flight finish, then measure with the cluster quiet
local quiet_deadline = H.now() + 3000
for i = 1, opt.conns do
  local c = conns[i]
  while c.sock and H.now() < quiet_deadline and not complete(c) do
    local d = c.sock:recv(200)
    if d == nil or d == "" then break end
    c.data = c.data .. d
  end
  if c.sock then c.sock:close() end
end
H.sleep(1000)
local end_snap = snapshot()
end_snap.lua_heap = master_lua_heap()
-- the slope over the second half of the run, after the master's warm-up (see the top)
local SLOPE_FROM, SLOPE_MIN_WINDOW = 300, 120
local half = math.max(opt.warmup, opt.seconds / 2, SLOPE_FROM)
local second_half = {}
for _, p in ipairs(rss_samples) do
  if p.t >= half then
    second_half[#second_half + 1] = p
  end
end
local slope = slope_per_min(second_half)
local judged = opt.seconds - half >= SLOPE_MIN_WINDOW
if os.getenv("SOAK_SERIES") then -- the samples, "seconds kB" per line, to plot or look at
  local f = assert(io.open(os.getenv("SOAK_SERIES"), "w"))
  for _, p in ipairs(rss_samples) do
    f:write(string.format("%.1f %d\n", p.t, p.v))
  end
  f:close()
end
local code = master:stop(15000)
local recycled = master:count("replaced pid", true)
local hb_kills = master:count("has not answered a heartbeat", true)

local function growth(a, b) return a > 0 and (b - a) / a * 100 or 0 end
print("")
print(string.format("soak result after %d s: %d workers, %d SIGKILLs, %d reloads, %d connections made",
  opt.seconds, opt.workers, kills, reloads, stats.connects))
print(string.format("  requests sent %d, answered 200 %d, failed %d: %d on killed workers, %d unexplained",
  stats.sent, stats.ok, stats.failed, stats.failed_killed, stats.unexplained))
print(string.format("  master   rss %6d kB -> %6d kB (%+.1f%%), fds %d -> %d, lua heap %s kB -> %s kB",
  start_snap.master_rss, end_snap.master_rss, growth(start_snap.master_rss, end_snap.master_rss),
  start_snap.master_fds, end_snap.master_fds, tostring(start_snap.lua_heap), tostring(end_snap.lua_heap)))
if judged then
  print(string.format("  master   rss slope over the second half (%d samples from %d s): %+.1f kB/min (bound %d kB/min)%s",
    #second_half, half, slope, opt.master_slope, slope > opt.master_slope and ": STILL GROWING" or ""))
else
  print(string.format("  master   rss slope not judged: a run of %d s has no %d s after its first %d s (use 420 s or more)",
    opt.seconds, SLOPE_MIN_WINDOW, SLOPE_FROM))
end
print(string.format("  workers  rss %6.0f kB -> %6.0f kB (%+.1f%%) average of %d -> %d, fds %.1f -> %.1f average",
  start_snap.worker_rss_avg, end_snap.worker_rss_avg, growth(start_snap.worker_rss_avg, end_snap.worker_rss_avg),
  #start_snap.workers, #end_snap.workers, start_snap.worker_fds_avg, end_snap.worker_fds_avg))
print(string.format("  workers replaced for max_requests: %d; killed by the heartbeat: %d", recycled, hb_kills))
print(string.format("  master exit after stop: %s", tostring(code)))
for _, b in ipairs(stats.bad) do
  print("  unexplained: " .. b)
end
local ok = stats.unexplained == 0 and stats.ok > 0 and code == 0 and hb_kills == 0
  and end_snap.master_fds <= start_snap.master_fds + 2
  and end_snap.worker_fds_avg <= start_snap.worker_fds_avg + 2
  and growth(start_snap.master_rss, end_snap.master_rss) < 50
  and (not judged or slope <= opt.master_slope)
  and growth(start_snap.worker_rss_avg, end_snap.worker_rss_avg) < 50
print(ok and "soak: PASS" or "soak: FAIL")
os.exit(ok and 0 or 1)
