-- The four cluster modes and the scheduling policies, against the real binary: every response
-- says which worker served it (cluster.worker.id), so the spec sees the distribution.
local H = require("helper")
local U = require("http_util")
local ffi = require("ffi")

pcall(ffi.cdef, "int listen(int fd, int backlog);")

-- The app: a worker HTTP server answering its worker id (after a busy spin on /spin); the
-- master prints its listening and error events. SETUP is the master's cluster.setup table.
local function app(setup, extra_master, extra_worker)
  return [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup(]] .. setup .. [[)
  cluster.on("listening", function(w, a)
    say("listening", w.id, a.address, a.port, w.state)
  end)
  cluster.on("error", function(err) say("cluster error: " .. tostring(err)) end)
  ]] .. (extra_master or "") .. [[

else
  local server = http.create_server(function(req, res)
    if req.path == "/spin" then
      local t = os.clock()
      while os.clock() - t < 0.4 do end
    elseif req.path == "/sleep" then
      timer.sleep(tonumber(req.query))
    elseif req.path == "/pid" then
      return 200, tostring(process.pid)
    elseif req.path == "/ask" then
      cluster.worker:send((req.query:gsub("%%20", " ")))
    end
    return 200, tostring(cluster.worker.id)
  end)
  server:on("error", function(err) say("server error: " .. tostring(err)) end)
  server:listen()
  ]] .. (extra_worker or "") .. [[

end
]]
end

local CLOSE = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"

-- which worker answers a new connection (Connection: close)
local function who(port, path)
  local r = U.once(port, "GET " .. (path or "/") .. " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
  return r and r.status == 200 and tonumber(r.body) or nil
end

local function start(setup, options, extra_master, extra_worker)
  local port = H.free_port_range(4)
  local opts = { "-p", port }
  for _, o in ipairs(options or {}) do
    opts[#opts + 1] = o
  end
  local p = H.start_app(app(setup, extra_master, extra_worker), opts)
  return p, port
end

local listening_lines

local function wait_listening(p, n)
  local ok = H.wait_for(function() return #listening_lines(p) >= n end, 8000)
  assert(ok, "workers did not listen: " .. p:output())
end

function listening_lines(p)
  local list = {}
  for id, addr, port, state in p:output():gmatch("listening (%d+) (%S+) (%d+) (%a+)") do
    list[#list + 1] = { id = tonumber(id), address = addr, port = tonumber(port), state = state }
  end
  return list
end

local function counts(list)
  local c = {}
  for _, id in ipairs(list) do
    c[id] = (c[id] or 0) + 1
  end
  return c
end


describe("cluster modes", function()
  after_each(function()
    H.cleanup()
  end)

  it("dispatch: serves from every worker, round robin exactly even and alternating", function()
    local p, port = start("{ workers = 2 }", { "-m", "dispatch" })
    wait_listening(p, 2)
    local seq = {}
    for i = 1, 20 do
      seq[i] = who(port)
    end
    local c = counts(seq)
    assert.same({ 10, 10 }, { c[1], c[2] }, table.concat(seq, ","))
    for i = 2, 20 do
      assert.are_not.equal(seq[i - 1], seq[i], table.concat(seq, ","))
    end
    local l = listening_lines(p)
    assert.equal(2, #l)
    for _, e in ipairs(l) do
      assert.equal("127.0.0.1", e.address)
      assert.equal(port, e.port)
      assert.equal("listening", e.state)
    end
  end)

  it("dispatch: round robin over three workers with keep-alive connections too", function()
    local p, port = start("{ workers = 3 }")
    wait_listening(p, 3)
    local socks, ids = {}, {}
    for i = 1, 9 do
      socks[i] = assert(H.connect(port))
      ids[i] = tonumber(U.exchange(socks[i], "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)[1].body)
    end
    local c = counts(ids)
    assert.same({ 3, 3, 3 }, { c[1], c[2], c[3] }, table.concat(ids, ","))
    -- a kept-alive connection stays with its worker
    for i = 1, 9 do
      assert.equal(ids[i], tonumber(U.exchange(socks[i], "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)[1].body))
      socks[i]:close()
    end
  end)

  it("shared: workers accept on the master's socket; a busy worker leaves new connections to another", function()
    local p, port = start("{ workers = 2 }", { "-m", "shared" })
    wait_listening(p, 2)
    local l = listening_lines(p)
    assert.equal(2, #l)
    assert.equal(port, l[1].port)
    assert.equal(port, l[2].port)
    -- worker X takes the first connection and spins; only the other can accept the second
    local a = assert(H.connect(port))
    a:send("GET /spin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    H.sleep(100)
    local second = who(port)
    local first = tonumber(U.exchange(a, nil, 1, 3000)[1].body)
    a:close()
    assert.is_number(first)
    assert.is_number(second)
    assert.are_not.equal(first, second)
    for _ = 1, 5 do
      assert.is_number(who(port))
    end
  end)

  it("reuseport: one socket per worker slot on the same port, all of them serving", function()
    local p, port = start("{ workers = 2 }", { "-m", "reuseport" })
    wait_listening(p, 2)
    local l = listening_lines(p)
    assert.equal(2, #l)
    assert.equal(port, l[1].port)
    assert.equal(port, l[2].port)
    -- the kernel spreads new connections over the slots by their source port
    local seen = {}
    for _ = 1, 30 do
      local id = who(port)
      assert.is_number(id)
      seen[id] = true
    end
    assert.is_true(seen[1] and seen[2], "only one slot served")
  end)

  it("reuseport: a replacement worker inherits its slot's socket", function()
    local p, port = start("{ workers = 2 }", { "-m", "reuseport" },
      [[cluster.on("exit", function(w, code, sig) say("exit", w.id, tostring(code), tostring(sig)) end)]])
    wait_listening(p, 2)
    local r = U.once(port, (CLOSE:gsub("GET / ", "GET /pid ")))
    local pid = tonumber(r.body)
    assert.is_number(pid)
    ffi.C.kill(pid, 9)
    assert(p:wait_output("exit %d nil SIGKILL", 5000), p:output())
    wait_listening(p, 3)
    local seen = {}
    for _ = 1, 30 do
      local id = who(port)
      assert.is_number(id)
      seen[id] = true
    end
    assert.is_true(seen[1] and seen[2], "a slot is not served after the restart")
  end)

  it("reuseport: a slot whose worker is gone for good is served by another worker", function()
    -- restart = false: the dead worker's slot stays empty, but the kernel still queues a share
    -- of new connections on its socket; the other worker must accept them
    local p, port = start("{ workers = 2, restart = false }", { "-m", "reuseport" },
      [[cluster.on("exit", function(w, code, sig) say("exit", w.id, tostring(code), tostring(sig)) end)]])
    wait_listening(p, 2)
    local children = H.children(p.pid)
    assert.equal(2, #children)
    ffi.C.kill(children[2], 9)
    local gone = p:wait_output("exit (%d) nil SIGKILL", 5000)
    assert(gone, p:output())
    local survivor = tonumber(gone) == 1 and 2 or 1
    H.sleep(100)
    for i = 1, 40 do
      local r = U.once(port, CLOSE, 2000)
      assert(r and r.status == 200, "new connection " .. i .. " was not answered\n" .. p:output())
      assert.equal(tostring(survivor), r.body)
    end
  end)

  it("ports: worker slot i listens on port + i - 1", function()
    local p, port = start("{ workers = 3 }", { "-m", "ports" })
    wait_listening(p, 3)
    local l = listening_lines(p)
    assert.equal(3, #l)
    for _, e in ipairs(l) do
      assert.equal(port + e.id - 1, e.port)
    end
    for id = 1, 3 do
      for _ = 1, 3 do
        assert.equal(id, who(port + id - 1))
      end
    end
  end)

  it("takes the mode from cluster.setup{mode=} over -m", function()
    local p, port = start("{ workers = 2, mode = 'ports' }", { "-m", "dispatch" })
    wait_listening(p, 2)
    assert.equal(1, who(port))
    assert.equal(2, who(port + 1))
  end)
end)


describe("scheduling policies", function()
  after_each(function()
    H.cleanup()
  end)

  it("least_connections: new connections go to the worker with fewer open ones", function()
    local p, port = start("{ workers = 2, scheduler = 'least_connections' }")
    wait_listening(p, 2)
    local socks, ids = {}, {}
    local function open()
      local s = assert(H.connect(port))
      local id = tonumber(U.exchange(s, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)[1].body)
      socks[#socks + 1] = { s = s, id = id }
      return id
    end
    local first = open()
    local second = open()
    assert.are_not.equal(first, second) -- 1 open on `first`, 0 on the other
    open()
    open()
    local c = {}
    for _, e in ipairs(socks) do c[e.id] = (c[e.id] or 0) + 1 end
    assert.same({ 2, 2 }, { c[1], c[2] })
    -- close both idle connections of worker `first`: it now has none, the other two
    for _, e in ipairs(socks) do
      if e.id == first then e.s:close() end
    end
    H.sleep(400) -- workers report closed connections in batches every 100 ms
    assert.equal(first, open())
    assert.equal(first, open())
    -- now 2 and 2 again; close the other worker's and it takes the next ones
    for _, e in ipairs(socks) do
      if e.id == second then e.s:close() end
    end
    H.sleep(400)
    assert.equal(second, open())
    assert.equal(second, open())
    for _, e in ipairs(socks) do e.s:close() end
  end)

  it("ip_hash: the same client address always goes to the same worker", function()
    local p, port = start("{ workers = 3, scheduler = 'ip_hash' }")
    wait_listening(p, 3)
    local ip_hash = require("luacluster.sched.ip_hash")
    local expected = ip_hash.hash("127.0.0.1") % 3 + 1
    for _ = 1, 12 do
      assert.equal(expected, who(port))
    end
  end)

  it("obeys a custom scheduler function and gives it the connection's addresses", function()
    local p, port = start([[{ workers = 3, scheduler = function(workers, conn)
      say("conn", conn.remote_address, type(conn.remote_port), conn.local_port, #workers)
      return workers[#workers]
    end }]])
    wait_listening(p, 3)
    for _ = 1, 6 do
      assert.equal(3, who(port))
    end
    assert(p:wait_output("conn 127.0.0.1 number " .. port .. " 3", 2000), p:output())
  end)

  it("a scheduler that raises: the connection is still served (round robin) and the master's error event fires", function()
    local p, port = start([[{ workers = 2, scheduler = function(workers, conn)
      error("policy exploded")
    end }]])
    wait_listening(p, 2)
    local seq = {}
    for i = 1, 6 do
      seq[i] = who(port)
      assert.is_number(seq[i])
    end
    local c = counts(seq)
    assert.same({ 3, 3 }, { c[1], c[2] })
    assert(p:wait_output("cluster error: scheduler failed: [^\n]*policy exploded", 2000), p:output())
  end)

  it("a scheduler that returns something that is not a ready worker: still served, error event", function()
    local p, port = start([[{ workers = 2, scheduler = function(workers, conn)
      local n = (conn.remote_port % 3)
      if n == 0 then return nil elseif n == 1 then return 42 else return { id = 1 } end
    end }]])
    wait_listening(p, 2)
    for _ = 1, 9 do
      assert.is_number(who(port))
    end
    assert(p:wait_output("cluster error: scheduler returned", 2000), p:output())
    assert.is_true(p:count("cluster error: scheduler returned", true) >= 9)
  end)

  it("never picks a draining or dead worker", function()
    local p, port = start("{ workers = 3, restart = false, drain_timeout = 10000 }", nil, [[
      cluster.on("message", function(w, msg)
        if msg == "drain 2" then
          cluster.workers[2]:disconnect()
          say("worker 2 is " .. cluster.workers[2].state)
        end
        if msg == "kill 3" then cluster.workers[3]:kill("SIGKILL") end
      end)
      cluster.on("exit", function(w) say("exit", w.id) end)
      cluster.on("disconnect", function(w) say("disconnect", w.id, w.state) end)
    ]])
    wait_listening(p, 3)
    -- one in-flight request on each worker (round robin): worker 2's keeps it draining
    local slow = {}
    for i = 1, 3 do
      slow[i] = assert(H.connect(port))
      slow[i]:send("GET /sleep?1500 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    end
    assert.is_number(who(port, "/ask?drain%202"))
    assert(p:wait_output("worker 2 is draining", 3000), p:output())
    assert.is_number(who(port, "/ask?kill%203"))
    assert(p:wait_output("exit 3", 3000), p:output())
    for _ = 1, 10 do
      assert.equal(1, who(port))
    end
    -- worker 2 finished its in-flight request while draining, then exited
    local answers = {}
    for i = 1, 3 do
      local list = U.exchange(slow[i], nil, 1, 3000)
      answers[i] = list[1] and tonumber(list[1].body) or "none"
      slow[i]:close()
    end
    table.sort(answers, function(a, b) return tostring(a) < tostring(b) end)
    assert.same({ 1, 2, "none" }, answers)
    assert(p:wait_output("exit 2", 3000), p:output())
    assert.matches("disconnect 2 draining", p:output(), 1, true)
    assert.equal(1, who(port))
  end)
end)


-- A listening socket held by the spec itself, so that a port is in use: returns fd, port.
-- It binds as port_is_free checked (SO_REUSEADDR, so a TIME_WAIT left by an earlier spec does
-- not fail it) and takes another port if one was taken between the check and the bind.
local function occupy()
  for _ = 1, 50 do
    local port = H.free_port()
    local fd = ffi.C.socket(2, 1, 0)
    assert(fd >= 0, "socket")
    local one = ffi.new("int[1]", 1)
    assert(ffi.C.setsockopt(fd, 1, 2, one, ffi.sizeof("int")) == 0, "setsockopt")
    local sa = ffi.new("struct lc_sockaddr_in")
    sa.family = 2
    sa.port = bit.bor(bit.lshift(bit.band(port, 0xff), 8), bit.rshift(port, 8))
    sa.addr = 0x0100007f
    if ffi.C.bind(fd, sa, ffi.sizeof(sa)) == 0 and ffi.C.listen(fd, 16) == 0 then
      return fd, port
    end
    ffi.C.close(fd)
  end
  error("no port could be occupied in 50 tries")
end


describe("a port in use", function()
  local fd

  after_each(function()
    if fd then ffi.C.close(fd) fd = nil end
    H.cleanup()
  end)

  it("is the server's error event 'listen EADDRINUSE 127.0.0.1:PORT' in a worker", function()
    local port
    fd, port = occupy()
    local p = H.start_app(app("{ workers = 1 }"), { "-p", port })
    local line = "server error: listen EADDRINUSE 127.0.0.1:" .. port
    assert(p:wait_output(line, 5000, true), p:output())
    assert.is_true(p:alive())
    -- in every mode
    for _, mode in ipairs({ "shared", "reuseport", "ports" }) do
      local q = H.start_app(app("{ workers = 1 }"), { "-p", port, "-m", mode })
      assert(q:wait_output(line, 5000, true), mode .. ": " .. q:output())
      q:stop()
    end
  end)

  it("without an error handler: the line is logged and luacluster exits non-zero", function()
    local port
    fd, port = occupy()
    local p = H.start_app([[
      local http = require("luacluster.http")
      if cluster.is_worker then
        http.create_server(function() return 200, "x" end):listen()
      end
    ]], { "-w", 2, "-p", port })
    local code = p:wait(8000)
    assert.is_number(code, p:output())
    assert.are_not.equal(0, code)
    assert.matches("listen EADDRINUSE 127.0.0.1:" .. port, p:stderr(), 1, true)
  end)

  it("in the master: the server's error event, or the line and a non-zero exit", function()
    local port
    fd, port = occupy()
    local p = H.start_app([[
      local http = require("luacluster.http")
      local s = http.create_server(function() return 200, "x" end)
      s:on("error", function(err) say("master server error: " .. err) process.exit(0) end)
      s:listen()
    ]], { "-w", 0, "-p", port })
    assert.equal(0, (p:wait(5000)))
    assert.matches("master server error: listen EADDRINUSE 127.0.0.1:" .. port, p:output(), 1, true)
    local q = H.start_app([[
      local http = require("luacluster.http")
      http.create_server(function() return 200, "x" end):listen()
    ]], { "-w", 0, "-p", port })
    local code = q:wait(5000)
    assert.is_number(code, q:output())
    assert.are_not.equal(0, code)
    assert.matches("listen EADDRINUSE 127.0.0.1:" .. port, q:stderr(), 1, true)
  end)

  -- a newcomer's server at the top level, outside `if cluster.is_worker`: the master listens
  -- first, and the workers' listen collides with it, not with another program
  it("names the master's own server when a worker's listen collides with it", function()
    local port = H.free_port()
    for _, mode in ipairs({ "dispatch", "shared" }) do
      local p = H.start_app([[
        local http = require("luacluster.http")
        http.create_server(function() return 200, "x" end):listen()
      ]], { "-w", 1, "-p", port, "-m", mode })
      local code = p:wait(8000)
      assert.is_number(code, p:output())
      assert.are_not.equal(0, code)
      assert.matches("listen EADDRINUSE 127.0.0.1:" .. port .. ": the master itself listens on this address",
        p:stderr(), 1, true)
    end
  end)
end)


describe("the hand-off by hand", function()
  after_each(function()
    H.cleanup()
  end)

  it("a master net server passes accepted sockets to workers, whose HTTP server answers", function()
    local port = H.free_port()
    local p = H.start_app([[
      local http = require("luacluster.http")
      local net = require("luacluster.net")
      if cluster.is_master then
        cluster.setup({ workers = 2 })
        local online, turn = 0, 0
        cluster.on("online", function()
          online = online + 1
          if online < 2 then return end
          local server = net.create_server(function(sock)
            turn = turn % 2 + 1
            local ok, err = cluster.workers[turn]:send({ kind = "conn", n = turn }, sock)
            if not ok then say("send failed", err) end
          end)
          server:on("listening", function(a) say("master listening", a.port) end)
          server:listen()
        end)
      else
        local server = http.create_server(function(req)
          return 200, "worker " .. cluster.worker.id .. " " .. req.path
        end)
        cluster.worker:on("message", function(msg, sock)
          if type(msg) == "table" and msg.kind == "conn" and sock then
            server:serve(sock)
          end
        end)
      end
    ]], { "-p", port })
    assert(p:wait_output("master listening " .. port, 5000, true), p:output())
    local seq = {}
    for i = 1, 6 do
      local r = U.once(port, "GET /h" .. i .. " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.is_truthy(r, p:output())
      seq[i] = r.body
    end
    assert.same({ "worker 1 /h1", "worker 2 /h2", "worker 1 /h3", "worker 2 /h4", "worker 1 /h5", "worker 2 /h6" }, seq)
    -- a kept-alive connection stays with the worker it was handed to
    local s = assert(H.connect(port))
    local a = U.exchange(s, "GET /k1 HTTP/1.1\r\nHost: a\r\n\r\n", 1)[1].body
    local b = U.exchange(s, "GET /k2 HTTP/1.1\r\nHost: a\r\n\r\n", 1)[1].body
    s:close()
    assert.equal(a:match("^worker %d"), b:match("^worker %d"))
    assert.not_matches("send failed", p:output(), 1, true)
  end)
end)


describe("examples/custom_scheduler", function()
  after_each(function()
    H.cleanup()
  end)

  it("sends worker 1 three connections for each one of worker 2", function()
    local port = H.free_port()
    local p = H.start(H.root .. "/examples/custom_scheduler/app.lua", { "-w", 2, "-p", port }, { dir = H.tmpdir() })
    -- both workers are ready once each has answered (either may be ready first: until worker 1
    -- is, the policy sees only worker 2); from then on every window of the rotation is 3:1
    local seen = {}
    assert(H.wait_for(function()
      local b, st = H.curl("http://127.0.0.1:" .. port .. "/")
      if st == 200 then seen[b] = true end
      return seen["worker 1\n"] and seen["worker 2\n"]
    end, 5000), p:output())
    local seq = {}
    for i = 1, 16 do
      local r = U.once(port, CLOSE)
      seq[i] = tonumber(r.body:match("^worker (%d+)"))
    end
    local c = counts(seq)
    assert.same({ 12, 4 }, { c[1], c[2] }, table.concat(seq, ","))
    assert.not_matches("cluster error", p:output(), 1, true)
    assert.equal(0, (p:stop()))
  end)
end)
