-- Shared dictionaries, hardening: what a review of the store found (runtime/shdict*.c,
-- runtime/shdict_lua.c, lib/shdict_ffi.lua), each case run in a master with no workers.
local H = require("helper")

describe("shared dictionaries, hardening", function()
  after_each(function()
    H.cleanup()
  end)

  -- A read copies the value into a per-process buffer under the lock and Lua copies it out
  -- afterwards; the allocation of that copy can run a finalizer (LuaJIT runs __gc in GC steps),
  -- and a finalizer that reads the dictionary writes the same buffer (or moves it): the outer
  -- read must still return its own value.
  it("returns its own value when a finalizer reads the dictionary while the value is copied out", function()
    local app = H.start_app([[
jit.off()
local shared = require("luacluster.shared")
cluster.setup{ workers = 0, shared_dicts = { d = "4m" } }
local d = shared.d
local A, B = string.rep("a", 3000), string.rep("b", 3000)
d:set("a", A)
d:set("b", B)
for i = 1, 40 do d:set("k" .. i, i) end
local want_keys = {}
for _, k in ipairs(d:get_keys(0)) do want_keys[#want_keys + 1] = k end
table.sort(want_keys)
want_keys = table.concat(want_keys, ",")
local nested = 0
local function fin()
  nested = nested + 1
  local v = d:get("b")
  if nested % 50 == 0 then -- a longer value: the buffer moves
    d:set("grow", string.rep("g", 4096 + nested % 65536))
    d:get("grow")
  end
  assert(v == B)
end
local bad = { get = 0, get_stale = 0, lpop = 0, keys = 0 }
for i = 1, 20000 do
  for _ = 1, 20 do
    local p = newproxy(true)
    getmetatable(p).__gc = fin
  end
  if d:get("a") ~= A then bad.get = bad.get + 1 end
  if d:get_stale("a") ~= A then bad.get_stale = bad.get_stale + 1 end
  d:rpush("l", A)
  if d:lpop("l") ~= A then bad.lpop = bad.lpop + 1 end
  local ks = {}
  for _, k in ipairs(d:get_keys(0)) do if not k:match("^grow") then ks[#ks + 1] = k end end
  table.sort(ks)
  if table.concat(ks, ",") ~= want_keys then bad.keys = bad.keys + 1 end
end
say("nested", nested > 0, "bad get", bad.get, "get_stale", bad.get_stale, "lpop", bad.lpop, "keys", bad.keys)
]], { "-w", "0" })
    local code = app:wait(120000)
    local out = app:output()
    assert.equal(0, code, out)
    assert.matches("nested true bad get 0 get_stale 0 lpop 0 keys 0", out, 1, true)
  end)
end)

describe("shared dictionaries' memory file", function()
  after_each(function()
    H.cleanup()
  end)

  -- Every process maps ranges of one memfd: shrinking it would make every access past the new
  -- end a SIGBUS in every process of the cluster. The file is sealed against shrinking (it
  -- still grows: a reload may add a dictionary, and F_SEAL_SEAL keeps anyone from sealing it
  -- against growing).
  it("cannot be shrunk, and still grows when a dictionary is added", function()
    local app = H.start_app([[
local ffi = require("ffi")
local core = require("luacluster.core")
local shared = require("luacluster.shared")
ffi.cdef("int ftruncate(int fd, int64_t len); int fcntl(int fd, int cmd, ...);")
cluster.setup{ workers = 0, shared_dicts = { a = "64k" } }
local fd = core.shdict_fd()
say("shrink", ffi.C.ftruncate(fd, 4096), ffi.errno())
say("seal grow", ffi.C.fcntl(fd, 1033, ffi.new("int", 4)), ffi.errno()) -- F_ADD_SEALS, F_SEAL_GROW
say("a", shared.a:set("k", "v"), shared.a:get("k"))
cluster.setup{ shared_dicts = { b = "64k" } }
say("b", shared.b:set("k", "w"), shared.b:get("k"), shared.a:get("k"))
]], { "-w", "0" })
    local code = app:wait(20000)
    local out = app:output()
    assert.equal(0, code, out)
    assert.matches("shrink -1 1\n", out, 1, true) -- EPERM
    assert.matches("seal grow -1 1\n", out, 1, true) -- F_SEAL_SEAL: nobody stops it growing
    assert.matches("a true v\n", out, 1, true)
    assert.matches("b true w v\n", out, 1, true)
  end)
end)

describe("shared dictionaries' file in a worker", function()
  after_each(function()
    H.cleanup()
  end)

  -- (a regression check, not a fix) The worker maps the file and closes its fd 4 before the
  -- app's first line: what the app starts (io.popen, child_process) has neither the fd nor
  -- LUACLUSTER_SHDICT.
  it("is neither an open fd nor in the environment of what a worker starts", function()
    local app = H.start_app([[
if cluster.is_master then
  cluster.setup{ workers = 1, shared_dicts = { a = "64k" } }
  return
end
local shared = require("luacluster.shared")
local f = io.popen("ls -l /proc/self/fd/ 2>&1; echo env=$LUACLUSTER_SHDICT.")
local out = f:read("*a")
f:close()
say("memfd in child", out:find("luacluster-shdict", 1, true) ~= nil, "env", out:match("env=(%S*)"))
say("dict works", shared.a:set("x", 1), shared.a:get("x"))
]], { "-w", "1" })
    assert.truthy(app:wait_output("dict works", 20000, true), app:output())
    local out = app:output()
    assert.matches("memfd in child false env .", out, 1, true)
    assert.matches("dict works true 1", out, 1, true)
  end)
end)

describe("the master and a dictionary's lock", function()
  after_each(function()
    H.cleanup()
  end)

  -- README: a script's own call in the master gives up after 5 s ("timeout") rather than wait
  -- forever for a process stopped while holding the lock; once that process is killed, the next
  -- call repairs the region and goes on.
  it("gives up after about 5 s on a lock a stopped process holds, and repairs it once that one dies", function()
    local app = H.start_app([=[
local ffi = require("ffi")
local core = require("luacluster.core")
local shared = require("luacluster.shared")
ffi.cdef[[
int fork(void); int kill(int pid, int sig); int getpid(void); void _exit(int code);
int waitpid(int pid, int *status, int options);
int pthread_mutex_lock(void *m);
struct lc_tv { long sec; long usec; }; int gettimeofday(struct lc_tv *tv, void *tz);
]]
local function now()
  local tv = ffi.new("struct lc_tv")
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.sec) + tonumber(tv.usec) / 1e6
end
cluster.setup{ workers = 0, shared_dicts = { d = "64k" } }
local d = shared.d
d:set("k", "v")
local pid = ffi.C.fork()
if pid == 0 then
  -- the region's robust mutex is at offset 64 (runtime/shdict_int.h: shd_hdr.mutex)
  ffi.C.pthread_mutex_lock(ffi.cast("char *", core.shdict_base(d)) + 64)
  ffi.C.kill(ffi.C.getpid(), 19) -- SIGSTOP, holding it
  ffi.C._exit(0)
end
local st = ffi.new("int[1]")
ffi.C.waitpid(pid, st, 2) -- WUNTRACED: it has stopped
local t0 = now()
local v, err = d:get("k")
local took = now() - t0
say("stopped holder", v, err, took >= 4.5 and took < 30 and "about 5 s" or ("took " .. took))
local ok, serr = d:set("k2", "w")
say("set", ok, serr)
ffi.C.kill(pid, 9)
ffi.C.waitpid(pid, st, 0)
say("after kill", d:get("k"), d:set("k2", "w"), d:verify(), core.shdict_stats()[1].repairs)
]=], { "-w", "0" })
    local code = app:wait(60000)
    local out = app:output()
    assert.equal(0, code, out)
    assert.matches("stopped holder nil timeout about 5 s\n", out, 1, true)
    assert.matches("set false timeout\n", out, 1, true)
    assert.matches("after kill v true true 1\n", out, 1, true)
  end)
end)


describe("the master's wait for a dictionary's lock", function()
  after_each(function()
    H.cleanup()
  end)

  -- The master's 5 s are 5 s of the monotonic clock: a wall clock stepped back while it waits
  -- (NTP, a VM resumed, date -s) must not stretch them. A preloaded clock_gettime shows the
  -- master a CLOCK_REALTIME one hour ahead, which is what a step back of one hour just after it
  -- read the time looks like to a deadline taken on that clock.
  it("gives up after 5 s of the monotonic clock, whatever the wall clock does", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/shim.c", [[
#define _GNU_SOURCE
#include <dlfcn.h>
#include <time.h>
int clock_gettime(clockid_t c, struct timespec *ts) {
  static int (*real)(clockid_t, struct timespec *);
  if (real == NULL) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
  int r = real(c, ts);
  if (r == 0 && c == CLOCK_REALTIME) ts->tv_sec += 3600;
  return r;
}
]])
    local out, rc = H.sh("cc -shared -fPIC -o " .. dir .. "/shim.so " .. dir .. "/shim.c -ldl")
    assert.equal(0, rc, out)
    local asan = os.getenv("ASAN_OPTIONS")
    local app = H.start_app([=[
local ffi = require("ffi")
local core = require("luacluster.core")
local shared = require("luacluster.shared")
ffi.cdef[[
int fork(void); int kill(int pid, int sig); int getpid(void); void _exit(int code);
int waitpid(int pid, int *status, int options);
int pthread_mutex_lock(void *m);
]]
cluster.setup{ workers = 0, shared_dicts = { d = "64k" } }
local d = shared.d
local pid = ffi.C.fork()
if pid == 0 then
  ffi.C.pthread_mutex_lock(ffi.cast("char *", core.shdict_base(d)) + 64) -- shd_hdr.mutex
  ffi.C.kill(ffi.C.getpid(), 19)
  ffi.C._exit(0)
end
local st = ffi.new("int[1]")
ffi.C.waitpid(pid, st, 2)
local t0 = os.time()
local v, err = d:get("k")
say("gave up", v, err, os.time() - t0 < 30)
ffi.C.kill(pid, 9)
ffi.C.waitpid(pid, st, 0)
]=], { "-w", "0" }, { env = { LD_PRELOAD = dir .. "/shim.so",
      ASAN_OPTIONS = asan and (asan .. ":verify_asan_link_order=0") or nil } })
    local done = app:wait_output("gave up", 40000, true)
    local all = app:output()
    assert.truthy(done, "the master still waits after 40 s\n" .. all)
    assert.matches("gave up nil timeout true", all, 1, true)
  end)
end)
