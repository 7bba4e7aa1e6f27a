-- Outbound sockets' reads by pattern from the read buffer in C (runtime/conn.c, read_buffer.c),
-- their read and send timeouts, against real servers: the scripted server of net_util.lua and
-- redis-server. And the loop never blocks: 50 concurrent requests each waiting 300 ms on an
-- upstream are answered together.
local H = require("helper")
local N = require("net_util")

describe("outbound socket reads", function()
  after_each(function()
    H.cleanup()
  end)

  it("reads a line, n bytes, up to a delimiter, chunks of it, and everything", function()
    N.run([[
  local s = assert(net.connect("127.0.0.1", env_port("PORT")))
  assert(s:write("echo " .. esc("one\r\ntwo\nthree--END--four|abcdefgh") .. "\n"))
  check("line_crlf", s:read_line() == "one")
  -- what the buffer holds already comes back without waiting: in a coroutine luacluster does
  -- not run, a read that had to wait would raise
  local ok, line = pcall(coroutine.wrap(function() return s:read_line() end))
  check("no_wait", ok and line == "two", ok, line)
  local d, found = s:read_until("--END--")
  check("until", d == "three" and found == true, d, found)
  check("read_n", s:read(4) == "four")
  d, found = s:read_until("|")
  check("until_at_once", d == "" and found == true, d)
  check("read_8", s:read(8) == "abcdefgh")
  -- chunks of at most 4 bytes before the delimiter, the last one with found = true
  assert(s:write("echo " .. esc("aaaaaaaaaa--B--x;y;") .. "\n"))
  local a, fa = s:read_until("--B--", 4)
  local b, fb = s:read_until("--B--", 4)
  local c, fc = s:read_until("--B--", 4)
  check("chunks", a == "aaaa" and fa == false and b == "aaaa" and fb == false and c == "aa" and fc == true,
    a, fa, b, fb, c, fc)
  check("inclusive", s:read_until(";", nil, true) == "x;")
  check("any", s:read_any(10) == "y;")
  -- a line and a delimiter that arrive one byte at a time
  assert(s:write("drip " .. esc("slow line\nab--END--") .. "\n"))
  check("drip_line", s:read_line() == "slow line")
  check("drip_until", s:read_until("--END--") == "ab")
  -- a delimiter that overlaps itself, arriving a byte at a time: whole, then in chunks of 3
  assert(s:write("drip " .. esc("aabaabab") .. "\n"))
  check("overlap", s:read_until("abab") == "aaba")
  assert(s:write("drip " .. esc("aabaabab") .. "\n"))
  local x1, g1 = s:read_until("abab", 3)
  local x2, g2 = s:read_until("abab", 3)
  check("overlap_chunks", x1 == "aab" and g1 == false and x2 == "a" and g2 == true, x1, g1, x2, g2)
  -- a chunk never cuts a delimiter that is still arriving
  assert(s:write("drip " .. esc("xabab") .. "\n"))
  local y1, h1 = s:read_until("abab", 3)
  check("tail_kept", y1 == "x" and h1 == true, y1, h1)
  -- n bytes across several packets
  assert(s:write("drip " .. esc("0123456789") .. "\n"))
  check("drip_n", s:read(10) == "0123456789")
  -- everything until the peer closes, then closed
  assert(s:write("echo " .. esc("tail ") .. "\ndrip " .. esc("end") .. "\nclose\n"))
  check("read_all", s:read_all() == "tail end")
  local e1, e2 = s:read()
  check("after_end", e1 == nil and e2 == "closed", e1, e2)
  -- read(n) at the end: what is left, then closed; read_line: nil, "closed", partial
  local s2 = assert(net.connect("127.0.0.1", env_port("PORT")))
  assert(s2:write("echo " .. esc("abc") .. "\nclose\n"))
  check("read_n_left", s2:read(10) == "abc")
  check("read_n_closed", select(2, s2:read(10)) == "closed")
  local s3 = assert(net.connect("127.0.0.1", env_port("PORT")))
  assert(s3:write("echo " .. esc("no end") .. "\nclose\n"))
  local l, err, partial = s3:read_line()
  check("line_partial", l == nil and err == "closed" and partial == "no end", l, err, partial)
]], { "line_crlf", "no_wait", "until", "read_n", "until_at_once", "read_8", "chunks",
      "inclusive", "any", "drip_line", "drip_until", "overlap", "overlap_chunks", "tail_kept", "drip_n", "read_all", "after_end", "read_n_left",
      "read_n_closed", "line_partial" })
  end)

  it("delivers data and close events to a socket read by :on", function()
    N.run([[
  local s = assert(net.connect("127.0.0.1", env_port("PORT")))
  local got, closed = {}, false
  s:on("data", function(d) got[#got + 1] = d end)
  s:on("close", function() closed = true end)
  assert(s:write("echo abc\ndrip def\nclose\n"))
  for _ = 1, 100 do
    if closed then break end
    timer.sleep(20)
  end
  check("events", table.concat(got) == "abcdef" and closed, table.concat(got), closed)
  -- a socket whose peer ends, with nothing unread, is closed without a read (its fd goes)
  local s2 = assert(net.connect("127.0.0.1", env_port("PORT")))
  local fd = s2:fileno()
  assert(s2:write("close\n"))
  timer.sleep(300)
  check("closed_at_end", s2:fileno() == nil and select(2, s2:read()) == "closed", fd, s2:fileno())
]], { "events", "closed_at_end" })
  end)

  it("speaks to redis-server: status lines and bulk replies", function()
    local port = H.free_port()
    local dir = H.tmpdir()
    local redis = H.spawn({ "/usr/bin/redis-server", "--port", tostring(port), "--bind", "127.0.0.1",
      "--save", "", "--appendonly", "no", "--dir", dir }, { dir = dir })
    assert(H.wait_for(function()
      local s = H.connect(port)
      if s then s:close() end
      return s ~= nil
    end, 10000), "redis-server did not start:\n" .. redis:output())
    local p = N.client([[
  local r = assert(net.connect("127.0.0.1", env_port("PORT")))
  assert(r:write("PING\r\n"))
  check("pong", r:read_line() == "+PONG")
  local value = ("v"):rep(100000) .. "\r\nnot a line end"
  assert(r:write(("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n"):format(#value, value)))
  check("set", r:read_line() == "+OK")
  -- a pipeline: the second reply is in the buffer when the first is read
  assert(r:write("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"))
  for i = 1, 2 do
    local head = r:read_line()
    local n = tonumber(head:match("^%$(%d+)$"))
    local body = n and r:read(n + 2)
    check("get" .. i, body == value .. "\r\n", head, body and #body)
  end
  r:close()
]], { PORT = port })
    redis:stop()
    N.assert_checks(p, { "pong", "set", "get1", "get2" })
  end)

  it("a read that times out returns timeout and leaves the socket usable", function()
    N.run([[
  local s = assert(net.connect("127.0.0.1", env_port("PORT")))
  s:set_timeouts(5000, 5000, 200)
  assert(s:write("later 800 " .. esc("late\n") .. "\n"))
  local t0 = core.now()
  local d, err = s:read_line()
  check("timeout", d == nil and err == "timeout", d, err)
  check("waited", core.now() - t0 >= 150, core.now() - t0)
  s:set_timeouts(5000, 5000, 5000)
  check("late_line", s:read_line() == "late")
  -- bytes that came before the timeout are not lost: the next read has them
  s:set_timeouts(5000, 5000, 200)
  assert(s:write("echo " .. esc("par") .. "\nlater 800 " .. esc("tial\n") .. "\n"))
  d, err = s:read_line()
  check("timeout2", d == nil and err == "timeout", d, err)
  s:set_timeouts(5000, 5000, 5000)
  check("partial_kept", s:read_line() == "partial")
  -- read(n) and read_until time out the same way
  s:set_timeouts(5000, 5000, 150)
  check("timeout_n", select(2, s:read(3)) == "timeout")
  check("timeout_until", select(2, s:read_until("x")) == "timeout")
  s:close()
]], { "timeout", "waited", "late_line", "timeout2", "partial_kept", "timeout_n", "timeout_until" })
  end)

  it("a send the peer does not take in send_ms returns timeout", function()
    N.run([[
  local s = assert(net.connect("127.0.0.1", env_port("PORT")))
  assert(s:write("hold\n"))
  s:set_timeouts(5000, 300, 5000)
  local t0 = core.now()
  local ok, err = s:write(("x"):rep(64 * 1024 * 1024))
  check("send_timeout", ok == nil and err == "timeout", ok, err)
  check("send_waited", core.now() - t0 >= 250, core.now() - t0)
  s:close(true)
]], { "send_timeout", "send_waited" })
  end)

  -- one worker; each request connects to an upstream that answers after 300 ms: blocking the
  -- loop would take 50 x 300 ms = 15 s
  it("never blocks the loop: 50 concurrent requests waiting on a slow upstream", function()
    local up, port = H.free_port(), H.free_port()
    N.server(up)
    local p = H.start_app([[
local net = require("luacluster.net")
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 1 })
else
  http.create_server(function(req, res)
    local s, err = net.connect("127.0.0.1", tonumber(os.getenv("UP")))
    if not s then return 502, err end
    s:write("later 300 slow%0A\n")
    local line = s:read_line()
    s:close()
    return 200, line .. "\n"
  end):listen()
  say("worker listening")
end
]], { "-w", 1, "-p", port }, { env = { UP = up } })
    assert(p:wait_output("worker listening", 10000, true), p:output())
    assert(H.wait_for(function() return (H.curl("http://127.0.0.1:" .. port .. "/")) == "slow\n" end, 10000), p:output())
    local t0 = H.now()
    local out = H.sh("seq 50 | xargs -P 50 -I{} curl -s -m 20 http://127.0.0.1:" .. port .. "/")
    local ms = H.now() - t0
    local _, n = out:gsub("slow\n", "")
    assert.equal(50, n, out .. p:output())
    assert(ms < 6000, "50 requests took " .. ms .. " ms (blocking would take 15000)")
  end)
end)
