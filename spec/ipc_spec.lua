-- Unit specs of the IPC channel (runtime/ipc.c) driven by a crafted peer: the channel reads one
-- end of a socketpair made here, and the spec writes raw frames (any header a peer process could
-- send, sockets with SCM_RIGHTS) into the other end, runs the loop, and reads what the channel
-- writes back. Sizes near 4 GiB, sockets no frame claims, closes from inside a callback, and a
-- callback whose arguments cannot be built (out of memory) under a real address-space limit.
local H = require("helper")
local ffi = require("ffi")
local core = require("luacluster.core")

for _, decl in ipairs({
  "int socketpair(int domain, int type, int protocol, int sv[2]);",
  "struct lc_iovec { void *base; size_t len; };",
  "struct lc_msghdr { void *name; unsigned int namelen; struct lc_iovec *iov; size_t iovlen;"
    .. " void *control; size_t controllen; int flags; };",
  "long sendmsg(int fd, const struct lc_msghdr *msg, int flags);",
}) do
  pcall(ffi.cdef, decl)
end
local C = ffi.C
local AF_UNIX, AF_INET, SOCK_STREAM, SOCK_CLOEXEC = 1, 2, 1, 524288
local F_GETFL, F_SETFL, O_NONBLOCK = 3, 4, 2048
local K = core.kind

local function le32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end

local function frame(kind, payload, opts)
  opts = opts or {}
  return le32(opts.len or #payload) .. string.char(kind, opts.flags or 0, 0, 0) .. le32(opts.peer or 0)
    .. le32(opts.seq or 0) .. payload
end

local function nonblock(fd)
  C.fcntl(fd, F_SETFL, ffi.cast("int", bit.bor(C.fcntl(fd, F_GETFL), O_NONBLOCK)))
end

local function pair()
  local sv = ffi.new("int[2]")
  assert(C.socketpair(AF_UNIX, SOCK_STREAM + SOCK_CLOEXEC, 0, sv) == 0, "socketpair")
  nonblock(sv[1]) -- the spec's end (libuv makes its own end non-blocking)
  return sv[0], sv[1]
end

local function fd_count()
  local p = io.popen("ls /proc/" .. C.getpid() .. "/fd")
  local _, n = p:read("*a"):gsub("\n", "")
  p:close()
  return n
end

-- writes bytes, with one socket (a fresh TCP one, closed here once sent) when with_socket
local function send(fd, bytes, with_socket)
  if not with_socket then
    assert(C.write(fd, bytes, #bytes) == #bytes, "write")
    return
  end
  local sock = C.socket(AF_INET, SOCK_STREAM, 0)
  assert(sock >= 0)
  local iov = ffi.new("struct lc_iovec", { ffi.cast("void *", bytes), #bytes })
  local control = ffi.new("uint8_t[24]") -- CMSG_SPACE(sizeof(int)): len (8), level, type, fd
  ffi.cast("size_t *", control)[0] = 20
  ffi.cast("int *", control + 8)[0] = 1 -- SOL_SOCKET
  ffi.cast("int *", control + 12)[0] = 1 -- SCM_RIGHTS
  ffi.cast("int *", control + 16)[0] = sock
  local msg = ffi.new("struct lc_msghdr")
  msg.iov, msg.iovlen, msg.control, msg.controllen = iov, 1, control, 24
  assert(C.sendmsg(fd, msg, 0) == #bytes, "sendmsg")
  C.close(sock)
end

local function read_all(fd)
  local buf = ffi.new("char[65536]")
  local parts = {}
  while true do
    local n = C.read(fd, buf, 65536)
    if n <= 0 then
      break
    end
    parts[#parts + 1] = ffi.string(buf, n)
  end
  return table.concat(parts)
end

-- runs the loop until cond() or about 3 s; a raise out of core.run (a Lua error thrown through
-- libuv) fails the spec
local function run_until(cond)
  for _ = 1, 300 do
    assert(core.run("nowait") ~= nil)
    if cond() then
      return true
    end
    H.sleep(10)
  end
  return cond()
end

-- a channel on one end of a socketpair; events are collected; returns the channel, the peer
-- end, and the list of events ({ "frame", kind, peer, seq, payload, handle } | { "error", msg } |
-- { "close" })
local function open_channel(on_event)
  local mine, peer = pair()
  local events = {}
  local h
  h = assert(core.ipc_open(mine, function(kind, p, seq, payload, handle)
    local ev
    if kind == "error" or kind == "close" then
      ev = { kind, p }
    else
      ev = { "frame", kind, p, seq, payload, handle }
    end
    events[#events + 1] = ev
    if on_event then
      on_event(h, ev)
    end
  end))
  return h, peer, events
end

local function find(events, what, pattern)
  for _, ev in ipairs(events) do
    if ev[1] == what and (pattern == nil or tostring(ev[2]):find(pattern, 1, true)) then
      return ev
    end
  end
end

local function frames(events)
  local list = {}
  for _, ev in ipairs(events) do
    if ev[1] == "frame" then
      list[#list + 1] = ev
    end
  end
  return list
end

-- the largest limit the runtime takes (before the cap, it took up to 2^32 - 1)
local function set_largest_limit(h)
  if not pcall(h.set_max_frame, h, 4294967295) then
    h:set_max_frame(core.max_message_size)
  end
end

local closers = {}
local function closing(h, fd)
  closers[#closers + 1] = function()
    if not h:is_closed() then h:close() end
    C.close(fd)
  end
end


describe("ipc channel", function()
  after_each(function()
    for _, f in ipairs(closers) do f() end
    closers = {}
    run_until(function() return true end)
  end)

  describe("sizes", function()
    it("takes a limit up to the longest string LuaJIT holds, and refuses one above with a clear error", function()
      local h, peer = open_channel()
      closing(h, peer)
      assert.equal(2147483391, core.max_message_size)
      h:set_max_frame(core.max_message_size)
      local ok, err = pcall(h.set_max_frame, h, 4294967295)
      assert.is_false(ok)
      assert.matches("max_message_size must be from 16 to 2147483391 bytes", err, 1, true)
      assert.is_false((pcall(h.set_max_frame, h, core.max_message_size + 1)))
      assert.is_false((pcall(h.set_max_frame, h, 0 / 0)))
    end)

    it("skips a header claiming nearly 4 GiB under the largest limit instead of wrapping its size", function()
      local h, peer, events = open_channel()
      closing(h, peer)
      set_largest_limit(h)
      send(peer, frame(K.MSG, "", { len = 4294967295 - 7 }) .. "some bytes")
      assert.is_true(run_until(function() return find(events, "error", "over the limit") end), "no error event")
      assert.equal(0, #frames(events))
      assert.is_false(h:is_closed())
    end)

    it("skips a frame just over the longest Lua string under the largest limit", function()
      local h, peer, events = open_channel()
      closing(h, peer)
      set_largest_limit(h)
      send(peer, frame(K.MSG, "", { len = 2147483392 }))
      assert.is_true(run_until(function() return find(events, "error", "over the limit") end), "no error event")
    end)

    it("in the master, refuses to re-frame a routed frame whose header claims nearly 4 GiB", function()
      local a, a_peer, a_events = open_channel()
      local b, b_peer = open_channel()
      closing(a, a_peer)
      closing(b, b_peer)
      set_largest_limit(a)
      a:set_route(1)
      b:set_route(2)
      -- a normal routed frame first: B's worker gets it as a MSG from worker 1
      send(a_peer, frame(K.ROUTE, "hi", { peer = 2, seq = 5 }))
      local got = ""
      assert.is_true(run_until(function()
        got = got .. read_all(b_peer)
        return #got >= 18
      end))
      assert.equal(frame(K.MSG, "hi", { peer = 1 }), got)
      send(a_peer, frame(K.ROUTE, "", { len = 4294967295 - 3, peer = 2, seq = 6 }) .. "x")
      assert.is_true(run_until(function() return find(a_events, "error", "over the limit") end), "no error event")
      assert.equal("", read_all(b_peer))
      a:clear_route()
      b:clear_route()
    end)
  end)

  describe("sockets", function()
    it("closes a socket that no frame announced, instead of handing it to the next frame that announces one", function()
      local h, peer, events = open_channel()
      closing(h, peer)
      local before = fd_count()
      send(peer, frame(K.MSG, "no flag"), true)
      assert.is_true(run_until(function() return #frames(events) == 1 end))
      send(peer, frame(K.MSG, "flag, no socket", { flags = 1 }))
      assert.is_true(run_until(function() return #frames(events) == 2 end))
      local second = frames(events)[2]
      assert.equal("flag, no socket", second[5])
      assert.is_nil(second[6], "the first frame's stray socket was handed to the second frame")
      assert.truthy(find(events, "error", "no frame announced"))
      assert.truthy(find(events, "error", "did not arrive"))
      run_until(function() return fd_count() == before end)
      assert.equal(before, fd_count())
    end)

    it("closes a socket that comes with a frame kind that takes none (a REPLY), and still delivers the frame", function()
      local h, peer, events = open_channel()
      closing(h, peer)
      local before = fd_count()
      send(peer, frame(K.REPLY, "r", { flags = 1, seq = 3 }), true)
      assert.is_true(run_until(function() return #frames(events) == 1 end))
      local f = frames(events)[1]
      assert.equal(K.REPLY, f[2])
      assert.is_nil(f[6])
      assert.truthy(find(events, "error", "which takes none"))
      run_until(function() return fd_count() == before end)
      assert.equal(before, fd_count())
    end)

    it("hands a socket to the frame it came with, whole or split over reads", function()
      local h, peer, events = open_channel()
      closing(h, peer)
      local bytes = frame(K.MSG, "with a socket", { flags = 1 })
      send(peer, bytes:sub(1, 5), true)
      assert.is_true(run_until(function() return true end))
      send(peer, bytes:sub(6))
      assert.is_true(run_until(function() return #frames(events) == 1 end))
      local f = frames(events)[1]
      assert.is_not_nil(f[6])
      f[6]:close()
      assert.is_nil(find(events, "error"))
    end)
  end)

  describe("closing", function()
    it("delivers nothing more once the error handler closed the channel inside the read", function()
      local h, peer, events = open_channel(function(ch, ev)
        if ev[1] == "error" then ch:close() end
      end)
      closing(h, peer)
      send(peer, frame(K.MSG, "announces a socket that is not there", { flags = 1 }) .. frame(K.MSG, "after"))
      assert.is_true(run_until(function() return find(events, "close") end))
      assert.equal(0, #frames(events), "a frame was delivered after its channel was closed")
    end)

    it("stops delivering when a frame's callback closes the channel, with more frames in the same read", function()
      local h, peer, events = open_channel(function(ch, ev)
        if ev[1] == "frame" then ch:close() end
      end)
      closing(h, peer)
      send(peer, frame(K.MSG, "1") .. frame(K.MSG, "2") .. frame(K.MSG, "3"))
      assert.is_true(run_until(function() return find(events, "close") end))
      assert.equal(1, #frames(events))
    end)

    it("does not keep a route to a channel registered from its own close callback", function()
      local a, a_peer = open_channel()
      closing(a, a_peer)
      a:set_route(1)
      local b, b_peer = open_channel(function(ch, ev)
        if ev[1] == "close" then pcall(ch.set_route, ch, 7) end
      end)
      b:close()
      C.close(b_peer)
      assert.is_true(run_until(function() return b:is_closed() end))
      for _ = 1, 5 do core.run("nowait") end -- its close callback has run, its memory freed
      -- a ROUTE to 7 must fail back to worker 1, not reach freed memory
      send(a_peer, frame(K.ROUTE, "x", { peer = 7, seq = 9 }))
      local got = ""
      assert.is_true(run_until(function()
        got = got .. read_all(a_peer)
        return #got >= 16
      end))
      assert.equal(frame(K.ROUTE_FAIL, "", { peer = 7, seq = 9 }), got)
      a:clear_route()
    end)
  end)
end)
