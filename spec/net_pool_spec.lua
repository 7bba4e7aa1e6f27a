-- Pools of idle outbound connections (net/pool.lua, conn.c's park): set_keepalive puts a
-- connection in its pool, net.connect to the same pool reuses it (reused_times, the same fd and
-- the same server-side connection), and what a pool hands out is never a connection that its
-- peer closed, that sent bytes while idle, that outlived its idle time or its pool's size.
local H = require("helper")
local N = require("net_util")

describe("outbound connection pools", function()
  after_each(function()
    H.cleanup()
  end)

  it("reuses an idle connection, and keeps none that is not clean", function()
    N.run([[
  local port = env_port("PORT")
  local function id(s)
    assert(s:write("id\n"))
    return s:read_line()
  end
  -- reuse: the same connection (server-side id, fd), counted
  local a = assert(net.connect("127.0.0.1", port))
  local id_a, fd_a = id(a), a:fileno()
  check("fresh", a:reused_times() == 0)
  check("keepalive", a:set_keepalive() == true)
  check("closed_after", select(2, a:read()) == "closed")
  local b = assert(net.connect("127.0.0.1", port))
  check("reused", b:reused_times() == 1 and b:fileno() == fd_a and id(b) == id_a, b:reused_times())
  assert(b:set_keepalive())
  local c = assert(net.connect("127.0.0.1", port))
  check("reused_twice", c:reused_times() == 2 and id(c) == id_a, c:reused_times())
  -- another pool name does not take it
  local other = assert(net.connect("127.0.0.1", port, { pool = "other" }))
  check("other_pool", other:reused_times() == 0 and id(other) ~= id_a)
  other:close()
  -- the peer closes it while idle: never handed out
  assert(c:write("closelater 100\n"))
  assert(c:set_keepalive())
  timer.sleep(400)
  local d = assert(net.connect("127.0.0.1", port))
  check("peer_closed", d:reused_times() == 0 and id(d) ~= id_a, d:reused_times())
  -- the peer sends a byte while idle: never handed out
  local id_d = id(d)
  assert(d:write("later 100 x\n"))
  assert(d:set_keepalive())
  timer.sleep(400)
  local e = assert(net.connect("127.0.0.1", port))
  check("spoke_while_idle", e:reused_times() == 0 and id(e) ~= id_d, e:reused_times())
  -- idle time: closed after it
  local id_e = id(e)
  assert(e:set_keepalive(150))
  timer.sleep(500)
  local f = assert(net.connect("127.0.0.1", port))
  check("idle_timeout", f:reused_times() == 0 and id(f) ~= id_e, f:reused_times())
  -- unread bytes: refused, nothing closed, the socket still reads
  assert(f:write("echo ab\n"))
  check("read_a", f:read(1) == "a")
  local ok, err = f:set_keepalive()
  check("unread_refused", ok == nil and err == "unread data in the buffer", ok, err)
  check("still_usable", f:read(1) == "b")
  -- a read pending in another coroutine: refused
  local got
  timer.after(0, function() got = f:read_line() end)
  timer.sleep(50)
  ok, err = f:set_keepalive()
  check("pending_refused", ok == nil and err == "a read is pending", ok, err)
  assert(f:write("echo done%0A\n"))
  timer.sleep(200)
  check("pending_done", got == "done", got)
  f:close()
]], { "fresh", "keepalive", "closed_after", "reused", "reused_twice", "other_pool",
      "peer_closed", "spoke_while_idle", "idle_timeout", "read_a", "unread_refused", "still_usable",
      "pending_refused", "pending_done" })
  end)

  it("keeps at most pool_size idle connections per pool, the oldest going first", function()
    N.run([[
  local port = env_port("PORT")
  local socks, ids = {}, {}
  for i = 1, 3 do
    socks[i] = assert(net.connect("127.0.0.1", port))
    assert(socks[i]:write("id\n"))
    ids[i] = socks[i]:read_line()
  end
  for i = 1, 3 do assert(socks[i]:set_keepalive(60000, 2)) end
  local got = {}
  for i = 1, 3 do
    local s = assert(net.connect("127.0.0.1", port))
    assert(s:write("id\n"))
    got[i] = { s:reused_times(), s:read_line() }
  end
  -- the most recent first: 3, 2, then a new connection (1 was closed by the size limit)
  check("size", got[1][2] == ids[3] and got[2][2] == ids[2] and got[3][1] == 0 and got[3][2] ~= ids[1],
    got[1][2], got[2][2], got[3][1], got[3][2], ids[1])
  -- an idle pooled connection keeps no read buffer: taken again, it has none until it reads
  local s = assert(net.connect("127.0.0.1", port))
  assert(s:write("id\n"))
  s:read_line()
  assert(s:set_keepalive())
  local again = assert(net.connect("127.0.0.1", port))
  local n, cap = again:buffered()
  check("no_buffer", again:reused_times() > 0 and n == 0 and cap == 0, again:reused_times(), n, cap)
]], { "size", "no_buffer" })
  end)
end)
