-- A connection whose write fails (the client reset it) is closed when the write fails, not at
-- its next write, read or timer: a handler that stops writing for a while must not keep a dead
-- connection counted (max_connections, open connections), and its next write gets an error.
local H = require("helper")
local ffi = require("ffi")

pcall(ffi.cdef, [[
struct lc_linger { int onoff; int linger; };
]])

local SOL_SOCKET, SO_LINGER = 1, 13

local APP = [[
local http = require("luacluster.http")
local core = require("luacluster.core")
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/conns" then
      return 200, tostring(core.http_stats().connections)
    end
    -- far more than the socket and the runtime's queue hold: res:write waits for the client
    local ok, err = res:write(string.rep("x", 16 * 1048576))
    say("resumed", tostring(ok), tostring(err))
    timer.sleep(4000) -- a handler busy elsewhere (a database, a timer) before its next write
    ok, err = res:write("more")
    say("next write", tostring(ok), tostring(err))
  end):listen()
  say("ready")
end
]]


-- resets the socket: close with SO_LINGER 0 sends an RST instead of a FIN
local function reset(s)
  local l = ffi.new("struct lc_linger", { 1, 0 })
  assert(ffi.C.setsockopt(s.fd, SOL_SOCKET, SO_LINGER, l, ffi.sizeof(l)) == 0, "SO_LINGER")
  s:close()
end


describe("http write errors", function()
  after_each(function()
    H.cleanup()
  end)

  it("close the connection when the write fails: it is not kept until the handler writes again", function()
    local port = H.free_port()
    local p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(p:wait_output("ready", 5000), p:output())
    local s = assert(H.connect(port))
    s:send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    -- the answer has started and fills every buffer on the way; the client reads nothing
    assert.truthy(s:recv(3000))
    H.sleep(300)
    assert.equal("2", (H.curl("http://127.0.0.1:" .. port .. "/conns")))
    reset(s)
    -- the failed write wakes the handler, which then sleeps: its connection is gone already
    assert(p:wait_output("resumed", 3000), p:output())
    local conns = H.wait_for(function()
      local n = H.curl("http://127.0.0.1:" .. port .. "/conns")
      return n == "1" and n
    end, 1500, 100)
    assert.equal("1", conns, p:output())
    -- its next write says the connection is gone (and touches nothing freed)
    local line = p:wait_output("next write [^\n]*", 8000)
    assert.truthy(line, p:output())
    assert.truthy(line:find("next write nil the request is finished or its connection is closed", 1, true), line)
    p:stop()
  end)
end)
