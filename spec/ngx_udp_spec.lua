-- ngx.socket.udp in a real worker against real UDP peers (spec/udp_peer.py): send and receive,
-- a receive that times out and leaves the socket usable, datagrams longer than the receive
-- size, datagrams kept while nobody receives, a refused peer, a closed socket's errors; and
-- Debian's lua-nginx-dns (nginx.dns.resolver), unmodified, querying a DNS server on loopback
-- from a handler while its one worker keeps serving other requests.
local H = require("helper")

local APP = [[
local ngx = require("luacluster.ngx")
local http = require("luacluster.http")
local ECHO, DNS, NOBODY = tonumber(os.getenv("ECHO_PORT")), tonumber(os.getenv("DNS_PORT")),
  tonumber(os.getenv("NOBODY_PORT"))

local function show(...)
  local t = {}
  for i = 1, select("#", ...) do
    t[i] = tostring((select(i, ...)))
  end
  return table.concat(t, ",")
end

local function peer(host)
  local sock = ngx.socket.udp()
  assert(sock:setpeername(host or "127.0.0.1", ECHO) == 1)
  return sock
end

local tests = {}

function tests.echo()
  local sock = peer()
  local out = { show(sock:send("hello")), show(sock:receive()) }
  out[#out + 1] = show(sock:send({ "a", { "b", 1 }, 2.5, "" }))
  out[#out + 1] = show(sock:receive("10"))
  out[#out + 1] = show(sock:send(42))
  out[#out + 1] = show(sock:receive())
  out[#out + 1] = show(sock:close())
  return table.concat(out, " ")
end

function tests.name()
  local sock = peer("localhost")
  sock:send("by name")
  return show(sock:receive())
end

function tests.unresolved()
  return show(ngx.socket.udp():setpeername("no-such-host.invalid", ECHO))
end

function tests.timeout()
  local sock = peer()
  sock:settimeout(200)
  sock:send("silent please")
  local a = show(sock:receive())
  sock:send("still usable")
  return a .. " " .. show(sock:receive())
end

function tests.big()
  local sock = peer()
  sock:send("big 3000")
  local cut = sock:receive(100)
  sock:send("next")
  local after = sock:receive()
  sock:send("big 9000")
  local whole = sock:receive()
  return show(#cut, cut:sub(1, 12), after, #whole, whole:sub(-3))
end

function tests.kept()
  local sock = peer()
  sock:send("many 3")
  ngx.sleep(0.3) -- they arrive while nobody receives
  return show(sock:receive(), sock:receive(), sock:receive())
end

function tests.refused()
  local sock = ngx.socket.udp()
  sock:setpeername("127.0.0.1", NOBODY)
  sock:settimeout(2000)
  sock:send("anyone?")
  return show(sock:receive())
end

function tests.closed()
  local fresh = ngx.socket.udp()
  local out = { show(fresh:send("x")), show(fresh:receive()), show(fresh:close()) }
  local sock = peer()
  out[#out + 1] = show(sock:close())
  out[#out + 1] = show(sock:close())
  out[#out + 1] = show(sock:send("x"))
  out[#out + 1] = show(sock:receive())
  out[#out + 1] = show(sock:setpeername("127.0.0.1", 70000))
  out[#out + 1] = show(sock:setpeername("unix:/tmp/x.sock"))
  local open = peer()
  out[#out + 1] = show(pcall(open.send, open, function() end))
  out[#out + 1] = show(pcall(open.send, open, { a = 1 }))
  out[#out + 1] = show(pcall(open.send, open, { "a", nil, "c" }))
  return table.concat(out, " ")
end

function tests.busy()
  local sock = peer()
  sock:settimeout(300)
  sock:send("silent")
  local other
  ngx.timer.at(0.05, function()
    other = table.concat({ show(sock:send("x")), show(sock:receive()), show(sock:close()) }, " ")
  end)
  local mine = show(sock:receive())
  ngx.sleep(0.1)
  return mine .. " " .. tostring(other) .. " " .. show(sock:close())
end

-- lua-nginx-dns, as Debian installs it
local resolver = require("nginx.dns.resolver")

function tests.dns(req)
  local name, timeout = req.query:match("^name=([^&]+)&timeout=(%d+)$")
  local r, err = resolver:new({ nameservers = { { "127.0.0.1", DNS } }, retrans = 2, timeout = tonumber(timeout) })
  if not r then
    return "new failed: " .. err
  end
  local answers
  answers, err = r:query(name, { qtype = r.TYPE_A })
  if not answers then
    return "error: " .. err
  end
  if answers.errcode then
    return "errcode " .. answers.errcode .. " " .. answers.errstr
  end
  local out = {}
  for _, a in ipairs(answers) do
    out[#out + 1] = a.name .. " " .. a.type .. " " .. a.address .. " " .. a.ttl
  end
  return table.concat(out, "; ")
end

-- sockets that nobody closes (lua-nginx-dns never closes its own) close when collected
function tests.gc()
  local function fds()
    local p = io.popen("ls /proc/" .. ngx.worker.pid() .. "/fd")
    local n = select(2, p:read("*a"):gsub("%d+", ""))
    p:close()
    return n
  end
  collectgarbage()
  local before = fds()
  collectgarbage("stop") -- none collected before they are counted
  for _ = 1, 50 do
    local r = resolver:new({ nameservers = { { "127.0.0.1", DNS } } })
    assert(r:query("example.test", { qtype = r.TYPE_A }))
  end
  local made = fds() - before
  collectgarbage("restart")
  collectgarbage()
  collectgarbage()
  ngx.sleep(0.05)
  return show(made, fds() - before)
end

if cluster.is_worker then
  http.create_server(function(req)
    local test = tests[req.path:sub(2)]
    if not test then
      return 404, "no such test"
    end
    return 200, test(req)
  end):listen()
end
]]


local function spawn_peer(mode, port)
  local p = H.spawn({ "/usr/bin/python3", H.root .. "/spec/udp_peer.py", mode, tostring(port) })
  assert(p:wait_output("ready", 5000, true), p:output())
  return p
end


describe("ngx.socket.udp", function()
  local app, port

  setup(function()
    local echo_port, dns_port, nobody_port
    repeat
      local ports = H.free_ports(3)
      echo_port, dns_port, nobody_port = ports[1], ports[2], ports[3]
    until echo_port ~= dns_port and dns_port ~= nobody_port and echo_port ~= nobody_port
    spawn_peer("echo", echo_port)
    spawn_peer("dns", dns_port)
    port = H.free_port()
    app = H.start_app(APP, { "-w", 1, "-p", port },
      { env = { ECHO_PORT = echo_port, DNS_PORT = dns_port, NOBODY_PORT = nobody_port } })
    assert(H.wait_for(function()
      local _, status = H.curl("http://127.0.0.1:" .. port .. "/none")
      return status == 404
    end, 10000), app:output())
  end)

  teardown(function()
    H.cleanup()
  end)

  local function get(path)
    local body, status = H.curl("http://127.0.0.1:" .. port .. path)
    assert.equal(200, status, body .. "\n" .. app:output())
    return body
  end

  -- { what it shows, the handler's test, its answer }
  for _, case in ipairs({
    { "sends a string, an array table or a number, and receives each answer", "/echo", "1 hello 1 ab12.5 1 42 1" },
    { "sends to a peer given by name, as the system resolves it", "/name", "by name" },
    { 'a receive that times out returns nil, "timeout" and the socket stays usable', "/timeout",
      "nil,timeout still usable" },
    { "cuts a datagram longer than the receive size, and drops the rest of it", "/big",
      "100,012345678901,next,9000,789" },
    { "keeps the datagrams that arrive while nobody receives, in order", "/kept", "d1,d2,d3" },
    { 'a peer that nobody listens for is "connection refused"', "/refused", "nil,connection refused" },
    { 'another coroutine\'s calls on a socket that a receive waits on are "socket busy"', "/busy",
      "nil,timeout nil,socket busy nil,socket busy nil,socket busy 1" },
  }) do
    it(case[1], function()
      assert.equal(case[3], get(case[2]))
    end)
  end

  it("a closed socket, or one with no peer, fails with OpenResty's errors", function()
    local body = get("/closed")
    local parts = {}
    for part in body:gmatch("%S+") do
      parts[#parts + 1] = part
    end
    assert.equal("nil,closed nil,closed nil,closed 1 nil,closed nil,closed nil,closed", table.concat(parts, " ", 1, 7), body)
    assert.matches("nil,bad port number: 70000 nil,unix domain datagram sockets are not supported", body, 1, true)
    assert.matches("false,[^,]*: bad argument #1 to 'send' %(string, number, boolean, nil, or array table expected, got function%)", body)
    assert.matches("false,[^,]*: bad argument #1 to 'send' %(non%-array table found%)", body)
    assert.matches("false,[^,]*: bad argument #1 to 'send' %(bad data type nil found%)", body)
  end)

  it("a name that does not resolve is nil and nginx's resolver's words", function()
    -- (3: Host not found) from a DNS server that says so, (2: Server failure) when none answers
    assert.matches("^nil,no%-such%-host%.invalid could not be resolved %([23]: [%a ]+%)$", get("/unresolved"))
  end)

  it("closes the sockets nobody closed when they are collected", function()
    local body = get("/gc")
    local made, left = body:match("^(%-?%d+),(%-?%d+)$") -- (an earlier connection may close meanwhile)
    assert.is_true(tonumber(made) >= 45, body)
    assert.is_true(tonumber(left) <= 2, body)
  end)

  describe("lua-nginx-dns (nginx.dns.resolver), unmodified", function()
    it("answers the A records of a name", function()
      assert.equal("example.test 1 10.0.0.1 300; example.test 1 10.0.0.2 300",
        get("/dns?name=example.test&timeout=2000"))
    end)

    it("answers NXDOMAIN as the resolver's name error", function()
      assert.equal("errcode 3 name error", get("/dns?name=nx.example.test&timeout=2000"))
    end)

    it("times out when the server does not answer, and the worker serves others meanwhile", function()
      local out = H.tmpdir() .. "/slow.out"
      local t0 = H.now()
      H.sh("curl -s -m 20 'http://127.0.0.1:" .. port .. "/dns?name=silent.example.test&timeout=1500'"
        .. " > " .. out .. " 2>&1 &")
      H.sleep(200)
      -- one worker: this query is answered while the other one waits for its DNS server
      assert.equal("example.test 1 10.0.0.1 300; example.test 1 10.0.0.2 300",
        get("/dns?name=example.test&timeout=2000"))
      assert.equal("", H.read_file(out), "the silent query was still waiting")
      local slow = H.wait_for(function()
        local s = H.read_file(out)
        return s ~= "" and s
      end, 15000)
      assert.matches("^error: failed to receive reply from UDP server 127%.0%.0%.1:%d+: timeout$", slow)
      assert.is_true(H.now() - t0 >= 2 * 1500 - 100, "two tries of 1.5 s each")
    end)
  end)
end)
