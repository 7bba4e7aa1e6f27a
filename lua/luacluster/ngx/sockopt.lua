-- luacluster.ngx.sockopt: the socket options of a cosocket's setoption and getoption that the
-- runtime has no call for, read and set with getsockopt(2) / setsockopt(2) on the socket's
-- descriptor through LuaJIT's FFI (Linux's numbers). The descriptor stays the runtime's
-- (runtime/conn.c); this only reads or changes an option on it.
local ffi = require("ffi")

ffi.cdef [[
int setsockopt(int fd, int level, int name, const void *val, unsigned int len);
int getsockopt(int fd, int level, int name, void *val, unsigned int *len);
char *strerror(int errnum);
]]

local C = ffi.C
local SOL_SOCKET, IPPROTO_TCP = 1, 6
-- option -> { level, name }
local OPTIONS = {
  reuseaddr = { SOL_SOCKET, 2 },
  sndbuf = { SOL_SOCKET, 7 },
  rcvbuf = { SOL_SOCKET, 8 },
  keepalive = { SOL_SOCKET, 9 },
  ["tcp-nodelay"] = { IPPROTO_TCP, 1 },
}
local int_box = ffi.new("int[1]")
local len_box = ffi.new("unsigned int[1]")


-- the system's words for errno, lower case, as nginx's
local function failed()
  return nil, ffi.string(C.strerror(ffi.errno())):lower()
end


-- set(fd, option, value) -> true | nil, err
local function set(fd, option, value)
  if fd == nil then
    return nil, "closed"
  end
  local o = OPTIONS[option]
  int_box[0] = value
  if C.setsockopt(fd, o[1], o[2], int_box, 4) ~= 0 then
    return failed()
  end
  return true
end


-- get(fd, option) -> value | nil, err
local function get(fd, option)
  if fd == nil then
    return nil, "closed"
  end
  local o = OPTIONS[option]
  len_box[0] = 4
  if C.getsockopt(fd, o[1], o[2], int_box, len_box) ~= 0 then
    return failed()
  end
  return tonumber(int_box[0])
end


return { set = set, get = get, OPTIONS = OPTIONS }
