-- TLS on outbound sockets (net.connect's opts.tls: runtime/conn_tls.c, net/tls.lua) against real
-- peers: `openssl s_server` and Debian's nginx as an HTTPS server, both with a CA and
-- certificates made by `openssl` at test time, on free loopback ports, stopped by their pids.
-- Verification (ca_file, the system store, the name), SNI, verify = false, pools (a verified and
-- an unverified connection apart, reuse without a handshake, TLS 1.3 tickets on an idle pooled
-- connection), session resumption, a peer that does not speak TLS, a handshake that times out.
local ffi = require("ffi")
local H = require("helper")
local N = require("net_util")
local T = require("tls_util")
local U = require("http_client_util")

local OPENSSL = T.OPENSSL
local dir                 -- the certificates
local servers = {}        -- processes started for the whole file
local env = {}            -- the ports and paths the clients get


local function start(argv, ready)
  local p = H.spawn(argv)
  servers[#servers + 1] = p
  assert(H.wait_for(function() return ready(p) end, 10000, 50), argv[1] .. " did not start:\n" .. p:output())
  return p
end


-- openssl s_server -www (a page naming the session "New" or "Reused") with extra args -> port, proc
local function s_server(extra)
  local port = H.free_port()
  local argv = { OPENSSL, "s_server", "-accept", "127.0.0.1:" .. port, "-cert", dir .. "/localhost.pem",
    "-key", dir .. "/localhost.key", "-www" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  return port, start(argv, function(p) return p:output():find("ACCEPT", 1, true) end)
end


-- nginx (http_client_util's, plain HTTP on its port) with an HTTPS server whose answer names
-- the connection, its request count, whether the session was resumed and the SNI it got
-- -> https port, http port
local function nginx()
  local tls_port = H.free_port()
  local up = U.nginx(table.concat({
    "  server {",
    "    listen 127.0.0.1:" .. tls_port .. " ssl;",
    "    ssl_certificate " .. dir .. "/localhost.pem;",
    "    ssl_certificate_key " .. dir .. "/localhost.key;",
    "    ssl_protocols TLSv1.2 TLSv1.3;",
    '    location / { return 200 "conn=$connection reqs=$connection_requests reused=$ssl_session_reused' ..
      ' proto=$ssl_protocol sni=$ssl_server_name\\n"; }',
    "  }",
  }, "\n"))
  servers[#servers + 1] = up
  assert(H.wait_listening(tls_port, 10000), "nginx's https server did not start")
  return tls_port, up.port
end


-- the clients' shared lines: CA, TLS (opts.tls with the CA) and get(sock) (an HTTP/1.1 GET to
-- nginx: its body | nil, err)
local HEAD = [[
  local CA = os.getenv("CA")
  local TLS = { ca_file = CA }
  local function get(s)
    local ok, err = s:write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    if not ok then return nil, err end
    local head
    head, err = s:read_until("\r\n\r\n")
    if not head then return nil, err end
    return s:read(tonumber(head:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)")))
  end
]]

local clients = {}

-- runs body in a client app (env: the servers' ports) and asserts its checks
local function run(body, names, extra_env)
  local e = {}
  for k, v in pairs(env) do e[k] = v end
  for k, v in pairs(extra_env or {}) do e[k] = v end
  local p = N.client(HEAD .. body, e)
  clients[#clients + 1] = p
  N.assert_checks(p, names)
  return p
end


lazy_setup(function()
  dir = T.certs()
  env.CA = dir .. "/ca.pem"
  env.SPORT = s_server()
  env.NPORT, env.PPORT = nginx()
end)

lazy_teardown(function()
  for _, p in ipairs(servers) do p:stop() end
end)

after_each(function()
  for _, p in ipairs(clients) do p:stop() end
  clients = {}
end)


describe("net.connect with opts.tls", function()
  it("verifies against ca_file, reads an answer, and a fresh second connection resumes the session", function()
    run([[
  local port = env_port("SPORT")
  local s, err = net.connect("localhost", port, { tls = TLS })
  check("connected", s ~= nil, err)
  local info = s:tls_info()
  check("info", info.protocol == "TLSv1.3" and info.cipher:find("^TLS_") and info.session_reused == false
    and info.server_name == "localhost", info.protocol, info.cipher, info.session_reused, info.server_name)
  assert(s:write("GET / HTTP/1.0\r\n\r\n"))
  local page = s:read_all()
  check("page", page:find("^HTTP/1.0 200 ok") and page:find("\nNew, TLSv1.3, ") ~= nil, page)
  check("closed_after", select(2, s:read()) == "closed")
  check("cached", core.tls_sessions() >= 1, core.tls_sessions())
  -- a fresh connection to the same origin offers the cached session
  s = assert(net.connect("localhost", port, { tls = TLS }))
  check("resumed", s:tls_info().session_reused == true)
  assert(s:write("GET / HTTP/1.0\r\n\r\n"))
  page = s:read_all()
  check("reused_page", page:find("\nReused, TLSv1.3, ") ~= nil, page)
  -- an IP literal is verified against the certificate's IP addresses (no SNI)
  s, err = net.connect("127.0.0.1", port, { tls = TLS })
  check("ip", s ~= nil and s:tls_info().server_name == nil, err)
  if s then s:close() end
  -- a plain socket has no TLS info
  local plain = assert(net.connect("127.0.0.1", env_port("PPORT")))
  check("plain_info", plain:tls_info() == nil)
  plain:close()
]], { "connected", "info", "page", "closed_after", "cached", "resumed", "reused_page", "ip", "plain_info" })
  end)

  it("serves from a worker's HTTP handler what it fetched over TLS, through the pool", function()
    local port = H.free_port()
    local p = H.start_app([[
local net = require("luacluster.net")
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 1 })
else
  local server = http.create_server(function(req, res)
    local s, err = net.connect("localhost", tonumber(os.getenv("NPORT")), { tls = { ca_file = os.getenv("CA") } })
    if not s then return 502, err end
    assert(s:write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    local head = assert(s:read_until("\r\n\r\n"))
    local body = assert(s:read(tonumber(head:match("Content%-Length: (%d+)"))))
    local info = s:tls_info()
    local reused = s:reused_times()
    assert(s:set_keepalive())
    return 200, body .. "reused_times=" .. reused .. " " .. info.protocol .. "\n"
  end)
  server:on("listening", function() say("listening") end)
  server:listen(tonumber(os.getenv("PORT")), "127.0.0.1")
end
]], { "-p", port }, { env = { PORT = port, NPORT = env.NPORT, CA = env.CA } })
    clients[#clients + 1] = p
    assert(p:wait_output("listening", 10000, true), p:output())
    local a, sa = H.curl("http://127.0.0.1:" .. port .. "/")
    local b, sb = H.curl("http://127.0.0.1:" .. port .. "/")
    assert.are.same({ 200, 200 }, { sa, sb }, a .. b .. p:output())
    assert.matches("reqs=1 .*reused_times=0 TLSv1.3", a)
    assert.matches("reqs=2 .*reused_times=1 TLSv1.3", b)
    assert.are.equal(a:match("conn=(%d+)"), b:match("conn=(%d+)"))
  end)

  it("serves http.request's https:// URLs: verified, pooled, and a failed verification's reason", function()
    run([[
  local http = require("luacluster.http")
  local url = "https://localhost:" .. env_port("NPORT") .. "/x"
  local a, err = http.request(url, { tls = TLS, keepalive = true })
  check("https", a and a.status == 200 and a.body:find("reqs=1 ", 1, true) and a.body:find("sni=localhost", 1, true), err)
  local b, berr = http.request(url, { tls = TLS, keepalive = true })
  check("https_pooled", b and b.body:match("conn=(%d+)") == a.body:match("conn=(%d+)") and b.body:find("reqs=2 ", 1, true),
    b and b.body, berr)
  local c, cerr = http.request(url, { timeout = 5000 })
  check("https_verify", c == nil and cerr == "connect localhost:" .. env_port("NPORT") ..
    ": certificate verify failed: unable to get local issuer certificate", cerr)
]], { "https", "https_pooled", "https_verify" })
  end)

  it("fails verification with the reason: the system store, a name mismatch; verify = false connects", function()
    run([[
  local port = env_port("SPORT")
  local where = "connect localhost:" .. port .. ": "
  local s, err = net.connect("localhost", port, { tls = true })
  check("system_store", s == nil and err == where .. "certificate verify failed: unable to get local issuer certificate", err)
  s, err = net.connect("localhost", port, { tls = { server_name = "wrong.test", ca_file = CA } })
  check("mismatch", s == nil and err == where ..
    "certificate verify failed: hostname mismatch (the certificate is not for wrong.test)", err)
  s, err = net.connect("localhost", port, { tls = { verify = false, server_name = "wrong.test" } })
  check("noverify", s ~= nil and s:tls_info().server_name == "wrong.test", err)
  if s then
    assert(s:write("GET / HTTP/1.0\r\n\r\n"))
    check("noverify_page", (s:read_all() or ""):find("^HTTP/1.0 200 ok") ~= nil)
  end
  s, err = net.connect("localhost", port, { tls = { ca_file = "/nonexistent/ca.pem" } })
  check("bad_ca_file", s == nil and err:find("^" .. where .. "cannot load ca_file /nonexistent/ca.pem: No such file or directory") ~= nil, err)
  local ok, msg = pcall(net.connect, "localhost", port, { tls = { verfiy = false } })
  check("bad_field_raises", not ok and msg:find("opts.tls has no field verfiy", 1, true) ~= nil, msg)
]], { "system_store", "mismatch", "noverify", "noverify_page", "bad_ca_file", "bad_field_raises" })
  end)

  it("sends server_name as SNI (the server picks the certificate for it)", function()
    local port = s_server({ "-servername", "sni.test", "-cert2", dir .. "/sni.test.pem",
      "-key2", dir .. "/sni.test.key" })
    run([[
  -- only the certificate for sni.test verifies as sni.test: the server chose it from the SNI
  local s, err = net.connect("127.0.0.1", env_port("SNIPORT"), { tls = { ca_file = CA, server_name = "sni.test" } })
  check("sni", s ~= nil and s:tls_info().server_name == "sni.test", err)
  if s then
    assert(s:write("GET / HTTP/1.0\r\n\r\n"))
    check("sni_page", (s:read_all() or ""):find("^HTTP/1.0 200 ok") ~= nil)
  end
  -- without it the default certificate (localhost's) does not verify as sni.test
  s, err = net.connect("localhost", env_port("SNIPORT"), { tls = TLS })
  check("default_cert", s ~= nil, err)
]], { "sni", "sni_page", "default_cert" }, { SNIPORT = port })
  end)

  it("pools TLS connections: reuse without a handshake, apart by TLS settings, resumption", function()
    run([[
  local port = env_port("NPORT")
  local function field(body, name) return body and body:match(name .. "=(%S*)") end
  local s = assert(net.connect("localhost", port, { tls = TLS }))
  local a = get(s)
  check("first", field(a, "reqs") == "1" and field(a, "sni") == "localhost", a)
  check("keepalive", s:set_keepalive() == true)
  -- the same connection: no second handshake (nginx counts a second request on it)
  local s2 = assert(net.connect("localhost", port, { tls = TLS }))
  local b = get(s2)
  check("reused", s2:reused_times() == 1 and field(b, "conn") == field(a, "conn") and field(b, "reqs") == "2",
    s2:reused_times(), a, b)
  check("reused_info", s2:tls_info().protocol == "TLSv1.3")
  assert(s2:set_keepalive())
  -- an unverified connection never takes a verified one from the pool, nor plain TCP
  local u = assert(net.connect("localhost", port, { tls = { verify = false } }))
  local c = get(u)
  check("apart_noverify", u:reused_times() == 0 and field(c, "conn") ~= field(a, "conn"), c)
  u:close()
  local plain = assert(net.connect("localhost", port))
  check("apart_plain", plain:reused_times() == 0)
  plain:close()
  -- while the pooled one is in use, a second connection to the origin is fresh and resumes
  local s3 = assert(net.connect("localhost", port, { tls = TLS }))
  check("pooled_again", s3:reused_times() == 2)
  local s4 = assert(net.connect("localhost", port, { tls = TLS }))
  local d = get(s4)
  check("fresh_resumes", s4:reused_times() == 0 and s4:tls_info().session_reused == true
    and field(d, "reused") == "r" and field(d, "conn") ~= field(a, "conn"), d)
  s3:close()
  s4:close()
  -- a pooled connection closed at the end of its idle time (no close_notify) leaves its
  -- session resumable
  local e = assert(net.connect("localhost", port, { tls = TLS, pool = "idle" }))
  check("idle_first", e:tls_info().session_reused == false and get(e) ~= nil)
  assert(e:set_keepalive(100))
  timer.sleep(400)
  e = assert(net.connect("localhost", port, { tls = TLS, pool = "idle" }))
  check("idle_expired_resumes", e:reused_times() == 0 and e:tls_info().session_reused == true)
  e:close()
]], { "first", "keepalive", "reused", "reused_info", "apart_noverify", "apart_plain", "pooled_again",
      "fresh_resumes", "idle_first", "idle_expired_resumes" })
  end)

  it("keeps a pooled connection that gets only TLS 1.3 session tickets, never one that gets data", function()
    run([[
  local port = env_port("NPORT")
  -- pooled at once: nginx's tickets arrive while it is idle (they are not data)
  local s = assert(net.connect("localhost", port, { tls = TLS, pool = "tickets" }))
  check("parked", s:set_keepalive() == true)
  timer.sleep(300)
  s = assert(net.connect("localhost", port, { tls = TLS, pool = "tickets" }))
  local a = get(s)
  check("kept", s:reused_times() == 1 and a ~= nil and a:find("reqs=1", 1, true) ~= nil, s:reused_times(), a)
  -- an answer that arrives while it is pooled: closed, never handed out
  assert(s:write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
  check("parked_early", s:set_keepalive() == true)
  timer.sleep(300)
  s = assert(net.connect("localhost", port, { tls = TLS, pool = "tickets" }))
  check("dropped", s:reused_times() == 0, s:reused_times())
  check("works", (get(s) or ""):find("reqs=1", 1, true) ~= nil)
  s:close()
]], { "parked", "kept", "parked_early", "dropped", "works" })
  end)

  it("sends close_notify on close(), and close(true) does not wait for it", function()
    -- s_server without -www prints what it reads, then DONE for close_notify and ERROR for an
    -- end without one (its standard input kept open: at its end it would close itself)
    local port = H.free_port()
    local proc = start({ "/bin/sh", "-c", "sleep 600 | exec " .. OPENSSL .. " s_server -accept 127.0.0.1:" ..
      port .. " -cert " .. dir .. "/localhost.pem -key " .. dir .. "/localhost.key" },
      function(p) return p:output():find("ACCEPT", 1, true) end)
    -- each closes once the server's TLS 1.3 tickets are in (cached): tickets that came after the
    -- socket closed would make its kernel answer with a reset, which can drop what the server
    -- had not read yet
    run([[
  local function tickets_in(n)
    while core.tls_sessions() < n do timer.sleep(10) end
  end
  local s = assert(net.connect("localhost", env_port("RAWPORT"), { tls = TLS, pool = "a" }))
  assert(s:write("hello\n"))
  tickets_in(1)
  s:close()
  timer.sleep(300)
  s = assert(net.connect("localhost", env_port("RAWPORT"), { tls = TLS, pool = "b" }))
  assert(s:write("bye\n"))
  tickets_in(2)
  s:close(true)
  check("closed", true)
]], { "closed" }, { RAWPORT = port })
    assert(H.wait_for(function() return proc:output():find("bye\nERROR") end, 5000, 50), proc:output())
    assert.matches("hello\nDONE\n", proc:output())
  end)

  it("fails against a peer that does not speak TLS or closes, and within the timeout against one that never answers", function()
    local hold = H.free_port()
    local fd = N.listener(hold, 16) -- connects complete, nothing answers
    local ok, err = pcall(run, [[
  local port = env_port("PPORT")
  local s, err = net.connect("localhost", port, { tls = TLS })
  check("not_tls", s == nil and err:find("^connect localhost:" .. port .. ": TLS handshake failed: .*"
    .. "%(the peer does not speak TLS%)$") ~= nil, err)
  local t0 = core.now()
  s, err = net.connect("127.0.0.1", env_port("HOLD"), { tls = TLS, timeout = 300 })
  local ms = core.now() - t0
  check("timeout", s == nil and err == "connect 127.0.0.1:" .. env_port("HOLD") .. ": timeout", err)
  check("took", ms >= 250 and ms < 5000, ms)
  -- a peer that closes before answering the ClientHello
  local closer, up = net.create_server(function(sock) sock:close() end), false
  closer:on("listening", function() up = true end)
  closer:listen(env_port("CLOSER"), "127.0.0.1")
  while not up do timer.sleep(10) end
  s, err = net.connect("127.0.0.1", env_port("CLOSER"), { tls = TLS })
  check("peer_closed", s == nil and err == "connect 127.0.0.1:" .. env_port("CLOSER") ..
    ": TLS handshake failed: the peer closed the connection", err)
  closer:close()
]], { "not_tls", "timeout", "took", "peer_closed" }, { HOLD = hold, CLOSER = H.free_port() })
    ffi.C.close(fd)
    assert(ok, err)
  end)

  it("runs under ngx.socket.tcp's sslhandshake, with OpenResty's returns", function()
    run([[
  local ngx = require("luacluster.ngx")
  local port = env_port("SPORT")
  -- ssl_verify true: the system's CA store, which does not know the test CA
  local sock = ngx.socket.tcp()
  sock:settimeout(5000)
  assert(sock:connect("localhost", port))
  local sess, err = sock:sslhandshake(nil, "localhost", true)
  check("verify_fails", sess == nil and tostring(err):find("certificate verify failed", 1, true) ~= nil, err)
  check("closed_after_failure", select(2, sock:send("x")) == "closed")
  -- ssl_verify false (OpenResty's default): a session, then HTTP over it
  sock = ngx.socket.tcp()
  sock:settimeout(5000)
  assert(sock:connect("localhost", port))
  sess, err = sock:sslhandshake(nil, "localhost", false)
  check("session", sess ~= nil and sess ~= true, err)
  check("sent", sock:send("GET / HTTP/1.0\r\n\r\n") == 18)
  local line = sock:receive("*l")
  check("answer", line == "HTTP/1.0 200 ok", line)
  sock:close()
  -- reused_session false: true; a pooled TLS connection needs no second handshake
  sock = ngx.socket.tcp()
  assert(sock:connect("localhost", env_port("NPORT")))
  check("true", sock:sslhandshake(false, "localhost", false) == true)
  check("sent2", sock:send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n") > 0)
  local head = sock:receiveuntil("\r\n\r\n")()
  local body = sock:receive(tonumber(head:match("[Cc]ontent%-[Ll]ength: (%d+)")))
  check("body1", body and body:find("reqs=1 ", 1, true) ~= nil, body)
  assert(sock:setkeepalive())
  sock = ngx.socket.tcp()
  assert(sock:connect("localhost", env_port("NPORT")))
  check("reused", sock:getreusedtimes() == 1)
  check("again", sock:sslhandshake(false, "localhost", false) == true)
  sock:send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
  head = sock:receiveuntil("\r\n\r\n")()
  body = sock:receive(tonumber(head:match("[Cc]ontent%-[Ll]ength: (%d+)")))
  check("body2", body and body:find("reqs=2 ", 1, true) ~= nil, body)
  sock:close()
]], { "verify_fails", "closed_after_failure", "session", "sent", "answer", "true", "sent2", "body1", "reused", "again", "body2" })
  end)

  it("never hands a TLS connect a plain connection parked under the same pool name", function()
    run([[
  local port = env_port("NPORT") -- nginx: s_server serves one connection at a time
  local plain = assert(net.connect("localhost", port, { pool = "up" }))
  check("parked", plain:set_keepalive() == true)
  local s, err = net.connect("localhost", port, { pool = "up", tls = TLS })
  check("fresh", s ~= nil and s:reused_times() == 0 and s:tls_info() ~= nil, err)
  -- and the other way: a verified connection parked under a name serves only verified connects
  check("parked_tls", s:set_keepalive() == true)
  local again = assert(net.connect("localhost", port, { pool = "up", tls = TLS }))
  check("reused_tls", again:reused_times() == 1 and again:tls_info() ~= nil)
  local unverified = assert(net.connect("localhost", port, { pool = "up", tls = { verify = false } }))
  check("apart", unverified:reused_times() == 0)
  again:close()
  unverified:close()
]], { "parked", "fresh", "parked_tls", "reused_tls", "apart" })
  end)

  it("keeps pools apart whose names and TLS settings would join into the same words", function()
    run([[
  local port = env_port("NPORT")
  -- pool "p tls noverify" with SNI "x", and pool "p" with SNI "tls noverify x": once joined
  -- with spaces these were one key, and the second connect took the first's connection
  local a = assert(net.connect("localhost", port, { pool = "p tls noverify", tls = { verify = false, server_name = "x" } }))
  check("parked", a:set_keepalive() == true)
  local b = assert(net.connect("localhost", port, { pool = "p", tls = { verify = false, server_name = "tls noverify x" } }))
  check("apart", b:reused_times() == 0, b:reused_times())
  b:close()
  -- http.request's origin pools: SNI "a false b" + no CA against SNI "a" + CA "b false "
  local http = require("luacluster.http")
  local url = "https://localhost:" .. port .. "/"
  local r1 = assert(http.request(url, { keepalive = true, tls = { verify = false, server_name = "a false b" } }))
  local r2 = assert(http.request(url, { keepalive = true, tls = { verify = false, server_name = "a", ca_file = "b false " } }))
  local c1, c2 = r1.body:match("conn=(%d+)"), r2.body:match("conn=(%d+)")
  check("http_apart", c1 ~= c2 and r2.body:find("reqs=1 ", 1, true) ~= nil, r1.body .. r2.body)
]], { "parked", "apart", "http_apart" })
  end)

  it("fails a read that meets the peer's FIN without close_notify: the stream may have been cut", function()
    local port = H.free_port()
    local srv = H.spawn({ "/usr/bin/python3", H.root .. "/spec/tls_trunc_server.py", tostring(port), dir .. "/localhost.pem",
      dir .. "/localhost.key" })
    servers[#servers + 1] = srv
    assert(H.wait_for(function() return srv:output():find("READY", 1, true) end, 10000, 50), srv:output())
    run([[
  local http = require("luacluster.http")
  local res, err = http.request("https://localhost:" .. env_port("TPORT") .. "/", { tls = TLS })
  check("refused", res == nil and tostring(err):find("without close_notify", 1, true) ~= nil,
    res and res.body, err)
  local s = assert(net.connect("localhost", env_port("TPORT"), { tls = TLS }))
  s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
  local all, rerr, partial = s:read_all()
  check("read_all", all == nil and tostring(rerr):find("without close_notify", 1, true) ~= nil
    and partial:find("TRANSFER", 1, true) ~= nil, all, rerr)
]], { "refused", "read_all" }, { TPORT = port })
  end)
end)
