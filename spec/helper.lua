-- Shared by the specs: start the real luacluster binary as a client would (its own session,
-- its output in files), talk to it over real sockets, and always stop what was started.
-- Process control and sockets use LuaJIT's FFI on POSIX calls, so specs need nothing else.
local ffi = require("ffi")

ffi.cdef [[
int fork(void);
int setsid(void);
int dup2(int oldfd, int newfd);
int open(const char *path, int flags, int mode);
int close(int fd);
int chdir(const char *path);
int execve(const char *path, char *const argv[], char *const envp[]);
void _exit(int status);
int waitpid(int pid, int *status, int options);
int kill(int pid, int sig);
int poll(void *fds, unsigned long nfds, int timeout);
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, unsigned int len);
int connect(int fd, const void *addr, unsigned int len);
int getsockname(int fd, void *addr, unsigned int *len);
int setsockopt(int fd, int level, int name, const void *val, unsigned int len);
int listen(int fd, int backlog);
int getpid(void);
int shutdown(int fd, int how);
long read(int fd, void *buf, unsigned long n);
long write(int fd, const void *buf, unsigned long n);
int fcntl(int fd, int cmd, ...);
char *strerror(int errnum);
extern char **environ;
struct lc_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
struct lc_pollfd { int fd; short events; short revents; };
]]

local C = ffi.C
local O_WRONLY, O_CREAT, O_TRUNC, O_RDONLY = 1, 64, 512, 0
local SIGKILL, SIGTERM = 9, 15
local WNOHANG = 1
local POLLIN, POLLOUT = 1, 4

local H = {}

H.root = (function()
  local here = debug.getinfo(1, "S").source:sub(2)
  local dir = here:match("^(.*)/spec/helper%.lua$") or "."
  if dir:sub(1, 1) ~= "/" then
    dir = os.getenv("PWD") .. "/" .. (dir == "." and "" or dir)
  end
  return (dir:gsub("/$", ""))
end)()
-- the build under test: ./build, or $LUACLUSTER_BUILD_DIR (.ci/run's sanitizer run: build-asan);
-- $LUACLUSTER_BIN runs the binary through a wrapper instead (a valgrind run)
H.build_dir = os.getenv("LUACLUSTER_BUILD_DIR") or (H.root .. "/build")
H.bin = os.getenv("LUACLUSTER_BIN") or (H.build_dir .. "/luacluster")


function H.sleep(ms)
  C.poll(nil, 0, ms)
end


function H.now()
  local f = io.open("/proc/uptime")
  local up = f:read("*n")
  f:close()
  return up * 1000
end


-- Runs one case of a C test binary in build/test, which prints "ok CASE" and exits 0 when it
-- passes; returns its output and exit code.
function H.c_case(name, case, timeout_s)
  return H.sh("timeout " .. (timeout_s or 60) .. " " .. H.build_dir .. "/test/" .. name .. " " .. case)
end


-- Runs a shell command; returns its output (stdout and stderr) and exit code.
function H.sh(cmd)
  -- LD_PRELOAD is only for busted's own luajit (the sanitizer run's core.so): not for curl & co
  local p = io.popen("unset LD_PRELOAD; (" .. cmd .. ") 2>&1; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return out:gsub("__rc=%d+%s*$", ""), rc
end


function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return ""
  end
  local s = f:read("*a")
  f:close()
  return s
end


function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end


-- (under $LCSPEC_TMP when spec/run set it: removed with the run)
function H.tmpdir()
  local out = H.sh("mktemp -d " .. (os.getenv("LCSPEC_TMP") or "/tmp") .. "/lcspec.XXXXXX")
  return (out:gsub("%s+$", ""))
end


-- Writes files = { ["app.lua"] = src, ... } into a new folder; returns the folder.
function H.app(files)
  local dir = H.tmpdir()
  for name, src in pairs(files) do
    if name:find("/") then
      H.sh("mkdir -p " .. dir .. "/" .. name:match("^(.*)/"))
    end
    H.write_file(dir .. "/" .. name, src)
  end
  return dir
end


-- Apps in specs start with these lines: the modules they use, by their usual names.
H.prelude = table.concat({
  'local cluster = require("luacluster.cluster")',
  'local timer = require("luacluster.timer")',
  'local process = require("luacluster.process")',
  'local function say(...) local t = {} for i = 1, select("#", ...) do t[i] = tostring((select(i, ...))) end'
    .. ' io.stdout:write(table.concat(t, " "), "\\n") io.stdout:flush() end',
  "",
}, "\n")


-- start_app(src, options, opts): writes H.prelude .. src as app.lua (with opts.files beside
-- it) in a new folder and starts luacluster on it; returns the process.
function H.start_app(src, options, opts)
  opts = opts or {}
  local files = { ["app.lua"] = H.prelude .. src }
  for name, s in pairs(opts.files or {}) do
    files[name] = s
  end
  local dir = H.app(files)
  return H.start(dir .. "/app.lua", options, opts), dir
end


-- start_redis(port) -> the process of a real redis-server on 127.0.0.1:port (no persistence),
-- once it listens (stop it by pid: p:stop())
function H.start_redis(port)
  local dir = H.tmpdir()
  local p = H.spawn({ "/usr/bin/redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no" }, { dir = dir, cwd = dir })
  assert(H.wait_listening(port, 10000), "redis-server did not start:\n" .. p:output())
  return p
end


-- Polls fn until it returns a true value or timeout_ms passes; returns that value.
function H.wait_for(fn, timeout_ms, step_ms)
  local deadline = H.now() + (timeout_ms or 5000)
  repeat
    local v = fn()
    if v then
      return v
    end
    H.sleep(step_ms or 20)
  until H.now() > deadline
  return fn()
end


-- ---- processes ----

local proc_mt = {}
proc_mt.__index = proc_mt

local started = {}


local function cstrings(list)
  local arr = ffi.new("char *[?]", #list + 1)
  local keep = {}
  for i, s in ipairs(list) do
    keep[i] = ffi.new("char[?]", #s + 1, s)
    arr[i - 1] = keep[i]
  end
  arr[#list] = nil
  return arr, keep
end


local function environ_with(extra)
  local env, i = {}, 0
  while C.environ[i] ~= nil do
    local kv = ffi.string(C.environ[i])
    local k = kv:match("^([^=]*)=")
    if not (extra and k and extra[k] ~= nil) and k ~= "LD_PRELOAD" then
      env[#env + 1] = kv
    end
    i = i + 1
  end
  for k, v in pairs(extra or {}) do
    if v ~= false then
      env[#env + 1] = k .. "=" .. tostring(v)
    end
  end
  return env
end


-- spawn(argv, opts): argv[1] is the program; opts.cwd, opts.env (table), opts.dir (for output
-- files). The child gets its own session (so a spec can stop its whole group).
function H.spawn(argv, opts)
  opts = opts or {}
  local dir = opts.dir or H.tmpdir()
  local out_path, err_path = dir .. "/stdout.log", dir .. "/stderr.log"
  local cargv, k1 = cstrings(argv)
  local cenv, k2 = cstrings(environ_with(opts.env))
  local cout = ffi.new("char[?]", #out_path + 1, out_path)
  local cerr = ffi.new("char[?]", #err_path + 1, err_path)
  local cnull = ffi.new("char[?]", 10, "/dev/null")
  local ccwd = opts.cwd and ffi.new("char[?]", #opts.cwd + 1, opts.cwd)
  local prog = ffi.new("char[?]", #argv[1] + 1, argv[1])
  local pid = C.fork()
  if pid == 0 then
    C.setsid()
    local fin = C.open(cnull, O_RDONLY, 0)
    local fo = C.open(cout, O_WRONLY + O_CREAT + O_TRUNC, 420)
    local fe = C.open(cerr, O_WRONLY + O_CREAT + O_TRUNC, 420)
    C.dup2(fin, 0)
    C.dup2(fo, 1)
    C.dup2(fe, 2)
    if ccwd then C.chdir(ccwd) end
    C.execve(prog, cargv, cenv)
    C._exit(127)
  end
  local _ = { k1, k2 }
  assert(pid > 0, "fork failed")
  local p = setmetatable({ pid = pid, dir = dir, out_path = out_path, err_path = err_path }, proc_mt)
  started[pid] = p
  return p
end


-- start(app_path, { "-w", "2", ... }, opts) starts luacluster on an app.
-- Unless the options name one (or opts.default_control is set), each started app gets a
-- control socket of its own, so that two runs of the same app (a spec and the sanitizer
-- build's run of it) never meet on the default path derived from the app's file.
function H.start(app, options, opts)
  local argv = { H.bin }
  local has_control = false
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = tostring(o)
    has_control = has_control or o == "--control"
  end
  if not has_control and not (opts and opts.default_control) then
    argv[#argv + 1] = "--control"
    argv[#argv + 1] = H.tmpdir() .. "/control.sock"
  end
  argv[#argv + 1] = app
  for _, a in ipairs((opts and opts.args) or {}) do
    argv[#argv + 1] = tostring(a)
  end
  opts = opts or {}
  opts.dir = opts.dir or app:match("^(.*)/[^/]*$")
  return H.spawn(argv, opts)
end


function proc_mt:stdout() return H.read_file(self.out_path) end
function proc_mt:stderr() return H.read_file(self.err_path) end
function proc_mt:output() return self:stdout() .. self:stderr() end


-- Reaps the process if it has exited: returns true, code, signal.
function proc_mt:poll()
  if self.exited then
    return true, self.code, self.signal
  end
  local st = ffi.new("int[1]")
  local r = C.waitpid(self.pid, st, WNOHANG)
  if r == self.pid then
    local s = st[0]
    self.exited = true
    if bit.band(s, 0x7f) == 0 then
      self.code = bit.band(bit.rshift(s, 8), 0xff)
    else
      self.signal = bit.band(s, 0x7f)
    end
    started[self.pid] = nil
    return true, self.code, self.signal
  end
  return false
end


function proc_mt:alive()
  return not self:poll()
end


-- Waits for exit; returns code, signal (or nil, "timeout").
function proc_mt:wait(timeout_ms)
  local done = H.wait_for(function() return self:poll() end, timeout_ms or 10000)
  if not done then
    return nil, "timeout"
  end
  return self.code, self.signal
end


-- Waits until the output (stdout+stderr) matches a Lua pattern; returns the capture or match.
function proc_mt:wait_output(pattern, timeout_ms, plain)
  return H.wait_for(function()
    local s = self:output()
    if plain then
      return s:find(pattern, 1, true) and pattern
    end
    return s:match(pattern)
  end, timeout_ms or 5000)
end


function proc_mt:count(pattern, plain)
  local s, n, i = self:output(), 0, 1
  while true do
    local a, b = s:find(pattern, i, plain)
    if not a then
      return n
    end
    n, i = n + 1, b + 1
  end
end


function proc_mt:signal_(sig)
  return C.kill(self.pid, sig) == 0
end


function proc_mt:kill(sig)
  local n = type(sig) == "number" and sig or ({ SIGTERM = 15, SIGKILL = 9, SIGINT = 2, SIGHUP = 1, SIGUSR1 = 10, SIGUSR2 = 12 })[sig or "SIGTERM"]
  return C.kill(self.pid, n) == 0
end


-- Sends a signal to the process's whole group, as Ctrl-C in a terminal does.
function proc_mt:kill_group(sig)
  local n = type(sig) == "number" and sig or ({ SIGTERM = 15, SIGKILL = 9, SIGINT = 2, SIGHUP = 1 })[sig or "SIGTERM"]
  return C.kill(-self.pid, n) == 0
end


-- Graceful stop (SIGTERM), then SIGKILL to the whole session if it does not go.
function proc_mt:stop(timeout_ms)
  if self:poll() then
    C.kill(-self.pid, SIGKILL)
    return self.code, self.signal
  end
  C.kill(self.pid, SIGTERM)
  local code, sig = self:wait(timeout_ms or 5000)
  C.kill(-self.pid, SIGKILL)
  if code == nil and sig == nil then
    C.kill(self.pid, SIGKILL)
    return self:wait(2000)
  end
  return code, sig
end


-- Stops every process a spec started and did not stop itself.
function H.cleanup()
  for _, p in pairs(started) do
    p:stop(2000)
  end
end


function H.pid_alive(pid)
  if C.kill(pid, 0) ~= 0 then
    return false
  end
  -- (reaped between the two looks: no stat file, gone)
  local stat = H.read_file("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end


-- pids whose parent is pid (from /proc)
-- (read here, one stat file at a time: a process that exits between the listing and the read
-- is skipped. The earlier `xargs awk` over every stat file got nothing at all when one of them
-- vanished first, since Debian's mawk stops at a file it cannot open: with the suite's shards
-- starting and ending processes all the time, that happened in the fresh root.)
function H.children(pid)
  local list = {}
  for p in H.sh("ls /proc"):gmatch("%d+") do
    local f = io.open("/proc/" .. p .. "/stat")
    local stat = f and f:read("*l")
    if f then f:close() end
    -- pid (comm) state ppid ...: comm may hold spaces and parentheses, so after the last ')'
    local ppid = stat and stat:match("%)%s+%S+%s+(%d+)[^)]*$")
    if tonumber(ppid) == pid then
      list[#list + 1] = tonumber(p)
    end
  end
  return list
end


-- ---- sockets ----

local sock_mt = {}
sock_mt.__index = sock_mt


local function htons(n)
  return bit.bor(bit.lshift(bit.band(n, 0xff), 8), bit.rshift(n, 8))
end


local function sockaddr(port)
  local sa = ffi.new("struct lc_sockaddr_in")
  sa.family = 2
  sa.port = htons(port)
  sa.addr = 0x0100007f -- 127.0.0.1
  return sa
end


-- Ports for servers under test come from below the kernel's ephemeral range, so that the
-- client side of earlier connections (tens of thousands of TIME_WAIT sockets after a benchmark)
-- never sits on them; each candidate is checked the way the server will use it (SO_REUSEADDR,
-- bind, listen).
local pool_low, pool_high = (function()
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  local low = f and tonumber(f:read("*n")) or 32768
  if f then f:close() end
  local a, b = 10000, low - 1
  if low <= 12000 then a, b = 61000, 65535 end
  -- spec/run's shards run at once: each takes its own slice of the range
  local shard, shards = tonumber(os.getenv("LCSPEC_SHARD")), tonumber(os.getenv("LCSPEC_SHARDS"))
  if shard and shards and shards > 1 and shard >= 0 and shard < shards then
    local width = math.floor((b - a + 1) / shards)
    a = a + shard * width
    b = a + width - 1
  end
  return a, b
end)()
math.randomseed(os.time() + tonumber(ffi.C.getpid()))

local function port_is_free(port)
  local fd = C.socket(2, 1, 0)
  assert(fd >= 0, "socket failed")
  local one = ffi.new("int[1]", 1)
  C.setsockopt(fd, 1, 2, one, ffi.sizeof("int")) -- SOL_SOCKET, SO_REUSEADDR
  local sa = sockaddr(port)
  local ok = C.bind(fd, sa, ffi.sizeof(sa)) == 0 and C.listen(fd, 1) == 0
  C.close(fd)
  return ok
end


-- A base port p such that p .. p + n - 1 were all free a moment ago on 127.0.0.1
-- (ports mode takes one per worker slot).
function H.free_port_range(n)
  n = n or 1
  for _ = 1, 200 do
    local base, ok = math.random(pool_low, pool_high - n + 1), true
    for i = 0, n - 1 do
      if not port_is_free(base + i) then
        ok = false
        break
      end
    end
    if ok then return base end
  end
  error("no range of " .. n .. " free ports in " .. pool_low .. "-" .. pool_high)
end


-- A port that was free a moment ago on 127.0.0.1.
function H.free_port()
  return H.free_port_range(1)
end


-- Several distinct free ports.
function H.free_ports(n)
  local seen, list = {}, {}
  while #list < n do
    local p = H.free_port()
    if not seen[p] then
      seen[p] = true
      list[#list + 1] = p
    end
  end
  return list
end


-- Waits until something accepts connections on 127.0.0.1:port: -> true | nil
function H.wait_listening(port, timeout_ms)
  return H.wait_for(function()
    local s = H.connect(port)
    if s then
      s:close()
      return true
    end
  end, timeout_ms or 10000)
end


-- connect(port [, timeout_ms]) -> sock | nil, err
function H.connect(port, timeout_ms)
  local fd = C.socket(2, 1, 0)
  local sa = sockaddr(port)
  if C.connect(fd, sa, ffi.sizeof(sa)) ~= 0 then
    C.close(fd)
    return nil, "connect failed"
  end
  return setmetatable({ fd = fd, timeout = timeout_ms or 5000 }, sock_mt)
end


function sock_mt:send(s)
  local off = 0
  while off < #s do
    local n = C.write(self.fd, ffi.cast("const char *", s) + off, #s - off)
    if n <= 0 then
      return nil, "write failed"
    end
    off = off + n
  end
  return true
end


local function wait_readable(fd, ms)
  local pfd = ffi.new("struct lc_pollfd[1]")
  pfd[0].fd = fd
  pfd[0].events = POLLIN
  return C.poll(pfd, 1, ms) > 0
end


-- Reads what arrives within timeout_ms: -> data ("" at EOF) | nil, "timeout"
function sock_mt:recv(timeout_ms)
  if not wait_readable(self.fd, timeout_ms or self.timeout) then
    return nil, "timeout"
  end
  local buf = ffi.new("char[65536]")
  local n = C.read(self.fd, buf, 65536)
  if n < 0 then
    return nil, "read failed"
  end
  return ffi.string(buf, n)
end


-- Reads until EOF or timeout: -> all data, "eof" | "timeout"
function sock_mt:read_all(timeout_ms)
  local parts = {}
  local deadline = H.now() + (timeout_ms or self.timeout)
  while true do
    local left = deadline - H.now()
    if left <= 0 then
      return table.concat(parts), "timeout"
    end
    local d = self:recv(left)
    if d == nil then
      return table.concat(parts), "timeout"
    elseif d == "" then
      return table.concat(parts), "eof"
    end
    parts[#parts + 1] = d
  end
end


-- Reads until the data so far satisfies done(data) (or EOF / timeout).
function sock_mt:read_until(done, timeout_ms)
  local data = ""
  local deadline = H.now() + (timeout_ms or self.timeout)
  while not done(data) do
    local left = deadline - H.now()
    if left <= 0 then
      return data, "timeout"
    end
    local d = self:recv(left)
    if d == nil then
      return data, "timeout"
    elseif d == "" then
      return data, "eof"
    end
    data = data .. d
  end
  return data
end


function sock_mt:shutdown_write()
  C.shutdown(self.fd, 1)
end


function sock_mt:close()
  if self.fd then
    C.close(self.fd)
    self.fd = nil
  end
end


-- ---- HTTP through curl ----

-- curl(url, extra_args) -> body, status, output
function H.curl(url, extra)
  local out = H.sh("curl -s -m 5 -o /dev/stdout -w '\\n__status=%{http_code}' " .. (extra or "") .. " '" .. url .. "'")
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return out:gsub("\n__status=%d+%s*$", ""), status
end


-- One raw HTTP exchange on a fresh connection: -> response text, "eof" | "timeout"
function H.http_raw(port, request, timeout_ms)
  local s, err = H.connect(port)
  if not s then
    return nil, err
  end
  s:send(request)
  local data, how = s:read_all(timeout_ms or 3000)
  s:close()
  return data, how
end


-- ---- systemd's side of the notify protocol ----

ffi.cdef [[
struct lc_sockaddr_un { uint16_t family; char path[108]; };
long recv(int fd, void *buf, unsigned long n, int flags);
]]

local notify_mt = {}
notify_mt.__index = notify_mt


-- notify_socket(address): a unix datagram socket bound at address (a path, or "@name" in the
-- abstract namespace), as systemd binds $NOTIFY_SOCKET. :recv(timeout_ms) -> datagram | nil.
function H.notify_socket(address)
  local fd = C.socket(1, 2 + 0x80000, 0) -- AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC
  assert(fd >= 0, "socket failed")
  local sa = ffi.new("struct lc_sockaddr_un")
  sa.family = 1
  ffi.copy(sa.path, address, #address)
  if address:sub(1, 1) == "@" then
    sa.path[0] = 0
  end
  assert(C.bind(fd, sa, 2 + #address) == 0, "bind " .. address .. " failed")
  return setmetatable({ fd = fd, address = address }, notify_mt)
end


function notify_mt:recv(timeout_ms)
  if not wait_readable(self.fd, timeout_ms or 5000) then
    return nil, "timeout"
  end
  local buf = ffi.new("char[4096]")
  local n = C.recv(self.fd, buf, 4096, 0)
  if n < 0 then
    return nil, "recv failed"
  end
  return ffi.string(buf, n)
end


-- Datagrams until one contains the Lua pattern (or timeout): -> that datagram, all so far
function notify_mt:wait_for(pattern, timeout_ms)
  local seen = {}
  local deadline = H.now() + (timeout_ms or 5000)
  while H.now() < deadline do
    local d = self:recv(deadline - H.now())
    if not d then
      break
    end
    seen[#seen + 1] = d
    if d:find(pattern) then
      return d, seen
    end
  end
  return nil, seen
end


function notify_mt:close()
  if self.fd then
    C.close(self.fd)
    self.fd = nil
    if self.address:sub(1, 1) == "/" then
      os.remove(self.address)
    end
  end
end


return H
