-- A process's address-space limit (RLIMIT_AS through prlimit), for the specs that fill a
-- worker's Lua heap to see what the runtime does when an allocation fails (oom_spec.lua,
-- http_oom_spec.lua): set it a little above what the process maps now, then lift it.
local H = require("helper")
local ffi = require("ffi")

pcall(ffi.cdef, [[
struct lc_spec_rlimit { uint64_t cur, max; };
int prlimit(int pid, int resource, const struct lc_spec_rlimit *new_limit, struct lc_spec_rlimit *old_limit);
]])

local RLIMIT_AS = 9
local INFINITY = ffi.cast("uint64_t", -1)

local _M = {}


-- limits pid's address space to `bytes` (nil: no limit); -> true, or false when the process
-- is gone (a worker that aborted)
function _M.set(pid, bytes)
  local lim = ffi.new("struct lc_spec_rlimit")
  lim.cur = bytes or INFINITY
  lim.max = INFINITY
  return ffi.C.prlimit(pid, RLIMIT_AS, lim, nil) == 0
end


-- what pid maps now, in bytes (VmSize)
function _M.vm_size(pid)
  local kb = H.read_file("/proc/" .. pid .. "/status"):match("VmSize:%s*(%d+) kB")
  return tonumber(kb) * 1024
end


return _M
