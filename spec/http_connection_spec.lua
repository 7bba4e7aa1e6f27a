-- The Connection header is the runtime's, as a response's framing is: whatever a handler puts
-- in its own Connection header, a response carries at most one, and it says what the runtime
-- does with the connection. A handler's `close` is honoured (the connection ends after the
-- response); any other value (keep-alive, a token of its own) never overrides the runtime's
-- decision to close (HTTP/1.0, a client's `Connection: close`, a drain, a body ended by the
-- close). Raw sockets: the bytes as sent.
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  local routes = {}
  routes["/ka"] = function() return 200, { Connection = "keep-alive" }, "ka" end
  routes["/ka-upper"] = function() return 200, { Connection = "Keep-Alive" }, "ka" end
  routes["/close"] = function() return 200, { Connection = "close" }, "bye" end
  routes["/close-list"] = function() return 200, { Connection = "keep-alive, Close" }, "bye" end
  routes["/other"] = function() return 200, { Connection = "x-custom" }, "other" end
  routes["/closed-word"] = function() return 200, { Connection = "closed" }, "word" end
  routes["/ka-stream"] = function(req, res)
    res:header("Connection", "keep-alive")
    res:write("str")
    res:finish("eam")
  end
  routes["/close-stream"] = function(req, res)
    res:header("Connection", "close")
    res:write("str")
    res:finish("eam")
  end
  http.create_server(function(req, res)
    local r = routes[req.path]
    if r then return r(req, res) end
    return 200, "ok " .. req.path
  end):listen()
  -- a server of its own for the drain: its handler closes it and answers once it drains
  local drained
  drained = http.create_server(function(req, res)
    drained:close()
    timer.sleep(300) -- the master has taken the listener back: the server drains
    return 200, { Connection = "keep-alive" }, "drained"
  end)
  drained:listen(tonumber(arg[1]))
  say("ready")
end
]]


local function get(path, version, extra)
  return "GET " .. path .. " HTTP/" .. (version or "1.1") .. "\r\nHost: t\r\n" .. (extra or "") .. "\r\n"
end


-- the values of every Connection header of a response, as sent
local function connection_values(r)
  local list = {}
  for _, f in ipairs(r.fields) do
    if f[1]:lower() == "connection" then
      list[#list + 1] = f[2]
    end
  end
  return list
end


describe("http Connection header", function()
  local p, port, drain_port

  lazy_setup(function()
    port, drain_port = unpack(H.free_ports(2))
    p = H.start_app(APP, { "-w", 1, "-p", port }, { args = { drain_port } })
    assert(p:wait_output("ready", 5000), p:output())
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  -- sends request (then, pipelined, a request for /next); -> responses, data, how
  local function exchange(request, n, at_port)
    local s = assert(H.connect(at_port or port))
    local list, data, how = U.exchange(s, request .. get("/next"), n or 2, 3000)
    if how == nil then
      -- n responses came: is the connection closed after them?
      local more
      more, how = s:read_all(300)
      data = data .. more
    end
    s:close()
    return list, data, how
  end

  -- the runtime decides to close: one `Connection: close`, whatever the handler said
  local function closes_with_one_header(request, body, at_port)
    local list, data, how = exchange(request, 2, at_port)
    assert.equal(1, #list, data)
    assert.equal(body, list[1].body, data)
    assert.same({ "close" }, connection_values(list[1]), data)
    assert.equal("eof", how, data)
  end

  it("a handler's keep-alive on an HTTP/1.0 request that asked for none: one Connection: close", function()
    closes_with_one_header(get("/ka", "1.0"), "ka")
    closes_with_one_header(get("/ka-upper", "1.0"), "ka")
  end)

  it("a handler's keep-alive on a request that says Connection: close: one Connection: close", function()
    closes_with_one_header(get("/ka", "1.1", "Connection: close\r\n"), "ka")
  end)

  it("a handler's keep-alive on a streamed HTTP/1.0 body (ended by the close): one Connection: close", function()
    closes_with_one_header(get("/ka-stream", "1.0", "Connection: keep-alive\r\n"), "stream")
  end)

  it("a handler's keep-alive on a draining server: one Connection: close", function()
    closes_with_one_header(get("/ka"), "drained", drain_port)
  end)

  it("a handler's close is honoured: one Connection: close, and the connection ends", function()
    closes_with_one_header(get("/close"), "bye")
    closes_with_one_header(get("/close-list"), "bye")
    closes_with_one_header(get("/close-stream"), "stream")
    closes_with_one_header(get("/close", "1.0", "Connection: keep-alive\r\n"), "bye")
    closes_with_one_header(get("/close", "1.1", "Connection: close\r\n"), "bye")
  end)

  it("a handler's keep-alive where the runtime keeps the connection: one header, the connection goes on", function()
    local list, data = exchange(get("/ka", "1.0", "Connection: keep-alive\r\n"))
    assert.equal(2, #list, data)
    assert.same({ "keep-alive" }, connection_values(list[1]), data)
    list, data = exchange(get("/ka") .. get("/ka-stream"), 3)
    assert.equal(3, #list, data)
    assert.same({}, connection_values(list[1]), data)
    assert.same({}, connection_values(list[2]), data)
    assert.equal("stream", list[2].body)
  end)

  it("any other value is not sent: the runtime's own header only", function()
    local list, data = exchange(get("/other") .. get("/closed-word"), 3)
    assert.equal(3, #list, data)
    assert.same({}, connection_values(list[1]), data)
    assert.same({}, connection_values(list[2]), data) -- "closed" is not the token close
    assert.equal("ok /next", list[3].body)
    list, data = exchange(get("/other", "1.0", "Connection: keep-alive\r\n"))
    assert.equal(2, #list, data)
    assert.same({ "keep-alive" }, connection_values(list[1]), data)
    closes_with_one_header(get("/other", "1.0"), "other")
    closes_with_one_header(get("/other", "1.1", "Connection: close\r\n"), "other")
  end)
end)
