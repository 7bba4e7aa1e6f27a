-- A response's framing is the runtime's, never the handler's: a Content-Length the handler
-- declares must match the body it sends, Transfer-Encoding is the runtime's alone. Each case
-- runs on a keep-alive connection with a second request pipelined behind it, and checks that
-- the second response is read where it starts (no desynchronised connection), or that the
-- connection was closed where it cannot go on. Raw sockets: the bytes as sent.
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  local routes = {}
  routes["/cl-small"] = function() return 200, { ["Content-Length"] = "2" }, "hello world" end
  routes["/cl-big"] = function() return 200, { ["Content-Length"] = "20" }, "hello" end
  routes["/te"] = function() return 200, { ["Transfer-Encoding"] = "chunked" }, "hello" end
  routes["/te-stream"] = function(req, res)
    res:header("Transfer-Encoding", "chunked")
    res:write("hello") -- MARK:te-stream
  end
  routes["/cl-bad"] = function() return 200, { ["Content-Length"] = "5x" }, "hello" end
  routes["/cl-neg"] = function() return 200, { ["Content-Length"] = "-5" }, "hello" end
  routes["/cl-dup"] = function(req, res)
    res:header("Content-Length", { "5", "6" })
    res:finish("hello") -- MARK:cl-dup
  end
  routes["/cl-same"] = function(req, res)
    res:header("Content-Length", { "5", "5" })
    res:finish("hello")
  end
  routes["/cl-finish"] = function(req, res)
    res:header("Content-Length", "3")
    res:finish("hello") -- MARK:cl-finish
  end
  routes["/cl-number"] = function() return 200, { ["Content-Length"] = 5 }, "hello" end
  routes["/over"] = function(req, res)
    res:header("Content-Length", "5")
    res:write("hello world") -- MARK:over
  end
  routes["/over-recover"] = function(req, res)
    res:header("Content-Length", "5")
    res:write("he")
    local ok, err = pcall(res.write, res, "llo world")
    assert(not ok and err:find("res:write: 9 bytes written where 3 remain of the Content-Length 5", 1, true), err)
    res:finish("llo")
  end
  routes["/finish-over"] = function(req, res)
    res:header("Content-Length", "5")
    res:write("hel")
    res:finish("lo world") -- MARK:finish-over
  end
  routes["/short"] = function(req, res)
    res:header("Content-Length", "10")
    res:write("hello")
    res:finish()
  end
  routes["/exact"] = function(req, res)
    res:header("Content-Length", "10")
    res:write("hello")
    res:finish("world")
  end
  routes["/head"] = function() return 200, { ["Content-Length"] = "1000" }, "" end
  routes["/head-stream"] = function(req, res)
    res:header("Content-Length", "1000")
    res:write("abc")
    res:finish()
  end
  routes["/304"] = function() return 304, { ["Content-Length"] = "1000", ETag = '"x"' } end
  routes["/204-0"] = function() return 204, { ["Content-Length"] = "0" }, "" end
  routes["/204-5"] = function() return 204, { ["Content-Length"] = "5" }, "" end
  routes["/raise"] = function() error("boom") end
  routes["/status"] = function() return 1000, "x" end

  http.create_server(function(req, res) -- MARK:handler
    local r = routes[req.path]
    if r then return r(req, res) end
    return 200, "ok " .. req.method .. " " .. req.path
  end):listen()
  say("ready")
end
]]


-- the line of the app (as written: H.prelude first) that carries -- MARK:name
local function line_of(name)
  local src = H.prelude .. APP
  local pos = assert(src:find("-- MARK:" .. name .. "\n", 1, true), name)
  local _, n = src:sub(1, pos):gsub("\n", "")
  return n + 1
end


local function req(path, method)
  return (method or "GET") .. " " .. path .. " HTTP/1.1\r\nHost: t\r\n\r\n"
end


describe("http response framing", function()
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

  -- sends path then /next on one connection; -> the list of responses, data, how
  local function pipelined(path, method, n)
    local s = assert(H.connect(port))
    local list, data, how = U.exchange(s, req(path, method) .. req("/next"), n or 2, 3000,
      method == "HEAD" and { true } or nil)
    return list, data, how, s
  end

  -- the log line of a handler mistake names the app's file and line
  local function logged(name, text)
    local pattern = "request handler failed: [^\n]*app%.lua:" .. line_of(name) .. ": [^\n]*" .. text:gsub("%p", "%%%0")
    assert(p:wait_output(pattern, 3000), "no log line like " .. pattern .. " in:\n" .. p:stderr())
  end

  -- a 500 with text/plain, then /next answered on the same connection
  local function refused_then_next(path, method)
    local list, data, _, s = pipelined(path, method)
    assert.equal(2, #list, data)
    assert.equal(500, list[1].status, data)
    assert.equal("text/plain", list[1].headers["content-type"])
    assert.is_nil(list[1].headers["transfer-encoding"], data)
    assert.equal("Internal Server Error\n", list[1].body)
    assert.equal(200, list[2].status, data)
    assert.equal("ok GET /next", list[2].body)
    s:close()
    return list, data
  end

  it("answers 500 when a returned Content-Length is smaller than the body, and logs the handler's line", function()
    refused_then_next("/cl-small")
    logged("handler", "its response: Content-Length is 2 but the body has 11 bytes")
  end)

  it("answers 500 when a returned Content-Length is larger than the body", function()
    refused_then_next("/cl-big")
    logged("handler", "its response: Content-Length is 20 but the body has 5 bytes")
  end)

  it("answers 500 to a handler that sets Transfer-Encoding", function()
    refused_then_next("/te")
    logged("handler", "its response: Transfer-Encoding is set by the runtime")
    refused_then_next("/te-stream")
    logged("te-stream", "res:write: Transfer-Encoding is set by the runtime")
  end)

  it("answers 500 to a malformed Content-Length or two that differ", function()
    refused_then_next("/cl-bad")
    logged("handler", "its response: invalid Content-Length '5x'")
    refused_then_next("/cl-neg")
    refused_then_next("/cl-dup")
    logged("cl-dup", "res:finish: two different Content-Length headers (5 and 6)")
    refused_then_next("/status")
    logged("handler", "its response: status 1000 is not a number from 100 to 999")
  end)

  it("raises in res:finish at the caller's line when the body does not match", function()
    refused_then_next("/cl-finish")
    logged("cl-finish", "res:finish: Content-Length is 3 but the body has 5 bytes")
  end)

  it("sends one Content-Length for repeated equal ones, and takes a number", function()
    for _, path in ipairs({ "/cl-same", "/cl-number" }) do
      local list, data = pipelined(path)
      assert.equal(2, #list, data)
      assert.equal(200, list[1].status)
      assert.equal("hello", list[1].body)
      local n = 0
      for _, f in ipairs(list[1].fields) do
        if f[1]:lower() == "content-length" then n = n + 1 end
      end
      assert.equal(1, n, data)
      assert.equal("ok GET /next", list[2].body)
    end
  end)

  it("raises in res:write past the declared length and closes the connection", function()
    local list, data, how = pipelined("/over")
    -- the head went out with Content-Length: 5, then no byte of the 11: the connection ends
    assert.equal("eof", how, data)
    assert.not_matches("hello", data, 1, true)
    assert.not_matches("/next", data, 1, true)
    assert.equal(0, #list, data)
    logged("over", "res:write: 11 bytes written where 5 remain of the Content-Length 5")
  end)

  it("sends nothing of a chunk past the length, so a handler that catches it can still finish", function()
    local list, data = pipelined("/over-recover")
    assert.equal(2, #list, data)
    assert.equal(200, list[1].status)
    assert.equal("hello", list[1].body)
    assert.equal("ok GET /next", list[2].body)
  end)

  it("raises in res:finish when its last chunk goes past the length", function()
    local list, data, how = pipelined("/finish-over")
    assert.equal("eof", how, data)
    assert.equal(0, #list, data)
    assert.not_matches("/next", data, 1, true)
    logged("finish-over", "res:finish: 8 bytes written where 2 remain of the Content-Length 5")
  end)

  it("closes the connection after a streamed body shorter than its Content-Length", function()
    local s = assert(H.connect(port))
    s:send(req("/short") .. req("/next"))
    local data, how = s:read_all(3000)
    s:close()
    assert.equal("eof", how, data)
    assert.matches("Content%-Length: 10\r\n", data)
    assert.matches("\r\n\r\nhello$", data)
    assert.not_matches("/next", data, 1, true)
    assert(p:wait_output("a response ended 5 bytes short of its Content%-Length", 3000), p:stderr())
  end)

  it("keeps the connection after a streamed body of exactly its Content-Length", function()
    local list, data = pipelined("/exact")
    assert.equal(2, #list, data)
    assert.equal("helloworld", list[1].body)
    assert.is_nil(list[1].headers["transfer-encoding"])
    assert.equal("ok GET /next", list[2].body)
  end)

  it("lets HEAD, 304 and 204 declare a length without a body", function()
    for _, path in ipairs({ "/head", "/head-stream" }) do
      local list, data = pipelined(path, "HEAD")
      assert.equal(2, #list, data)
      assert.equal(200, list[1].status, data)
      assert.equal("1000", list[1].headers["content-length"], data)
      assert.equal("ok GET /next", list[2].body, data)
    end
    local list, data = pipelined("/304")
    assert.equal(2, #list, data)
    assert.equal(304, list[1].status, data)
    assert.equal("1000", list[1].headers["content-length"])
    assert.equal("ok GET /next", list[2].body, data)
    list, data = pipelined("/204-0")
    assert.equal(2, #list, data)
    assert.equal(204, list[1].status, data)
    assert.is_nil(list[1].headers["content-length"], data)
    assert.equal("ok GET /next", list[2].body, data)
    refused_then_next("/204-5")
    logged("handler", "its response: Content-Length 5 on a response without a body")
  end)

  it("gives the runtime's own 500 a Content-Type", function()
    refused_then_next("/raise")
  end)

  it("keeps the worker it started with", function()
    assert.equal(1, p:count("worker %d+ %(pid %d+%) started"), p:output())
    assert.equal(0, p:count("worker %d+ %(pid %d+%) exited"), p:output())
  end)
end)
