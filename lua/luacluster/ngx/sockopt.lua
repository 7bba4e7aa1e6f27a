-- luacluster.ngx.sockopt: the socket options of a cosocket's setoption that the runtime has no
-- call for (keepalive, reuseaddr, sndbuf, rcvbuf), set with setsockopt(2) on the socket's
-- descriptor through LuaJIT's FFI (Linux's SOL_SOCKET numbers). The descriptor stays the
-- runtime's (runtime/conn.c); this only changes an option on it.
local ffi = require("ffi")

ffi.cdef [[
int setsockopt(int fd, int level, int name, const void *val, unsigned int len);
char *strerror(int errnum);
]]

local C = ffi.C
local SOL_SOCKET = 1
local NAMES = { reuseaddr = 2, sndbuf = 7, rcvbuf = 8, keepalive = 9 }
local int_box = ffi.new("int[1]")


-- set(fd, option, value) -> true | nil, err (the system's words, lower case, as nginx's)
local function set(fd, option, value)
  if fd == nil then
    return nil, "closed"
  end
  int_box[0] = value
  if C.setsockopt(fd, SOL_SOCKET, NAMES[option], int_box, 4) ~= 0 then
    return nil, ffi.string(C.strerror(ffi.errno())):lower()
  end
  return true
end


return { set = set }
