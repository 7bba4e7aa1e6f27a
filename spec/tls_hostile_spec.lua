-- Hostile handshakes against an HTTPS server (issue 18, runtime/http_tls.c): plain HTTP sent to
-- the TLS port, random garbage, a truncated ClientHello, and 200 clients stalled mid-handshake
-- closed by the handshake's deadline (header_timeout) while the worker answers others. Each
-- costs only its connection: the worker (its pid) is the same after all of it.
local H = require("helper")
local T = require("tls_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  local D = os.getenv("CERTS")
  http.create_server(function(req, res)
    res:finish("pid=" .. process.pid .. " tls=" .. tostring(req.tls and req.tls.protocol) .. "\n")
  end, { tls = { cert = D .. "/localhost.pem", key = D .. "/localhost.key" }, header_timeout = 1000 }):listen(tonumber(os.getenv("PORT")))
end
]]

describe("hostile TLS clients", function()
  local app, dir, port, pid0

  local function get()
    return H.sh("curl -sS -m 5 --cacert " .. dir .. "/ca.pem https://localhost:" .. port .. "/ 2>&1")
  end

  local function hello(n)
    local out, rc = H.sh("/usr/bin/python3 " .. H.root .. "/spec/tls_hello.py " .. n)
    assert(rc == 0, out)
    return out
  end

  setup(function()
    dir = T.certs()
    port = H.free_port()
    app = H.start_app(APP, { "-w", "1" }, { env = { CERTS = dir, PORT = tostring(port) } })
    assert(H.wait_listening(port, 10000), app:output())
    pid0 = get():match("pid=(%d+)")
    assert(pid0, app:output())
  end)
  teardown(function()
    if app then app:stop() end
    H.cleanup()
  end)

  it("answers plain HTTP with nothing HTTP (an alert at most) and closes", function()
    local data, how = H.http_raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 3000)
    assert.equal("eof", how)
    assert.not_matches("HTTP/1", data)
    assert.is_true(#data == 0 or data:byte(1) == 0x15, "not an alert: " .. data)
  end)

  it("closes on random garbage", function()
    local s = assert(H.connect(port))
    local g = {}
    math.randomseed(18)
    for i = 1, 2000 do g[i] = string.char(math.random(0, 255)) end
    s:send(table.concat(g))
    local _, how = s:read_all(3000)
    s:close()
    assert.equal("eof", how)
  end)

  it("closes a truncated ClientHello once the peer goes, and one that stalls at the deadline", function()
    local part = hello(50)
    assert.equal(50, #part)
    assert.equal(0x16, part:byte(1))   -- a handshake record
    local s = assert(H.connect(port))
    s:send(part)
    s:close()
    local t0 = H.now()
    s = assert(H.connect(port))
    s:send(part)
    local _, how = s:read_all(5000)
    s:close()
    assert.equal("eof", how)
    assert.is_true(H.now() - t0 < 4000)
  end)

  it("200 clients stalled mid-handshake are closed by the deadline while others are answered", function()
    local part = hello(100)
    local socks = {}
    for i = 1, 200 do
      socks[i] = assert(H.connect(port))
      socks[i]:send(i % 2 == 0 and part or part:sub(1, 5))
    end
    -- meanwhile the worker answers
    for _ = 1, 5 do
      assert.matches("pid=" .. pid0, get())
    end
    H.sleep(2500)   -- past header_timeout (1000 ms) and the deadline timer's granularity
    local closed = 0
    for _, s in ipairs(socks) do
      local _, how = s:read_all(1000)
      if how == "eof" then closed = closed + 1 end
      s:close()
    end
    assert.equal(200, closed)
    assert.matches("pid=" .. pid0, get())
  end)

  it("the worker is the same process after all of it", function()
    assert.matches("pid=" .. pid0, get())
    assert.not_matches("exited with", app:output())
  end)
end)
