-- The TLS engine (runtime/tls.c), driven as the socket layer will drive it by
-- build/test/test_tls (runtime/test/test_tls.c) over real TCP to a real `openssl s_server`,
-- with a CA and certificates made by `openssl` at test time in a temp folder. Every server is
-- started on a free loopback port and stopped by its pid.
-- Under the sanitizer build (spec/run_sanitized) test_tls runs with LeakSanitizer on: a leak
-- in any path (a failed handshake included) is a report, which fails the run.
local H = require("helper")
local T = require("tls_util")

local OPENSSL = T.OPENSSL
local dir        -- the certificates
local servers = {}
local q, sh_ok = T.q, T.sh_ok


-- openssl s_server on a free port with args (a list) -> port, proc; stdin: a path to read
-- its standard input from (a FIFO), else /dev/null
local function s_server(args, cwd, stdin)
  local port = H.free_port()
  local argv = { OPENSSL, "s_server", "-accept", "127.0.0.1:" .. port }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  if stdin then
    for i, a in ipairs(argv) do argv[i] = q(a) end
    argv = { "/bin/sh", "-c", "exec " .. table.concat(argv, " ") .. " < " .. q(stdin) }
  end
  local p = H.spawn(argv, { cwd = cwd })
  servers[#servers + 1] = p
  assert(p:wait_output("ACCEPT", 10000, true), "s_server did not start: " .. p:output())
  return port, p
end


local function www(extra)
  local args = { "-cert", dir .. "/localhost.pem", "-key", dir .. "/localhost.key", "-www" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return s_server(args)
end


-- runs test_tls with args (a string) -> its output; it must exit 0
local function test_tls(args)
  -- LeakSanitizer for this program only (spec/run_sanitized turns it off for the rest)
  local out, rc = H.sh("ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1\" timeout 60 " ..
    H.build_dir .. "/test/test_tls " .. args)
  assert(rc == 0, "test_tls failed (" .. tostring(rc) .. "):\n" .. out)
  return out
end


local function client(args)
  return test_tls("connect " .. args)
end


local function count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end


local GET = "--send " .. q("GET / HTTP/1.0\r\n\r\n")

lazy_setup(function()
  dir = T.certs()
end)

after_each(function()
  for _, p in ipairs(servers) do p:stop() end
  servers = {}
end)


describe("tls engine: calls", function()
  it("refuse bad settings and early reads and writes, keep a failure, and outlive their store", function()
    assert.matches("ok api", test_tls("api"))
  end)
end)


describe("tls engine: handshake", function()
  it("speaks TLS 1.3, verifies the chain against ca_file and the name, and reads a page to close_notify", function()
    local port = www()
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem " .. GET ..
      " --out " .. dir .. "/page13")
    assert.matches("conn 1: handshake ok protocol=TLSv1.3 cipher=TLS_[%w_]+ resumed=0 alpn=%- sni=localhost\n", out)
    assert.matches("conn 1: received %d+ bytes, end=close_notify\n", out)
    assert.matches("HTTP/1.0 200 ok", H.read_file(dir .. "/page13"))
  end)

  it("speaks TLS 1.2 with a server that offers only TLS 1.2", function()
    local port = www({ "-tls1_2" })
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: handshake ok protocol=TLSv1.2 cipher=ECDHE%-ECDSA%-[%w%-]+ resumed=0", out)
    assert.matches("end=close_notify", out)
  end)

  it("refuses TLS 1.1, naming the version as the reason", function()
    local port = www({ "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0" })
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: error: TLS handshake failed: [^\n]*version[^\n]*TLS 1.2 and 1.3 only", out)
    assert.not_matches("handshake ok", out)
  end)

  it("offers ALPN and reports what the server chose", function()
    local port = www({ "-alpn", "http/1.1" })
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --alpn h2,http/1.1 " .. GET)
    assert.matches("conn 1: handshake ok [^\n]* alpn=http/1.1 ", out)
  end)
end)


describe("tls engine: verification", function()
  it("is on by default: against the system store a certificate of an unknown CA fails, saying why", function()
    local port = www()
    local out = client("--port " .. port .. " --host localhost " .. GET)
    assert.matches("conn 1: error: certificate verify failed: unable to get local issuer certificate\n", out)
    assert.not_matches("handshake ok", out)
  end)

  it("fails a self-signed certificate, saying so", function()
    local port = s_server({ "-cert", dir .. "/ca.pem", "-key", dir .. "/ca.key", "-www" })
    local out = client("--port " .. port .. " --host localhost " .. GET)
    assert.matches("conn 1: error: certificate verify failed: self%-signed certificate\n", out)
  end)

  it("fails a certificate for another name, naming the mismatch and the name", function()
    local port = www()
    local out = client("--port " .. port .. " --host localhost --server-name wrong.test --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: error: certificate verify failed: hostname mismatch %(the certificate is not for wrong.test%)\n", out)
  end)

  it("checks an IP literal against the certificate's IP addresses (and sends it no SNI)", function()
    local port = www()
    local out = client("--port " .. port .. " --host 127.0.0.1 --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: handshake ok [^\n]* sni=%-\n", out)
    local port2 = s_server({ "-cert", dir .. "/sni.test.pem", "-key", dir .. "/sni.test.key", "-www" })
    out = client("--port " .. port2 .. " --host 127.0.0.1 --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: error: certificate verify failed: IP address mismatch %(the certificate is not for 127.0.0.1%)\n", out)
  end)

  it("with verify = false connects whatever the certificate", function()
    local port = www()
    local out = client("--port " .. port .. " --host wrong.test --no-verify " .. GET)
    assert.matches("conn 1: handshake ok protocol=TLSv1.3", out)
    assert.matches("end=close_notify", out)
  end)

  it("names a ca_file that does not load", function()
    local port = www()
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/missing.pem " .. GET)
    assert.matches("conn 1: error: cannot load ca_file " .. dir:gsub("%p", "%%%0") .. "/missing.pem: No such file or directory", out)
  end)
end)


describe("tls engine: SNI", function()
  -- the server's default certificate is for sni.test; only a client that sends the SNI
  -- `localhost` gets the certificate for localhost (-servername_fatal: another name is refused)
  local function sni_server()
    return s_server({ "-cert", dir .. "/sni.test.pem", "-key", dir .. "/sni.test.key",
      "-cert2", dir .. "/localhost.pem", "-key2", dir .. "/localhost.key",
      "-servername", "localhost", "-servername_fatal", "-www" })
  end

  it("sends the host name connected to, by default (a fully qualified one without its trailing dot)", function()
    local port = sni_server()
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: handshake ok [^\n]* sni=localhost\n", out)
    out = client("--port " .. port .. " --host localhost. --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: handshake ok [^\n]* sni=localhost\n", out)
  end)

  it("sends server_name instead when it is given, and verifies that name", function()
    local port = sni_server()
    local out = client("--port " .. port .. " --host 127.0.0.1 --server-name localhost --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: handshake ok [^\n]* sni=localhost\n", out)
    out = client("--port " .. port .. " --host localhost --server-name other.test --ca " .. dir .. "/ca.pem " .. GET)
    assert.matches("conn 1: error: TLS handshake failed: [^\n]*unrecognized name", out)
  end)
end)


describe("tls engine: data", function()
  it("carries 1 MB each way through partial feeds (s_server -rev answers each line reversed)", function()
    local lines, want = {}, {}
    for i = 1, 16384 do
      local l = string.format("%06d:", i) .. string.rep(string.char(97 + i % 26), 56)
      lines[i], want[i] = l, l:reverse()
    end
    local input = H.write_file(dir .. "/rev.in", table.concat(lines, "\n") .. "\n")
    local expect = table.concat(want, "\n") .. "\n"
    assert.equals(1048576, #expect)
    local port = s_server({ "-cert", dir .. "/localhost.pem", "-key", dir .. "/localhost.key", "-rev" })
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --feed 700 --send-file " ..
      input .. " --out " .. dir .. "/rev.out --expect " .. #expect)
    assert.matches("conn 1: received 1048576 bytes, end=expected\n", out)
    assert.equals(expect, H.read_file(dir .. "/rev.out"))
  end)

  it("receives a 1 MB file through feeds of at most 300 bytes (s_server -WWW)", function()
    local files = H.tmpdir()
    local blob = {}
    for i = 1, 65536 do blob[i] = string.format("%015d\n", i) end
    H.write_file(files .. "/big.bin", table.concat(blob))
    local port = s_server({ "-cert", dir .. "/localhost.pem", "-key", dir .. "/localhost.key", "-WWW" }, files)
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --feed 300 --send " ..
      q("GET /big.bin HTTP/1.0\r\n\r\n") .. " --out " .. dir .. "/big.out")
    assert.matches("conn 1: received %d+ bytes, end=close_notify\n", out)
    local body = H.read_file(dir .. "/big.out"):match("\r\n\r\n(.*)$")
    assert.equals(1048576, #body)
    assert.equals(table.concat(blob), body)
  end)

  it("closes with close_notify: the server reads a clean end, not a truncation", function()
    -- s_server's plain mode prints what it reads, DONE on close_notify, ERROR on a bare close;
    -- its standard input (which it sends) is a FIFO that stays open while the test runs
    local fifo = dir .. "/stdin.fifo"
    sh_ok("rm -f " .. fifo .. " && mkfifo " .. fifo)
    local keep = assert(io.open(fifo, "r+"))   -- read-write: the open does not wait for a reader
    local port, server = s_server({ "-cert", dir .. "/localhost.pem", "-key", dir .. "/localhost.key" }, nil, fifo)
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --send " ..
      q("hello server\n") .. " --end-after-send")
    assert.matches("conn 1: received 0 bytes, end=sent\n", out)
    assert(server:wait_output("DONE", 5000, true), server:output())
    assert.matches("hello server\n", server:output())
    assert.not_matches("ERROR", server:output())
    keep:close()
  end)

  it("reports a peer that closes without close_notify as a possible truncation", function()
    local port, server = s_server({ "-cert", dir .. "/localhost.pem", "-key", dir .. "/localhost.key", "-rev" })
    local asan = os.getenv("ASAN_OPTIONS")
    local c = H.spawn({ H.build_dir .. "/test/test_tls", "connect", "--port", tostring(port), "--host", "localhost",
      "--ca", dir .. "/ca.pem", "--send", "hello\n", "--out", dir .. "/cut.out" },
      { env = { ASAN_OPTIONS = asan and asan .. ":detect_leaks=1" or false } })
    servers[#servers + 1] = c
    assert(H.wait_for(function() return H.read_file(dir .. "/cut.out") == "olleh\n" end, 10000), c:output())
    server:kill("SIGKILL")      -- the kernel closes its socket: a FIN, and no close_notify before it
    assert.equals(0, c:wait(10000))
    assert.matches("conn 1: received 6 bytes, end=ECONNRESET: TLS: the peer closed the connection without close_notify\n",
      c:stdout())
  end)
end)


describe("tls engine: session reuse", function()
  for _, v in ipairs({ { "TLS 1.3 (tickets after the handshake)", "-tls1_3", "TLSv1.3" },
                       { "TLS 1.2", "-tls1_2", "TLSv1.2" } }) do
    it("resumes on a second connection to the same origin: " .. v[1], function()
      local port = www({ v[2] })
      local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --times 3 " .. GET ..
        " --out " .. dir .. "/resume.out")
      assert.matches("conn 1: handshake ok protocol=" .. v[3] .. " [^\n]* resumed=0", out)
      assert.matches("conn 2: handshake ok protocol=" .. v[3] .. " [^\n]* resumed=1", out)
      assert.matches("conn 3: handshake ok protocol=" .. v[3] .. " [^\n]* resumed=1", out)
      assert.matches("sessions cached: 1\n", out)
      -- the server saw it too (its page says New or Reused)
      local page = H.read_file(dir .. "/resume.out")
      assert.equals(1, count(page, "\nNew, " .. v[3]))
      assert.equals(2, count(page, "\nReused, " .. v[3]))
    end)
  end

  it("does not resume without a pool key, nor across different TLS settings", function()
    local port = www()
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --times 2 --no-key " .. GET)
    assert.matches("conn 2: handshake ok [^\n]* resumed=0", out)
    assert.matches("sessions cached: 0\n", out)
    -- one pool key, verify on and off in turn: sessions are kept apart by their settings
    out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --times 4 --verify-seq 10 " .. GET)
    assert.matches("conn 2: handshake ok [^\n]* resumed=0", out)
    assert.matches("conn 3: handshake ok [^\n]* resumed=1", out)
    assert.matches("conn 4: handshake ok [^\n]* resumed=1", out)
    assert.matches("sessions cached: 2\n", out)
  end)

  it("never lets a connection that verifies resume a session that was not verified", function()
    -- the certificate is for sni.test: only verify = false accepts it for localhost
    local port = s_server({ "-cert", dir .. "/sni.test.pem", "-key", dir .. "/sni.test.key", "-www" })
    local out = client("--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --times 2 --verify-seq 01 " .. GET)
    assert.matches("conn 1: handshake ok ", out)
    assert.matches("conn 2: error: certificate verify failed: hostname mismatch %(the certificate is not for localhost%)\n", out)
  end)
end)


describe("tls engine: a peer that does not speak TLS", function()
  local function garbage(mode)
    local port = H.free_port()
    local argv = { H.build_dir .. "/test/test_tls", "garbage", tostring(port) }
    if mode then argv[#argv + 1] = mode end
    local p = H.spawn(argv)
    servers[#servers + 1] = p
    assert(p:wait_output("listening", 10000, true), p:output())
    return port, p
  end

  it("fails the handshake with a message when bytes that are not a ServerHello come back", function()
    local port, p = garbage()
    local out = client("--port " .. port .. " --host localhost " .. GET)
    assert.matches("conn 1: error: TLS handshake failed: wrong version number %(the peer does not speak TLS%)\n", out)
    assert.matches("sessions cached: 0\n", out)
    assert(p:wait_output("client gone", 5000, true), p:output())
  end)

  it("fails the handshake with a message when the peer closes in the middle of it", function()
    local port = garbage("close")
    local out = client("--port " .. port .. " --host localhost " .. GET)
    assert.matches("conn 1: error: TLS handshake failed: the peer closed the connection\n", out)
  end)
end)


describe("tls engine: out of memory", function()
  it("fails one allocation at a time anywhere in two connections: each fails cleanly, leaks nothing, and the next connection works", function()
    -- test_tls --fail-alloc N: the Nth allocation (the engine's or OpenSSL's) fails, once, in
    -- connection 1 or 2; connection 3 then must work (a context OpenSSL left broken is not
    -- reused); under the sanitizer build a leak or a bad access fails the run
    local port = www()
    local base = "--port " .. port .. " --host localhost --ca " .. dir .. "/ca.pem --times 3 " .. GET
    local total = tonumber(client(base .. " --fail-alloc 1000000000"):match("allocations: (%d+)"))
    assert(total and total > 1000, "allocations counted: " .. tostring(total))
    local runs = 150
    local step = math.ceil(total / runs)
    for i = 0, runs - 1 do
      local n = 1 + i * step + (i * 7) % step
      local out = client(base .. " --fail-alloc " .. n)
      if not out:find("conn 3: handshake ok", 1, true) or out:find("error: \n", 1, true) then
        error("with allocation " .. n .. " of " .. total .. " failing:\n" .. out)
      end
    end
  end)
end)
