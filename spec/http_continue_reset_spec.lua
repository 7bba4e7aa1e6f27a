-- A client that asks for `100 Continue` and resets its connection: when the runtime cannot
-- write the 100 (the reset is already there), the connection is closed and its request's
-- handler never runs. The worker is kept busy while the client sends and resets, so the
-- request and the reset are both waiting when the worker reads.
local H = require("helper")
local U = require("http_util")
local ffi = require("ffi")
pcall(ffi.cdef, [[
int setsockopt(int fd, int level, int name, const void *val, unsigned len);
struct http_continue_reset_linger { int onoff; int secs; };
]])

-- closes with a reset (SO_LINGER 0) instead of a FIN
local function reset(s)
  local l = ffi.new("struct http_continue_reset_linger", 1, 0)
  assert(ffi.C.setsockopt(s.fd, 1, 13, l, ffi.sizeof(l)) == 0)   -- SOL_SOCKET, SO_LINGER
  s:close()
end

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/busy" then
      say("busy")
      local t = os.time() + 2
      while os.time() < t do end
      return 200, "done"
    end
    if req.path == "/upload" then say("handler ran for /upload " .. #(req:body() or "")) end
    return 200, "ok"
  end):listen()
  say("ready")
end
]]

describe("http: Expect 100-continue and a reset", function()
  it("runs no handler for a connection closed while writing its 100 Continue", function()
    local port = H.free_port()
    local p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(p:wait_output("ready", 5000), p:output())
    -- accepted and served once: the request below arrives on a connection the worker reads
    local a = assert(H.connect(port))
    local list = U.exchange(a, "GET /f HTTP/1.1\r\nHost: a\r\n\r\n", 1, 5000)
    assert.equal(1, #list)
    local b = assert(H.connect(port))
    b:send("GET /busy HTTP/1.1\r\nHost: a\r\n\r\n")
    assert(p:wait_output("busy", 5000), p:output())
    a:send("POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
    reset(a)
    local done = U.exchange(b, nil, 1, 10000)
    assert.equal(1, #done, p:output())
    -- the worker still serves (the same upload without the reset runs its handler once),
    -- and has had time to run the one it should not have
    local c = assert(H.connect(port))
    local ok = U.exchange(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 1, 5000)
    assert.equal(1, #ok)
    assert.equal(200, ok[1].status)
    c:close() b:close()
    assert(p:wait_output("handler ran for /upload 5", 5000), p:output())
    H.sleep(300)
    local out = p:output()
    p:stop() H.cleanup()
    local _, runs = out:gsub("handler ran for /upload", "")
    assert.equal(1, runs, out)
  end)
end)
