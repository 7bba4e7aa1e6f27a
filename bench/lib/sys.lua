-- bench/lib/sys.lua: what the bench needs from the machine: a monotonic clock, processes in
-- their own sessions (every one recorded so that bench/run's trap can end them), free ports
-- outside the ephemeral range, tiny HTTP exchanges, RSS, and wrk.
-- Processes and sockets come from spec/helper.lua (LuaJIT FFI on POSIX calls).
local ffi = require("ffi")
local H = require("helper")

ffi.cdef [[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
int getpid(void);
]]
local C = ffi.C

local S = { H = H }

S.root = H.root
S.run_id = os.getenv("BENCH_RUN_ID") or ("b" .. C.getpid())

local ts = ffi.new("struct bench_timespec")

-- milliseconds, monotonic, sub-microsecond resolution
function S.now()
  C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

S.sleep = H.sleep
S.sh = H.sh
S.read_file = H.read_file
S.write_file = H.write_file

local verbose = false
function S.set_verbose(v) verbose = v end

function S.log(fmt, ...)
  io.stderr:write(string.format("[bench] " .. fmt, ...), "\n")
  io.stderr:flush()
end

function S.debug(fmt, ...)
  if verbose then S.log(fmt, ...) end
end

-- ---- processes ----

local pids_file = os.getenv("BENCH_PIDS")

local function record(pid, add)
  if not pids_file then return end
  if add then
    local f = io.open(pids_file, "a")
    if f then f:write(pid, "\n") f:close() end
  else
    local keep = {}
    for line in H.read_file(pids_file):gmatch("[^\n]+") do
      if tonumber(line) ~= pid then keep[#keep + 1] = line end
    end
    H.write_file(pids_file, #keep > 0 and table.concat(keep, "\n") .. "\n" or "")
  end
end

local live = {}

-- spawn(argv, { dir=, env=, cwd= }) -> process (from spec/helper.lua: :poll, :stop, :kill,
-- :kill_group, :output). Each process gets its own session; it and its descendants carry
-- BENCH_RUN_ID in their environment, which is how bench/run's trap finds them.
function S.spawn(argv, opts)
  opts = opts or {}
  local env = { BENCH_RUN_ID = S.run_id }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local p = H.spawn(argv, { dir = opts.dir, env = env, cwd = opts.cwd })
  live[p.pid] = p
  record(p.pid, true)
  return p
end

-- Stops a process and its whole session: SIGTERM, then SIGKILL to the group after grace_ms.
function S.stop(p, grace_ms)
  if not p then return end
  if not p:poll() then
    p:kill("SIGTERM")
    p:wait(grace_ms or 3000)
  end
  p:kill_group("SIGKILL")
  if not p:poll() then
    p:kill("SIGKILL")
    p:wait(2000)
  end
  live[p.pid] = nil
  record(p.pid, false)
end

function S.stop_all()
  for _, p in pairs(live) do S.stop(p, 1000) end
end

function S.kill(pid, sig)
  return ffi.C.kill(pid, sig or 15) == 0
end

-- ---- directories ----

function S.mkdir(path)
  H.sh("mkdir -p '" .. path .. "'")
  return path
end

-- ---- ports ----

ffi.cdef [[
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, unsigned int len);
int close(int fd);
struct bench_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
]]

local function htons(n) return bit.bor(bit.lshift(bit.band(n, 0xff), 8), bit.rshift(n, 8)) end

local function port_free(port)
  local fd = C.socket(2, 1, 0)
  local sa = ffi.new("struct bench_sockaddr_in")
  sa.family, sa.port, sa.addr = 2, htons(port), 0x0100007f
  local ok = C.bind(fd, sa, ffi.sizeof(sa)) == 0
  C.close(fd)
  return ok
end

-- count consecutive free ports on 127.0.0.1 below the ephemeral range (20000-30999), so
-- that wrk's own connections never take them; returns the first.
local taken = {}
math.randomseed(C.getpid() * 7919 + os.time())
function S.free_port(count)
  count = count or 1
  for _ = 1, 1000 do
    local p = math.random(20000, 30999 - count)
    local ok = true
    for i = 0, count - 1 do
      if taken[p + i] or not port_free(p + i) then ok = false break end
    end
    if ok then
      for i = 0, count - 1 do taken[p + i] = true end
      return p
    end
  end
  error("no free port")
end

-- ---- HTTP ----

-- One GET on a new connection: -> status, body | nil, err. "refused" when nothing listens.
function S.get(port, path, timeout_ms)
  local s = H.connect(port)
  if not s then return nil, "refused" end
  s:send("GET " .. (path or "/") .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
  local data = s:read_all(timeout_ms or 2000)
  s:close()
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, data == "" and "closed" or "bad response" end
  return status, data:match("\r\n\r\n(.*)$") or ""
end

-- Polls until GET path answers 200: -> ms waited (from `since`, default now) | nil, err
function S.wait_200(port, timeout_ms, since, path)
  local t0 = since or S.now()
  local deadline = S.now() + (timeout_ms or 10000)
  local last
  while S.now() < deadline do
    local status, err = S.get(port, path or "/", 2000)
    if status == 200 then return S.now() - t0 end
    last = status and ("status " .. status) or err
    if err == "refused" then S.sleep(1) end
  end
  return nil, "no 200 on port " .. port .. " within " .. (timeout_ms or 10000) .. " ms (" .. tostring(last) .. ")"
end

-- ---- /proc ----

function S.rss_kb(pid)
  local s = H.read_file("/proc/" .. pid .. "/status")
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

function S.children(pid)
  local list = {}
  for _, f in ipairs({ "/proc/" .. pid .. "/task/" .. pid .. "/children" }) do
    for c in H.read_file(f):gmatch("%d+") do list[#list + 1] = tonumber(c) end
  end
  return list
end

-- ---- limits ----

ffi.cdef [[
struct bench_rlimit { unsigned long cur, max; };
int getrlimit(int resource, struct bench_rlimit *rl);
int setrlimit(int resource, const struct bench_rlimit *rl);
]]

local RLIMIT_NOFILE = 7

-- this process's RLIMIT_NOFILE: -> soft, hard
function S.nofile()
  local rl = ffi.new("struct bench_rlimit")
  assert(C.getrlimit(RLIMIT_NOFILE, rl) == 0, "getrlimit")
  return tonumber(rl.cur), tonumber(rl.max)
end

-- Raises this process's RLIMIT_NOFILE (which the servers it starts inherit) to at least want
-- open files, past the hard limit when it may (CAP_SYS_RESOURCE), else to the hard limit:
-- -> the soft limit now
function S.raise_nofile(want)
  local cur, max = S.nofile()
  if cur >= want then return cur end
  if C.setrlimit(RLIMIT_NOFILE, ffi.new("struct bench_rlimit", want, math.max(want, max))) ~= 0 then
    C.setrlimit(RLIMIT_NOFILE, ffi.new("struct bench_rlimit", max, max))
  end
  return (S.nofile())
end

-- pid and all its descendants (children of children ...), pid first
function S.tree(pid)
  local list, i = { pid }, 1
  while list[i] do
    for _, c in ipairs(S.children(list[i])) do list[#list + 1] = c end
    i = i + 1
  end
  return list
end

-- RSS summed over pid and its descendants (a server's master and workers): -> kB, process count
function S.tree_rss_kb(pid)
  local sum, n = 0, 0
  for _, p in ipairs(S.tree(pid)) do
    local kb = S.rss_kb(p)
    if kb then sum, n = sum + kb, n + 1 end
  end
  return sum, n
end

-- CPU time (user + system, in clock ticks of 1/100 s) summed over pid and its descendants
-- (a server's whole tree, figures 14 and 15: CPU per round trip and per delivery)
function S.tree_cpu_ticks(pid)
  local sum = 0
  for _, p in ipairs(S.tree(pid)) do
    local rest = H.read_file("/proc/" .. p .. "/stat"):match("%) (.*)$")
    if rest then
      local f = {}
      for x in rest:gmatch("%S+") do f[#f + 1] = x end
      sum = sum + (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0) -- utime, stime (fields 14, 15)
    end
  end
  return sum
end

function S.comm(pid)
  return (H.read_file("/proc/" .. pid .. "/comm"):gsub("%s+$", ""))
end

-- ---- wrk ----

local function num(s)
  if not s then return nil end
  local n, unit = s:match("^([%d%.]+)(%a*)$")
  n = tonumber(n)
  if not n then return nil end
  return n * (({ k = 1e3, K = 1e3, M = 1e6, G = 1e9 })[unit] or 1)
end

-- wrk{ port=, path=, seconds=, connections=, close=, headers = { "Name: value", ... },
-- timeout= (s), script= (a wrk Lua script), args = { ... } (the script's), scheme = "https" (wrk
-- over TLS; default http) }
-- -> { rps, requests, errors, non2xx, ... }. wrk -t1 always; bounded by timeout(1) in case it hangs.
function S.wrk(o)
  local url = (o.scheme or "http") .. "://127.0.0.1:" .. o.port .. (o.path or "/")
  local opts = { o.close and "-H 'Connection: close'" or "" }
  for _, h in ipairs(o.headers or {}) do opts[#opts + 1] = "-H '" .. h .. "'" end
  if o.timeout then opts[#opts + 1] = "--timeout " .. o.timeout .. "s" end
  if o.script then opts[#opts + 1] = "-s '" .. o.script .. "'" end
  local tail = o.args and (" -- " .. table.concat(o.args, " ")) or ""
  local cmd = string.format("timeout -k 2 %d wrk -t1 -c%d -d%ds %s %s%s 2>&1", o.seconds + (o.timeout or 2) + 15,
    o.connections or 64, o.seconds, table.concat(opts, " "), url, tail)
  return S.parse_wrk(H.sh(cmd))
end

function S.parse_wrk(out)
  local r = {
    rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)")),
    requests = tonumber(out:match("(%d+) requests in")),
    non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s*(%d+)")) or 0,
    raw = out,
  }
  local c, rd, w, t = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
  r.connect_errors, r.read_errors, r.write_errors, r.timeouts = tonumber(c) or 0, tonumber(rd) or 0, tonumber(w) or 0, tonumber(t) or 0
  r.errors = r.connect_errors + r.read_errors + r.write_errors + r.timeouts
  r.failed = r.errors + r.non2xx
  r.latency_avg = out:match("Latency%s+(%S+)")
  if not r.rps then
    return nil, "wrk failed: " .. out:gsub("\n", " | ")
  end
  return r
end

-- Starts wrk in the background (for load during a reload); returns the process and its output path.
function S.wrk_bg(o, dir)
  local argv = { "/usr/bin/timeout", "-k", "2", tostring(o.seconds + 15), "wrk", "-t1", "-c" .. (o.connections or 64),
    "-d" .. o.seconds .. "s", "http://127.0.0.1:" .. o.port .. (o.path or "/") }
  return S.spawn(argv, { dir = dir })
end

S.num = num

return S
