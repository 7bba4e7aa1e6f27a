-- An outbound socket's read timeout and a pooled connection's idle time are lazy in
-- runtime/conn.c: a timer still running from an earlier read or an earlier stay in the pool is
-- left to run, and finds nothing due (or less than it thought) when it fires. Each deadline
-- still counts from its own read or stay: a later, longer one is not cut short by an earlier
-- timer, a shorter one is not stretched by it, none ("0") is none, and a send that waits with no
-- time limit is not timed out by a pooled stay's timer.
local H = require("helper")
local N = require("net_util")

describe("outbound timers", function()
  after_each(function()
    H.cleanup()
  end)

  it("times each read from its own start, whatever an earlier read's timer does", function()
    N.run([[
  local port = env_port("PORT")
  local s = assert(net.connect("127.0.0.1", port))
  -- a short timeout answered at once, then a longer one answered after the short one's time
  s:set_timeouts(1000, 1000, 100)
  assert(s:write("echo a\n"))
  check("first", s:read(1) == "a")
  s:set_timeouts(1000, 1000, 1000)
  assert(s:write("later 300 b\n"))
  local d, err = s:read(1)
  check("longer_later", d == "b", d, err)
  -- no limit after a short one
  s:set_timeouts(1000, 1000, 100)
  assert(s:write("echo c\n"))
  check("third", s:read(1) == "c")
  s:set_timeouts(1000, 1000, 0)
  assert(s:write("later 300 d\n"))
  d, err = s:read(1)
  check("no_limit", d == "d", d, err)
  -- a short one after a long one: the short one counts
  s:set_timeouts(1000, 1000, 5000)
  assert(s:write("echo e\n"))
  check("fourth", s:read(1) == "e")
  s:set_timeouts(1000, 1000, 150)
  local t0 = core.now()
  d, err = s:read(1)
  local took = core.now() - t0
  check("shorter_later", d == nil and err == "timeout" and took >= 140 and took < 2000, d, err, took)
  -- and the socket still reads after its timeout
  s:set_timeouts(1000, 1000, 1000)
  assert(s:write("echo f\n"))
  check("after_timeout", s:read(1) == "f")
  s:close()
]], { "first", "longer_later", "third", "no_limit", "fourth", "shorter_later", "after_timeout" })
  end)

  it("times each stay in a pool from its own start, and never a send that waits with no limit", function()
    N.run([[
  local port = env_port("PORT")
  local id = server_id
  local function take()
    return assert(net.connect("127.0.0.1", port, { pool = "timers" }))
  end
  local a = take()
  local id_a = id(a)
  assert(a:set_keepalive(100))
  timer.sleep(20)
  local b = take()
  check("taken", b:reused_times() == 1 and id(b) == id_a, b:reused_times())
  assert(b:set_keepalive(1000)) -- the first stay's timer (due at 100 ms) must not close it
  timer.sleep(400)
  local c = take()
  check("longer_kept", c:reused_times() == 2 and id(c) == id_a, c:reused_times())
  assert(c:set_keepalive(0)) -- no idle limit, the second stay's timer still running
  timer.sleep(900)
  local d = take()
  check("no_limit_kept", d:reused_times() == 3 and id(d) == id_a, d:reused_times())
  assert(d:set_keepalive(5000))
  timer.sleep(10)
  local e = take()
  check("taken_again", e:reused_times() == 4, e:reused_times())
  assert(e:set_keepalive(100)) -- a short stay after a long one: closed after the short one
  timer.sleep(500)
  local f = take()
  check("shorter_closed", f:reused_times() == 0 and id(f) ~= id_a, f:reused_times())
  -- a send with no time limit, on a connection whose stay's timer still runs
  assert(f:set_keepalive(100))
  timer.sleep(10)
  local g = take()
  check("send_taken", g:reused_times() == 1, g:reused_times())
  g:set_timeouts(1000, 0, 1000)
  assert(g:write("hold\n"))
  local res
  timer.after(0, function()
    res = { g:write(string.rep("x", 32 * 1048576)) }
  end)
  timer.sleep(400)
  check("send_no_limit", res == nil, res and res[1], res and res[2])
  g:close(true)
]], { "taken", "longer_kept", "no_limit_kept", "taken_again", "shorter_closed", "send_taken", "send_no_limit" })
  end)
end)
