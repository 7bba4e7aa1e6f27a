-- TLS in the server (issue 18): HTTPS on http.create_server (opts.tls, runtime/http_tls.c over
-- tls.c's server side), WSS, TLS on net.create_server, certificates that do not load, reload of
-- certificates, and session tickets under core.tls_ticket_keys (runtime/tls_tickets.c) resumed on
-- another worker. Real luacluster processes; clients curl, openssl s_client and python3
-- websockets; a CA and certificates made by `openssl` at test time (spec/tls_util.lua).
local H = require("helper")
local T = require("tls_util")

local OPENSSL = T.OPENSSL
local q = T.q

-- the app: HTTPS on PORT (localhost's certificate by default, sni.test's by SNI) answering with
-- req.tls and the worker's pid, WSS on /ws, a TLS echo on NET_PORT; KEYS (names, comma-separated)
-- set the ticket keys at start, and /keys?NAMES sets them again
local APP = [[
local http = require("luacluster.http")
local net = require("luacluster.net")
local core = require("luacluster.core")
local D = os.getenv("CERTS")
local function keys(names)
  local k = {}
  for name in names:gmatch("[^,]+") do
    k[#k + 1] = (name .. string.rep("n", 16)):sub(1, 16) .. string.rep(name:sub(1, 1), 32) .. string.rep(name:sub(1, 1):upper(), 32)
  end
  core.tls_ticket_keys(table.concat(k))
end
if cluster.is_worker then
  if os.getenv("KEYS") then
    for _, k in ipairs({ "", string.rep("x", 79), string.rep("x", 81), string.rep("x", 9 * 80) }) do
      assert(not pcall(core.tls_ticket_keys, k), #k)
    end
    core.tls_ticket_keys(string.rep("x", 8 * 80))
    say("keys checked")
    keys(os.getenv("KEYS"))
  end
  local tls = { { cert = os.getenv("CERT") or D .. "/localhost.pem", key = os.getenv("KEY") or D .. "/localhost.key" },
                { server_name = "SNI.test", cert = D .. "/sni.test.pem", key = D .. "/sni.test.key" } }
  local s = http.create_server(function(req, res)
    if req.path == "/ws" then
      local ws = assert(req:websocket())
      local m = ws:receive()
      ws:send(m .. " over " .. req.tls.protocol)
      ws:close()
      return
    end
    if req.path == "/keys" then keys(req.query) end
    local t = req.tls
    res:finish(string.format("pid=%d proto=%s cipher=%s sni=%s reused=%s body=%s\n", process.pid, t.protocol, t.cipher,
      tostring(t.server_name), tostring(t.session_reused), req:body()))
  end, { tls = tls, header_timeout = 2000 })
  s:on("error", function(e) say("listen error: " .. e) end)
  s:listen(tonumber(os.getenv("PORT")))
  local n = net.create_server(function(sock)
    sock:write("hello\n")
    while true do
      local d = sock:read()
      if not d then break end
      sock:write((sock:tls_info() or {}).protocol .. ":" .. d)
    end
  end, { tls = tls })
  n:listen(tonumber(os.getenv("NET_PORT")))
end
]]

local dir

local function start(env, workers)
  env = env or {}
  env.CERTS = dir
  env.PORT = tostring(env.PORT or H.free_port())
  env.NET_PORT = tostring(H.free_port())
  local ctl = H.tmpdir() .. "/control.sock"
  local p = H.start_app(APP, { "-w", tostring(workers or 1), "--control", ctl }, { env = env })
  assert(H.wait_listening(tonumber(env.PORT), 10000), p:output())
  assert(H.wait_listening(tonumber(env.NET_PORT), 10000), p:output())
  p.port, p.net_port, p.ctl = tonumber(env.PORT), tonumber(env.NET_PORT), ctl
  return p
end

local function curl(p, path, extra)
  return H.sh("curl -sS -m 5 --cacert " .. dir .. "/ca.pem " .. (extra or "") .. " https://localhost:" .. p.port .. (path or "/") .. " 2>&1")
end

-- openssl s_client against the app's port with args; stdin from input (or nothing)
local function s_client(port, args, input)
  return H.sh("printf %s " .. q(input or "") .. " | timeout 10 " .. OPENSSL .. " s_client -connect 127.0.0.1:" .. port ..
    " -CAfile " .. dir .. "/ca.pem " .. (args or "") .. " 2>&1")
end

local GET = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

describe("HTTPS server", function()
  local app
  setup(function()
    dir = T.certs()
    app = start()
  end)
  teardown(function()
    if app then app:stop() end
    H.cleanup()
  end)

  it("answers GET and POST over TLS 1.3 and TLS 1.2, with req.tls", function()
    local out = curl(app, "/", "--tlsv1.3")
    assert.matches("proto=TLSv1.3 cipher=TLS_[%w_]+ sni=localhost reused=false body=\n", out)
    out = curl(app, "/", "--tlsv1.2 --tls-max 1.2 -d hello")
    assert.matches("proto=TLSv1.2 cipher=ECDHE%-ECDSA%-AES%d+%-GCM%-SHA%d+ sni=localhost reused=false body=hello\n", out)
  end)

  it("keeps a connection alive for several requests and answers pipelined ones in order", function()
    local out = H.sh("curl -sS -v -m 5 --cacert " .. dir .. "/ca.pem https://localhost:" .. app.port .. "/a https://localhost:" ..
      app.port .. "/b https://localhost:" .. app.port .. "/c 2>&1")
    assert.equal(3, select(2, out:gsub("proto=TLSv1.3", "")))
    assert.equal(2, select(2, out:gsub("Re%-using existing connection", "")))
    local three = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n2" ..
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\n3"
    out = s_client(app.port, "-quiet -ign_eof", three)
    local bodies = {}
    for b in out:gmatch("body=(%d)") do bodies[#bodies + 1] = b end
    assert.same({ "1", "2", "3" }, bodies)
  end)

  it("refuses TLS 1.0 and 1.1", function()
    for _, v in ipairs({ "-tls1", "-tls1_1" }) do
      local out = s_client(app.port, v .. " -cipher DEFAULT@SECLEVEL=0", GET)
      assert.not_matches("proto=", out)
      assert.matches("alert protocol version", out)
    end
  end)

  it("picks the certificate by SNI (exact, case-insensitive); unknown or no SNI gets the default", function()
    assert.matches("subject=CN = sni.test", s_client(app.port, "-servername sni.test", ""))
    assert.matches("subject=CN = sni.test", s_client(app.port, "-servername Sni.TEST", ""))
    assert.matches("subject=CN = localhost", s_client(app.port, "-servername other.test", ""))
    assert.matches("subject=CN = localhost", s_client(app.port, "-noservername", ""))
    local out = s_client(app.port, "-quiet -servername sni.test", GET)
    assert.matches("sni=sni.test", out)
    out = s_client(app.port, "-quiet -noservername", GET)
    assert.matches("sni=nil", out)
  end)

  it("selects ALPN http/1.1 and fails a client that offers only h2", function()
    assert.matches("ALPN protocol: http/1.1", s_client(app.port, "-alpn h2,http/1.1", ""))
    local out = s_client(app.port, "-alpn h2", GET)
    assert.matches("no application protocol", out)
    assert.not_matches("proto=", out)
  end)

  it("serves WSS, with req.tls", function()
    local out, rc = H.sh("timeout 20 /usr/bin/python3 " .. H.root .. "/spec/tls_wss_client.py " .. app.port .. " " .. dir .. "/ca.pem 2>&1")
    assert.equal(0, rc, out)
    assert.matches("hi over TLSv1.3", out)
  end)

  it("speaks TLS on net.create_server: the handler's first write waits for the handshake", function()
    local out = s_client(app.net_port, "-quiet", "ping\n")
    assert.matches("hello\nTLSv1.3:ping\n", out)
    out = s_client(app.net_port, "-quiet -tls1_2", "ping\n")
    assert.matches("hello\nTLSv1.2:ping\n", out)
  end)
end)

describe("HTTPS certificates", function()
  setup(function()
    dir = dir or T.certs()
  end)
  teardown(H.cleanup)

  local function failing(env, pattern)
    env.CERTS, env.PORT, env.NET_PORT = dir, tostring(H.free_port()), tostring(H.free_port())
    local p = H.start_app(APP, { "-w", "1" }, { env = env })
    assert.truthy(p:wait_output(pattern, 10000), p:output())
    p:stop()
  end

  it("a missing file or a key that does not match is the server's error event naming the file", function()
    failing({ CERT = "/nonexistent/cert.pem" }, "listen error: tls: cannot load /nonexistent/cert.pem: No such file or directory")
    failing({ KEY = dir .. "/sni.test.key" }, "listen error: tls: cannot load " .. dir:gsub("%p", "%%%0") ..
      "/sni.test.key: key does not match certificate")
  end)

  it("a certificate that does not load ends the start of a cluster that has no error handler", function()
    local adir = H.app({ ["app.lua"] = H.prelude .. [[
      if cluster.is_worker then
        require("luacluster.http").create_server(function() return 200, "x" end,
          { tls = { cert = "/nonexistent/c.pem", key = "/nonexistent/k.pem" } }):listen(]] .. H.free_port() .. [[)
      end]] })
    local p = H.start(adir .. "/app.lua", { "-w", "2" })
    local code = p:wait(10000)
    assert.equal(1, code, p:output())
    assert.matches("tls: cannot load /nonexistent/c.pem: No such file or directory", p:output())
  end)

  it("reload re-reads the certificates; one that does not load refuses the reload and the old one serves", function()
    local rdir = H.tmpdir()
    T.sh_ok("cp " .. dir .. "/localhost.pem " .. rdir .. "/cert.pem && cp " .. dir .. "/localhost.key " .. rdir .. "/key.pem")
    local p = start({ CERT = rdir .. "/cert.pem", KEY = rdir .. "/key.pem" }, 2)
    local function subject()
      return s_client(p.port, "-servername localhost", ""):match("subject=CN = (%S+)")
    end
    local function reload()
      return H.sh(H.bin .. " reload --control " .. p.ctl .. " 2>&1")
    end
    assert.equal("localhost", subject())
    -- a new certificate (sni.test's, for the name localhost) is served after the reload
    T.sh_ok("cp " .. dir .. "/sni.test.pem " .. rdir .. "/cert.pem && cp " .. dir .. "/sni.test.key " .. rdir .. "/key.pem")
    local out, rc = reload()
    assert.equal(0, rc, out)
    assert.equal("sni.test", subject())
    -- a broken key: refused, naming the file and the reason; the old certificate still serves
    H.write_file(rdir .. "/key.pem", "not a key\n")
    out, rc = reload()
    assert.not_equal(0, rc)
    assert.matches("tls: cannot load " .. rdir:gsub("%p", "%%%0") .. "/key.pem: not a PEM private key", out)
    assert.equal("sni.test", subject())
    assert.matches("proto=TLSv1.3", curl(p, "/", "--resolve sni.test:" .. p.port .. ":127.0.0.1 --connect-to localhost:" .. p.port .. ":127.0.0.1:" .. p.port .. " -k"))
    -- fixed: the next reload works
    T.sh_ok("cp " .. dir .. "/localhost.key " .. rdir .. "/key.pem && cp " .. dir .. "/localhost.pem " .. rdir .. "/cert.pem")
    out, rc = reload()
    assert.equal(0, rc, out)
    assert.equal("localhost", subject())
    -- the refused generation's workers did not loop: 2 + 2 + 2 (+ 2 refused) started
    assert.is_true(p:count("started, generation") <= 8, p:output())
    p:stop()
  end)
end)

describe("session tickets (core.tls_ticket_keys)", function()
  local app
  setup(function()
    dir = dir or T.certs()
    app = start({ KEYS = "a" }, 2)
  end)
  teardown(function()
    if app then app:stop() end
    H.cleanup()
  end)

  -- one request on a new connection offering the session in file (and saving the new one)
  local function get(args)
    return s_client(app.port, "-quiet " .. args, GET)
  end

  -- calls /keys?names until both workers have set them
  local function set_keys(names)
    local seen, n = {}, 0
    for _ = 1, 20 do
      local pid = curl(app, "/keys?" .. names):match("pid=(%d+)")
      if pid and not seen[pid] then seen[pid], n = true, n + 1 end
      if n == 2 then return end
    end
    error("could not reach both workers")
  end

  it("rejects a bad length", function()
    assert.truthy(app:wait_output("keys checked", 5000), app:output())
  end)

  for _, v in ipairs({ "-tls1_3", "-tls1_2" }) do
    it("a session made on one worker resumes on the other (" .. v .. ")", function()
      local sess = H.tmpdir() .. "/sess"
      local first = get(v .. " -sess_out " .. sess)
      assert.matches("reused=false", first)
      local pids = {}
      for _ = 1, 4 do
        local out = get(v .. " -sess_in " .. sess)
        assert.matches("reused=true", out)
        pids[out:match("pid=(%d+)")] = true
      end
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      assert.equal(2, n)
    end)
  end

  it("a ticket under an older key resumes while that key is in the ring, not once it is dropped", function()
    local sess = H.tmpdir() .. "/sess"
    assert.matches("reused=false", get("-tls1_2 -sess_out " .. sess))
    set_keys("b,a")
    for _ = 1, 2 do
      assert.matches("reused=true", get("-tls1_2 -sess_in " .. sess))
    end
    set_keys("b,c")
    for _ = 1, 2 do
      assert.matches("reused=false", get("-tls1_2 -sess_in " .. sess))
    end
    set_keys("a")
  end)
end)
