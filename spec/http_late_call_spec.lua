-- A request object kept past its request. Lua names a connection by its address, and a closed
-- connection's memory is reused for the next one (runtime/http_int.h), so every call from Lua
-- is checked against the connection's request numbers: a response kept from a closed
-- connection must reach nothing, least of all the connection that now lives in its memory.
local H = require("helper")
local U = require("http_util")
local ffi = require("ffi")

pcall(ffi.cdef, "struct http_late_linger { int onoff; int secs; };")

-- closes sock with a reset (SO_LINGER 0): the server's read fails and it closes the connection
-- while the handler still holds the request
local function reset(sock)
  local l = ffi.new("struct http_late_linger", 1, 0)
  assert(ffi.C.setsockopt(sock.fd, 1, 13, l, ffi.sizeof(l)) == 0, "SO_LINGER")
  sock:close()
end

local APP = [[
local http = require("luacluster.http")
local timer = require("luacluster.timer")
local core = require("luacluster.core")
local kept = {}
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/keep" then
      kept.req, kept.res = req, res   -- not answered: its client resets the connection
      say("kept")
      return
    elseif req.path == "/slow" then
      kept.slow_c = req._c
      timer.sleep(400)
      return 200, "slow " .. tostring(req.remote_port)
    elseif req.path == "/late" then
      local out = {}
      local ok, err = kept.res:write("LATE WRITE")
      out[#out + 1] = "write " .. tostring(ok) .. " " .. tostring(err)
      ok, err = kept.res:finish("LATE FINISH")
      out[#out + 1] = "finish " .. tostring(ok) .. " " .. tostring(err)
      out[#out + 1] = "address " .. tostring(kept.req.remote_address)
      local h = kept.req.headers
      out[#out + 1] = "headers " .. tostring(h and h.host)
      -- the slow request's connection lives in the kept one's memory (the runtime reuses it)
      out[#out + 1] = "reused " .. tostring(tostring(kept.slow_c) == tostring(kept.req._c))
      return 200, table.concat(out, "\n")
    elseif req.path == "/first" then
      kept.c, kept.s = req._c, req._s
      return 200, "first"
    elseif req.path == "/stream" then
      res:write("part1 ")
      timer.sleep(300)
      res:write("part2")
      res:finish()
      return
    elseif req.path == "/abort_first" then
      -- a late abort naming an earlier request of a connection that answers a later one
      core.http_abort(kept.c, kept.s)
      return 200, "tried"
    elseif req.path == "/spares" then
      return 200, tostring(core.http_stats().spare_connections)
    end
    return 200, "hello"
  end):listen()
  say("ready")
end
]]

describe("a response kept past its request", function()
  local p, port

  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(p:wait_output("ready", 5000), p:output())
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  it("reaches nothing once its connection closed, not the connection that took its place", function()
    for round = 1, 5 do
      -- the kept request's connection closes
      local keep = assert(H.connect(port))
      keep:send("GET /keep HTTP/1.1\r\nHost: kept\r\n\r\n")
      assert(H.wait_for(function() return select(2, p:output():gsub("kept", "")) >= round end, 3000), p:output())
      reset(keep)
      H.sleep(100)
      -- a new connection (in the closed one's memory, when the worker reuses it) waits in its handler
      local slow = assert(H.connect(port))
      slow:send("GET /slow HTTP/1.1\r\nHost: slow\r\n\r\n")
      H.sleep(100)
      local late = U.once(port, "GET /late HTTP/1.1\r\nHost: late\r\nConnection: close\r\n\r\n")
      assert.equal(200, late.status, "round " .. round)
      assert.equal(table.concat({
        "write nil the request is finished or its connection is closed",
        "finish nil the request is finished or its connection is closed",
        "address nil",
        "headers nil",
        "reused true" }, "\n"), late.body)
      local list, rest = U.exchange(slow, nil, 1, 3000)
      assert.equal(1, #list, rest)
      assert.matches("^slow %d+$", list[1].body)
      -- nothing of the late calls reached the slow connection
      assert.same({ nil, "timeout" }, { slow:recv(200) })
      slow:close()
    end
    assert.is_true(p:alive())
  end)

  it("a late abort of an earlier request does not cut the answer to a later one", function()
    local s = assert(H.connect(port))
    local list = U.exchange(s, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n", 1, 3000)
    assert.equal("first", list[1].body)
    s:send("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")
    H.sleep(100)
    assert.equal("tried", U.once(port, "GET /abort_first HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").body)
    list = U.exchange(s, nil, 1, 3000)
    assert.equal(1, #list)
    assert.equal("part1 part2", list[1].body)
    s:close()
  end)

  it("keeps as spares only connections whose address a handler was given", function()
    local function spares()
      return tonumber(U.once(port, "GET /spares HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").body)
    end
    H.sleep(200)
    local before = spares()
    -- 500 connections that send nothing, then close: freed, not kept
    local socks = {}
    for i = 1, 500 do socks[i] = assert(H.connect(port)) end
    H.sleep(200)
    for _, sock in ipairs(socks) do sock:close() end
    H.sleep(300)
    local after_silent = spares()
    assert.is_true(after_silent <= before + 2, ("spares %d -> %d after 500 silent connections"):format(before, after_silent))
    -- 50 connections open at once, each with a request: kept for the next ones
    socks = {}
    for i = 1, 50 do
      socks[i] = assert(H.connect(port))
      assert.equal(200, U.exchange(socks[i], "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, 3000)[1].status)
    end
    for _, sock in ipairs(socks) do sock:close() end
    H.sleep(300)
    local kept_now = spares()
    -- (the connection asking for the count holds one of them)
    assert.is_true(kept_now >= 49, ("%d spares after 50 answered connections closed"):format(kept_now))
  end)
end)
