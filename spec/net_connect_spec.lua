-- net.resolve and net.connect by name (runtime/resolve.c, net/outbound.lua): names as the
-- system resolves them, every address tried in turn, no special case for localhost, and the
-- failures (refused, unresolvable, timed out) as nil, err naming host:port and the reason.
local ffi = require("ffi")
local H = require("helper")
local N = require("net_util")

-- (socket, bind, listen, connect, close and struct lc_sockaddr_in: declared by helper.lua)

-- a listener on 127.0.0.1:port whose accept queue is full (backlog 0, never accepted, filled
-- by connects that stay pending): a new connect there is never answered. -> fds to close
local function full_listener(port)
  local sa = N.sockaddr(port)
  local fds = { N.listener(port, 0) }
  for _ = 1, 6 do
    local c = ffi.C.socket(2, 1 + 2048, 0) -- SOCK_NONBLOCK
    ffi.C.connect(c, sa, ffi.sizeof(sa))
    fds[#fds + 1] = c
  end
  return fds
end

-- whether this machine lets us give a process its own /etc/hosts (a private mount namespace)
local function can_unshare()
  local _, rc = H.sh("unshare -rm sh -c 'mount --bind /etc/hostname /etc/hosts' </dev/null")
  return rc == 0
end


describe("net.resolve and net.connect", function()
  after_each(function()
    H.cleanup()
  end)

  it("resolves names from /etc/hosts, IP literals at once, and says why a name does not resolve", function()
    local p = N.client([[
  local list, err = net.resolve("localhost")
  local has = false
  for _, a in ipairs(list or {}) do has = has or a == "127.0.0.1" end
  check("localhost", has, err)
  local ok, l4 = pcall(coroutine.wrap(function() return net.resolve("10.1.2.3") end))
  check("literal4", ok and l4[1] == "10.1.2.3" and #l4 == 1, l4)
  local ok6, l6 = pcall(coroutine.wrap(function() return net.resolve("::1") end))
  check("literal6", ok6 and l6[1] == "::1", l6)
  local none, why = net.resolve("name.invalid")
  check("invalid", none == nil and why:find("^name%.invalid: ") ~= nil, why)
]])
    N.assert_checks(p, { "localhost", "literal4", "literal6", "invalid" })
  end)

  it("connect fails with nil, err naming host:port and the reason", function()
    local dead = H.free_port()
    local p = N.client([[
  local dead = env_port("DEAD")
  local s, err = net.connect("127.0.0.1", dead)
  check("refused", s == nil and err == "connect 127.0.0.1:" .. dead .. ": connection refused", err)
  s, err = net.connect("name.invalid", 80)
  check("unresolvable", s == nil and err:find("^connect name%.invalid:80: ") ~= nil, err)
  s, err = net.connect("::1", dead)
  check("v6", s == nil and err:find("^connect %[::1%]:" .. dead .. ": ") ~= nil, err)
  -- the callback form still works
  net.connect("127.0.0.1", dead, function(sock, cerr)
    check("callback", sock == nil and cerr:find("connection refused", 1, true) ~= nil, cerr)
  end)
  timer.sleep(200)
  -- arguments out of range raise at the caller, before a socket exists (none is left open)
  local function fds()
    local n = 0
    for _ in io.popen("ls /proc/" .. process.pid .. "/fd"):lines() do n = n + 1 end
    return n
  end
  local before = fds()
  for _ = 1, 20 do
    local ok, perr = pcall(net.connect, "127.0.0.1", dead, { timeout = 0 / 0 })
    assert(not ok and perr:find("opts.timeout must be", 1, true), perr)
    ok, perr = pcall(net.connect, "127.0.0.1", 70000)
    assert(not ok and perr:find("port must be", 1, true), perr)
  end
  check("no_leak", fds() - before < 3, before, fds())
]], { DEAD = dead })
    N.assert_checks(p, { "refused", "unresolvable", "v6", "callback", "no_leak" })
  end)

  it("a connect that gets no answer fails after opts.timeout", function()
    local port = H.free_port()
    local fds = full_listener(port)
    local ok, p = pcall(N.client, [[
  local t0 = core.now()
  local s, err = net.connect("127.0.0.1", env_port("PORT"), { timeout = 300 })
  local ms = core.now() - t0
  check("timeout", s == nil and err == "connect 127.0.0.1:" .. env_port("PORT") .. ": timeout", err)
  check("took", ms >= 250 and ms < 5000, ms)
]], { PORT = port })
    for _, fd in ipairs(fds) do ffi.C.close(fd) end
    assert(ok, p)
    N.assert_checks(p, { "timeout", "took" })
  end)

  it("an outbound socket travels as the handle of a message; the sender's copy is closed", function()
    local port, up = H.free_port(), H.free_port()
    N.server(up)
    local p = H.start_app([[
local net = require("luacluster.net")
if cluster.is_master then
  cluster.setup({ workers = 1 })
  cluster.on("online", function(w)
    local s = assert(net.connect("127.0.0.1", tonumber(os.getenv("UP"))))
    assert(s:write("id\n"))
    local id = s:read_line()
    local ok, err = w:send({ id = id }, s)
    say("sent", ok, err)
    timer.sleep(100)
    say("master copy", select(2, s:read()))
  end)
else
  cluster.worker:on("message", function(msg, sock)
    sock:write("id\n")
    say("worker got", msg.id, sock:read())
  end)
end
]], { "-w", 1, "-p", port }, { env = { UP = up } })
    assert(p:wait_output("worker got 1 1\n", 10000, true), p:output())
    assert(p:wait_output("sent true nil", 1000, true), p:output())
    assert(p:wait_output("master copy closed", 3000, true), p:output())
  end)

  -- the app gets its own /etc/hosts in a private mount namespace (nothing on the machine
  -- changes): multi.test is ::1 then 127.0.0.1, and localhost is ::1 only
  it("tries every address of a name in turn, and has no special case for localhost", function()
    if not can_unshare() then
      pending("unshare -rm (a private mount namespace) is not allowed here")
      return
    end
    local v4, v6 = H.free_port(), H.free_port()
    N.server(v4, "127.0.0.1")
    N.server(v6, "::1")
    local dir = H.tmpdir()
    local hosts = H.write_file(dir .. "/hosts", "::1 multi.test\n127.0.0.1 multi.test\n::1 localhost\n")
    local p = N.client([[
  local list = net.resolve("multi.test")
  check("both", list and list[1] == "::1" and list[2] == "127.0.0.1", list and table.concat(list, " "))
  -- ::1 refuses (the server is on 127.0.0.1 only): the next address is tried
  local s, err = net.connect("multi.test", env_port("V4"))
  check("second_address", s ~= nil and s.remote_address == "127.0.0.1", err)
  if s then
    assert(s:write("id\n"))
    check("talks", s:read_line() == "1")
    s:close()
  end
  -- localhost is what this hosts file says (::1), not 127.0.0.1
  s, err = net.connect("localhost", env_port("V6"))
  check("localhost_v6", s ~= nil and s.remote_address == "::1", err)
  s, err = net.connect("localhost", env_port("V4"))
  check("localhost_not_v4", s == nil and err:find("connection refused", 1, true) ~= nil, err)
]], { V4 = v4, V6 = v6 }, { spawn = function(src, env)
      local app = H.app({ ["app.lua"] = H.prelude .. src })
      return H.spawn({ "/usr/bin/unshare", "-rm", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
        H.bin, "-p", tostring(H.free_port()), "--control", app .. "/ctl.sock", app .. "/app.lua" },
        { env = env, dir = app })
    end })
    N.assert_checks(p, { "both", "second_address", "talks", "localhost_v6", "localhost_not_v4" })
  end)

  -- a name server that never answers (in the app's own network namespace, on its loopback):
  -- the lookup counts in opts.timeout (the system's resolver would wait 5 s per attempt)
  it("a lookup that does not come back in time is a connect timeout", function()
    if not can_unshare() then
      pending("unshare -rm (a private mount namespace) is not allowed here")
      return
    end
    local dir = H.tmpdir()
    local resolv = H.write_file(dir .. "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:5 attempts:2\n")
    local silent = H.write_file(dir .. "/silent_dns.lua", [[
local ffi = require("ffi")
ffi.cdef("int socket(int, int, int); int bind(int, const void *, unsigned); int poll(void *, unsigned long, int);")
local fd = ffi.C.socket(2, 2, 0)
local sa = ffi.new("uint8_t[16]", { 2, 0, 0, 53, 127, 0, 0, 1 })
assert(ffi.C.bind(fd, sa, 16) == 0, "bind 127.0.0.1:53")
io.stdout:write("dns listening\n")
io.stdout:flush()
ffi.C.poll(nil, 0, 20000)
]])
    local p = N.client([[
  local t0 = core.now()
  local s, err = net.connect("slow.example", 80, { timeout = 500 })
  local ms = core.now() - t0
  check("dns_timeout", s == nil and err == "connect slow.example:80: timeout", err)
  check("dns_took", ms >= 400 and ms < 4000, ms)
]], {}, { spawn = function(src, env)
      local app = H.app({ ["app.lua"] = H.prelude .. src })
      return H.spawn({ "/usr/bin/unshare", "-rmn", "sh", "-c",
        'ip link set lo up && mount --bind "$0" /etc/resolv.conf && { luajit "$1" & } && sleep 0.3 && shift && exec "$@"',
        resolv, silent, H.bin, "-p", "8080", "--control", app .. "/ctl.sock", app .. "/app.lua" },
        { env = env, dir = app })
    end })
    N.assert_checks(p, { "dns_timeout", "dns_took" })
  end)
end)
