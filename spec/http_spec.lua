-- Integration specs of the http module: the real binary, one worker, real sockets. One app
-- serves every case: a server with small limits (each create_server option overridden) and a
-- second one with the defaults.
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  local function dump(req)
    local names = {}
    for k in pairs(req.headers) do names[#names + 1] = k end
    table.sort(names)
    local out = {
      "method=" .. req.method, "url=" .. req.url, "path=" .. req.path,
      "query=" .. tostring(req.query), "version=" .. req.version,
      "remote=" .. tostring(req.remote_address),
    }
    for _, k in ipairs(names) do out[#out + 1] = "h:" .. k .. "=" .. req.headers[k] end
    return table.concat(out, "\n") .. "\n"
  end

  local routes = {}
  routes["/echo"] = function(req) return 200, dump(req) end
  routes["/body"] = function(req)
    local body, err = req:body()
    return 200, "len=" .. #body .. "\n" .. body
  end
  routes["/stream"] = function(req, res)
    res:status(200)
    res:header("Content-Type", "text/plain")
    res:write("one,")
    res:write("two,")
    res:write("")
    res:finish("three")
  end
  routes["/stream-length"] = function(req, res)
    res:header("Content-Length", "6")
    res:write("abc")
    res:finish("def")
  end
  routes["/cookies"] = function(req, res)
    res:header("Set-Cookie", { "a=1; Path=/", "b=2; HttpOnly" })
    res:header("X-One", "1")
    res:finish("cookies")
  end
  routes["/short2"] = function() return 201, "created" end
  routes["/short3"] = function() return 202, { ["X-Shortcut"] = "yes", ["Content-Type"] = "text/x-test" }, "accepted" end
  routes["/raise"] = function() error("secret-detail-" .. "42") end
  routes["/raise-later"] = function() timer.sleep(20) error("late-secret") end
  routes["/later"] = function(req, res)
    timer.after(100, function()
      res:header("X-Later", "yes")
      res:finish("later from a timer")
    end)
  end
  routes["/sleep"] = function(req, res)
    timer.sleep(tonumber(req.query) or 50)
    return 200, "slept " .. req.url
  end
  routes["/close"] = function(req, res)
    res:header("Connection", "close")
    res:finish("bye")
  end
  routes["/pid"] = function() return 200, tostring(process.pid) end
  routes["/args"] = function(req)
    local max = req.headers["x-max"]
    local args, err = req:args(tonumber(max))
    local names, out = {}, {}
    for k in pairs(args) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local v = args[k]
      if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = ("%q"):format(tostring(x)) .. (x == true and "!" or "") end
        v = "[" .. table.concat(parts, ",") .. "]"
      else
        v = ("%q"):format(tostring(v)) .. (v == true and "!" or "")
      end
      out[#out + 1] = ("%q"):format(k) .. "=" .. v
    end
    return 200, table.concat(out, " ") .. (err and (" | " .. err) or "") .. " | " .. tostring(req.query)
  end
  routes["/args-bad"] = function(req)
    local ok, err = pcall(req.args, req, -1)
    return 200, tostring(err)
  end
  routes["/status204"] = function() return 204, "" end

  local function handler(req, res)
    local r = routes[req.path]
    if r then return r(req, res) end
    return 200, "ok " .. req.method .. " " .. req.url
  end

  local small = http.create_server(handler, {
    max_header_size = 1024, max_body_size = 100, header_timeout = 300, keepalive_timeout = 600,
  })
  small:on("listening", function(a) say("listening small", a.address, a.port) end)
  small:listen()
  local defaults = http.create_server(handler)
  defaults:on("listening", function(a) say("listening defaults", a.address, a.port) end)
  defaults:listen(tonumber(process.env.DEFAULT_PORT), "127.0.0.1")
end
]]


local function req(path, extra, method)
  return (method or "GET") .. " " .. path .. " HTTP/1.1\r\nHost: t\r\n" .. (extra or "") .. "\r\n"
end


describe("http", function()
  local p, port, dport

  lazy_setup(function()
    port, dport = H.free_port(), H.free_port()
    while dport == port do dport = H.free_port() end
    p = H.start_app(APP, { "-w", 1, "-p", port }, { env = { DEFAULT_PORT = dport } })
    assert(p:wait_output("listening defaults 127.0.0.1 " .. dport, 5000), p:output())
    assert(p:wait_output("listening small 127.0.0.1 " .. port, 5000), p:output())
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  local function healthy(which)
    local r = U.once(which or port, req("/health", "Connection: close\r\n"))
    assert.is_truthy(r, "no response after bad input")
    assert.equal(200, r.status)
    assert.equal("ok GET /health", r.body)
  end

  describe("requests and responses", function()
    it("serves HTTP/1.1 with a Date header and Content-Length", function()
      local r = U.once(port, req("/x", "Connection: close\r\n"))
      assert.equal("1.1", r.version)
      assert.equal(200, r.status)
      assert.equal("OK", r.reason)
      assert.equal("ok GET /x", r.body)
      assert.equal(tostring(#"ok GET /x"), r.headers["content-length"])
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers.date)
      assert.equal("close", r.headers.connection)
    end)

    it("serves curl", function()
      local body, status = H.curl("http://127.0.0.1:" .. port .. "/curl?x=1")
      assert.equal(200, status)
      assert.equal("ok GET /curl?x=1", body)
    end)

    it("gives the handler method, url, path, query, version, lower-case headers and the peer", function()
      local r = U.once(port, "POST /echo?a=1&b=%20 HTTP/1.1\r\nHost: example\r\nX-Multi: one\r\n"
        .. "X-MULTI: two\r\nx-multi:  three  \r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      assert.equal(200, r.status)
      local b = r.body
      assert.matches("method=POST\n", b, 1, true)
      assert.matches("url=/echo?a=1&b=%20\n", b, 1, true)
      assert.matches("path=/echo\n", b, 1, true)
      assert.matches("query=a=1&b=%20\n", b, 1, true)
      assert.matches("version=1.1\n", b, 1, true)
      assert.matches("remote=127.0.0.1\n", b, 1, true)
      assert.matches("h:host=example\n", b, 1, true)
      assert.matches("h:x-multi=one, two, three\n", b, 1, true)
      assert.matches("h:content-type=text/plain\n", b, 1, true)
      assert.not_matches("h:X-", b, 1, true)
    end)

    it("keeps header names longer than 255 bytes whole, so two of them never merge", function()
      local stem = ("X-Long"):rep(50) -- 300 bytes
      local r = U.once(dport, req("/echo", stem .. "-One: 1\r\n" .. stem .. "-Two: 2\r\nConnection: close\r\n"))
      assert.equal(200, r.status)
      assert.matches("h:" .. stem:lower() .. "-one=1\n", r.body, 1, true)
      assert.matches("h:" .. stem:lower() .. "-two=2\n", r.body, 1, true)
      assert.not_matches("1, 2", r.body, 1, true)
    end)

    it("parses the query with req:args() as ngx.req.get_uri_args does, and keeps req.query", function()
      local function args(query, extra)
        local r = U.once(dport, req("/args" .. query, (extra or "") .. "Connection: close\r\n"))
        assert.equal(200, r.status)
        return r.body
      end
      assert.equal(' | nil', args(""))
      assert.equal(' | ', args("?"))
      assert.equal('"a"="1" "b"="2" | a=1&b=2', args("?a=1&b=2"))
      -- decoding: %XX and "+" in names and values; "%2B" is a plus
      assert.equal('"a b"="c d+e/f" | a+b=c%20d%2Be%2ff', args("?a+b=c%20d%2Be%2ff"))
      -- a repeated name: its values in order, a name alone is true, "name=" is ""
      assert.equal('"a"=["1","2",""] "f"="true"! "g"="" | a=1&a=2&a=&f&g=', args("?a=1&a=2&a=&f&g="))
      assert.equal('"x"=["true"!,"1"] | x&x=1', args("?x&x=1"))
      -- empty pairs and empty names are skipped; only the first "=" splits
      assert.equal('"a"="1=2" "b"="3" | &&a=1=2&=z&&b=3&', args("?&&a=1=2&=z&&b=3&"))
      -- malformed escapes stay as they are
      assert.equal('"k"="%zz%4g%%41%4" | k=%zz%4g%%41%4', args("?k=%zz%4g%%41%4"))
      assert.equal('"%"="%" | %=%', args("?%=%"))
    end)

    it("reads at most 100 query arguments by default, or max, and says when it cut", function()
      local parts = {}
      for i = 1, 120 do parts[i] = "k" .. i .. "=" .. i end
      local q = "?" .. table.concat(parts, "&")
      local r = U.once(dport, req("/args" .. q, "Connection: close\r\n"))
      assert.equal(100, select(2, r.body:gsub('"k%d+"=', "")))
      assert.matches(" | truncated | ", r.body, 1, true)
      assert.matches('"k100"="100"', r.body, 1, true)
      assert.not_matches('"k101"', r.body, 1, true)
      r = U.once(dport, req("/args" .. q, "X-Max: 3\r\nConnection: close\r\n"))
      assert.equal('"k1"="1" "k2"="2" "k3"="3" | truncated', r.body:match("^(.-) | k1="))
      r = U.once(dport, req("/args" .. q, "X-Max: 0\r\nConnection: close\r\n"))
      assert.equal(120, select(2, r.body:gsub('"k%d+"=', "")))
      assert.not_matches("truncated", r.body, 1, true)
      r = U.once(dport, req("/args?a=1&b=2", "X-Max: 2\r\nConnection: close\r\n"))
      assert.equal('"a"="1" "b"="2" | a=1&b=2', r.body)
      assert.matches("req:args: max must be a whole number >= 0", U.once(port, req("/args-bad", "Connection: close\r\n")).body, 1, true)
    end)

    it("has no query without '?' and an empty one with a bare '?'", function()
      assert.matches("query=nil\n", U.once(port, req("/echo", "Connection: close\r\n")).body, 1, true)
      assert.matches("query=\n", U.once(port, req("/echo?", "Connection: close\r\n")).body, 1, true)
    end)

    it("serves HTTP/1.0 and closes after it by default", function()
      local s = assert(H.connect(port))
      local list, data, how = U.exchange(s, "GET /ten HTTP/1.0\r\n\r\n", 1)
      assert.equal(1, #list)
      assert.equal("1.0", list[1].version)
      assert.equal("ok GET /ten", list[1].body)
      assert.is_true(U.closed_within(s, 2000))
      s:close()
    end)

    it("keeps an HTTP/1.0 connection open with Connection: keep-alive", function()
      local s = assert(H.connect(port))
      for i = 1, 3 do
        local list = U.exchange(s, "GET /k" .. i .. " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1)
        assert.equal(1, #list)
        assert.equal("ok GET /k" .. i, list[1].body)
        assert.equal("keep-alive", list[1].headers.connection:lower())
      end
      assert.matches("version=1.0", U.exchange(s, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1)[1].body, 1, true)
      -- without keep-alive the last one closes
      local list = U.exchange(s, "GET /last HTTP/1.0\r\n\r\n", 1)
      assert.equal("ok GET /last", list[1].body)
      assert.is_true(U.closed_within(s, 2000))
      s:close()
    end)

    it("keeps HTTP/1.1 connections alive by default", function()
      local s = assert(H.connect(port))
      for i = 1, 5 do
        local list, _, how = U.exchange(s, req("/n" .. i), 1)
        assert.equal(1, #list)
        assert.equal("ok GET /n" .. i, list[1].body)
        assert.is_nil(list[1].headers.connection)
      end
      s:close()
    end)

    it("answers pipelined requests, sent in one write, in order", function()
      local s = assert(H.connect(port))
      local all = {}
      for i = 1, 20 do
        -- some answer later than those behind them would
        all[#all + 1] = i % 5 == 0 and req("/sleep?" .. (60 - i)) or req("/p" .. i)
      end
      all[#all + 1] = "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
      all[#all + 1] = "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
      all[#all + 1] = req("/last", "Connection: close\r\n")
      local list, data, how = U.exchange(s, table.concat(all), 23, 5000)
      assert.equal(23, #list, data)
      for i = 1, 20 do
        if i % 5 == 0 then
          assert.equal("slept /sleep?" .. (60 - i), list[i].body)
        else
          assert.equal("ok GET /p" .. i, list[i].body)
        end
      end
      assert.equal("len=5\nhello", list[21].body)
      assert.equal("len=5\nabcde", list[22].body)
      assert.equal("ok GET /last", list[23].body)
      assert.is_true(U.closed_within(s, 2000))
      s:close()
    end)

    it("answers every pipelined request of a client that half-closed after sending them", function()
      local s = assert(H.connect(port))
      s:send(req("/h1") .. req("/sleep?50") .. "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok" .. req("/later") .. req("/h5"))
      s:shutdown_write()
      local data, how = s:read_all(3000)
      s:close()
      assert.equal("eof", how)
      local list = U.finals((U.parse(data)))
      assert.equal(5, #list, data)
      assert.equal("ok GET /h1", list[1].body)
      assert.equal("slept /sleep?50", list[2].body)
      assert.equal("len=2\nok", list[3].body)
      assert.equal("later from a timer", list[4].body)
      assert.equal("ok GET /h5", list[5].body)
    end)

    it("answers a chunked body sent one byte at a time", function()
      local s = assert(H.connect(port))
      local text = "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "3;a=\"x y\"\r\nabc\r\n1\r\nd\r\n0\r\nX-T: 1\r\n\r\n" .. req("/next")
      for i = 1, #text do
        s:send(text:sub(i, i))
      end
      local list = U.exchange(s, nil, 2)
      assert.equal(2, #list)
      assert.equal("len=4\nabcd", list[1].body)
      assert.equal("ok GET /next", list[2].body)
      s:close()
    end)

    it("answers pipelined requests that arrive split across writes", function()
      local s = assert(H.connect(port))
      local text = req("/a") .. "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz" .. req("/b")
      for i = 1, #text, 7 do
        s:send(text:sub(i, i + 6))
        H.sleep(1)
      end
      local list = U.exchange(s, nil, 3)
      assert.equal(3, #list)
      assert.equal("ok GET /a", list[1].body)
      assert.equal("len=3\nxyz", list[2].body)
      assert.equal("ok GET /b", list[3].body)
      s:close()
    end)

    it("reads Content-Length and chunked request bodies with req:body()", function()
      local r = U.once(port, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world")
      assert.equal("len=11\nhello world", r.body)
      r = U.once(port, "PUT /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .. "5\r\nhello\r\n1;ext=1\r\n \r\n0005\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
      assert.equal("len=11\nhello world", r.body)
      r = U.once(port, "GET /body HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
      assert.equal("len=0\n", r.body)
      -- a body that arrives well after its head
      local s = assert(H.connect(port))
      s:send("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab")
      H.sleep(100)
      s:send("cd")
      H.sleep(100)
      local list = U.exchange(s, "ef", 1)
      assert.equal("len=6\nabcdef", list[1].body)
      s:close()
    end)

    it("sends chunked responses from res:write, and Content-Length ones when the handler set it", function()
      local s = assert(H.connect(port))
      local list = U.exchange(s, req("/stream"), 1)
      local r = list[1]
      assert.equal(200, r.status)
      assert.is_true(r.chunked)
      assert.equal("chunked", r.headers["transfer-encoding"])
      assert.is_nil(r.headers["content-length"])
      assert.equal("text/plain", r.headers["content-type"])
      assert.equal("one,two,three", r.body)
      assert.same({ 4, 4, 5 }, r.sizes)
      assert.matches("\r\n0\r\n\r\n$", r.raw)
      -- the connection goes on after a chunked response
      list = U.exchange(s, req("/stream-length"), 1)
      assert.is_nil(list[1].chunked)
      assert.equal("6", list[1].headers["content-length"])
      assert.equal("abcdef", list[1].body)
      assert.equal("ok GET /after", U.exchange(s, req("/after"), 1)[1].body)
      s:close()
    end)

    it("streams to an HTTP/1.0 client without chunks, ending the body with the close", function()
      local r, data, how = U.once(port, "GET /stream HTTP/1.0\r\n\r\n")
      assert.equal("eof", how)
      assert.is_nil(r.headers["transfer-encoding"])
      assert.equal("one,two,three", r.body)
    end)

    it("sends a header once per element of a table value (Set-Cookie twice)", function()
      local r = U.once(port, req("/cookies", "Connection: close\r\n"))
      local cookies = {}
      for _, f in ipairs(r.fields) do
        if f[1]:lower() == "set-cookie" then cookies[#cookies + 1] = f[2] end
      end
      assert.same({ "a=1; Path=/", "b=2; HttpOnly" }, cookies)
      assert.equal("1", r.headers["x-one"])
      assert.equal("cookies", r.body)
    end)

    it("answers HEAD with the headers of GET and no body", function()
      local s = assert(H.connect(port))
      local list, data = U.exchange(s, req("/same", nil, "HEAD") .. req("/same"), 2, nil, { true })
      assert.equal(2, #list)
      assert.equal(200, list[1].status)
      assert.equal(tostring(#"ok HEAD /same"), list[1].headers["content-length"])
      assert.equal("", list[1].body)
      assert.equal("ok GET /same", list[2].body)
      -- a streamed HEAD response: headers, no chunks
      list, data = U.exchange(s, req("/stream", nil, "HEAD") .. req("/after-head"), 2, nil, { true })
      assert.equal(2, #list, data)
      assert.equal("", list[1].body)
      assert.equal("ok GET /after-head", list[2].body)
      s:close()
    end)

    it("sends no body with 204", function()
      local s = assert(H.connect(port))
      local list = U.exchange(s, req("/status204") .. req("/after"), 2)
      assert.equal(204, list[1].status)
      assert.is_nil(list[1].headers["content-length"])
      assert.equal("ok GET /after", list[2].body)
      s:close()
    end)

    it("honours Connection: close from the client", function()
      local s = assert(H.connect(port))
      local list = U.exchange(s, req("/c", "Connection: close\r\n") .. req("/never"), 1)
      assert.equal(1, #list)
      assert.equal("close", list[1].headers.connection)
      local rest, how = s:read_all(2000)
      assert.equal("eof", how)
      assert.equal("", rest)
      s:close()
      -- a token in a list counts too
      local r, data, how2 = U.once(port, req("/c2", "Connection: Keep-Alive, Close\r\n"))
      assert.equal("eof", how2)
      assert.equal("close", r.headers.connection)
    end)

    it("honours Connection: close from the handler", function()
      local s = assert(H.connect(port))
      local list = U.exchange(s, req("/close") .. req("/never"), 1)
      assert.equal(1, #list)
      assert.equal("bye", list[1].body)
      assert.equal("close", list[1].headers.connection)
      assert.is_true(U.closed_within(s, 2000))
      s:close()
    end)

    it("takes the return status, body and return status, headers, body shortcuts", function()
      local r = U.once(port, req("/short2", "Connection: close\r\n"))
      assert.equal(201, r.status)
      assert.equal("Created", r.reason)
      assert.equal("created", r.body)
      r = U.once(port, req("/short3", "Connection: close\r\n"))
      assert.equal(202, r.status)
      assert.equal("yes", r.headers["x-shortcut"])
      assert.equal("text/x-test", r.headers["content-type"])
      assert.equal("accepted", r.body)
    end)

    it("sends 100 Continue to Expect: 100-continue, then reads the body", function()
      local s = assert(H.connect(port))
      s:send("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      local first = s:read_until(function(d) return d:find("\r\n\r\n", 1, true) end, 2000)
      assert.matches("^HTTP/1.1 100 Continue\r\n\r\n$", first)
      local list = U.exchange(s, "data", 1)
      assert.equal(200, list[1].status)
      assert.equal("len=4\ndata", list[1].body)
      s:close()
    end)

    it("finishes a response later, from a timer", function()
      local s = assert(H.connect(port))
      local t0 = H.now()
      local list = U.exchange(s, req("/later") .. req("/after-later"), 2)
      assert.is_true(H.now() - t0 >= 80)
      assert.equal("later from a timer", list[1].body)
      assert.equal("yes", list[1].headers["x-later"])
      assert.equal("ok GET /after-later", list[2].body)
      s:close()
    end)

    it("answers 500 without the error text when a handler raises, logs the traceback and keeps serving", function()
      local pid = U.once(port, req("/pid", "Connection: close\r\n")).body
      local s = assert(H.connect(port))
      local list = U.exchange(s, req("/raise") .. req("/after-raise"), 2)
      assert.equal(500, list[1].status)
      assert.not_matches("secret", list[1].raw, 1, true)
      assert.not_matches("traceback", list[1].raw, 1, true)
      assert.equal("ok GET /after-raise", list[2].body)
      s:close()
      assert(p:wait_output("secret%-detail%-42.-stack traceback", 3000), p:stderr())
      assert.matches("secret-detail-42", p:stderr(), 1, true)
      assert.matches("stack traceback", p:stderr(), 1, true)
      assert.equal(pid, U.once(port, req("/pid", "Connection: close\r\n")).body)
      -- also when it raises after waiting
      local r = U.once(port, req("/raise-later", "Connection: close\r\n"))
      assert.equal(500, r.status)
      assert.not_matches("late-secret", r.raw, 1, true)
      assert(p:wait_output("late%-secret.-stack traceback", 3000), p:stderr())
      assert.equal(pid, U.once(port, req("/pid", "Connection: close\r\n")).body)
    end)

    it("serves the README's hello example", function()
      local hport = H.free_port()
      local hp = H.start(H.root .. "/examples/hello/app.lua", { "-w", 2, "-p", hport }, { dir = H.tmpdir() })
      local body, status = H.wait_for(function()
        local b, st = H.curl("http://127.0.0.1:" .. hport .. "/")
        return st == 200 and b
      end, 5000)
      assert.equal("Hello, World!\n", body, hp:output())
      local r = U.once(hport, req("/", "Connection: close\r\n"))
      assert.equal("text/plain", r.headers["content-type"])
      assert.equal(0, (hp:stop()))
    end)
  end)

  describe("limits and bad input", function()
    it("answers a malformed request with 400 and closes", function()
      for _, bad in ipairs({
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      }) do
        local r, data, how = U.once(port, bad)
        assert.is_truthy(r, ("%q"):format(bad))
        assert.equal(400, r.status, bad)
        assert.equal("close", r.headers.connection)
        assert.equal("eof", how)
        healthy()
      end
    end)

    it("answers 400 and closes after earlier good requests on the connection", function()
      local s = assert(H.connect(port))
      local list, data, how = U.exchange(s, req("/good") .. "BAD REQUEST LINE\r\n\r\n" .. req("/never"), 2)
      assert.equal(2, #list, data)
      assert.equal("ok GET /good", list[1].body)
      assert.equal(400, list[2].status)
      assert.is_true(U.closed_within(s, 2000))
      s:close()
      healthy()
    end)

    it("answers 431 to headers over max_header_size", function()
      local big = "X-Big: " .. string.rep("a", 1100) .. "\r\n"
      local r, data, how = U.once(port, req("/", big))
      assert.equal(431, r.status)
      assert.equal("eof", how)
      healthy()
      -- an unfinished head that is already over the limit is refused before it ends
      local s = assert(H.connect(port))
      s:send("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " .. string.rep("b", 2000))
      local list = U.exchange(s, nil, 1)
      assert.equal(431, list[1].status)
      assert.is_true(U.closed_within(s, 2000))
      s:close()
      healthy()
      -- a long URL counts too
      r = U.once(port, req("/" .. string.rep("u", 1500)))
      assert.equal(431, r.status)
      healthy()
      -- the default limit (16 KB) lets the same head through
      r = U.once(dport, req("/", big .. "Connection: close\r\n"))
      assert.equal(200, r.status)
      r = U.once(dport, req("/", "X-Big: " .. string.rep("a", 17000) .. "\r\n"))
      assert.equal(431, r.status)
      healthy(dport)
    end)

    it("answers 413 to a body over max_body_size, by Content-Length and by chunks", function()
      local r, data, how = U.once(port, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n" .. string.rep("x", 101))
      assert.equal(413, r.status)
      assert.equal("eof", how)
      healthy()
      -- refused from the head alone, without waiting for the body
      local s = assert(H.connect(port))
      local list = U.exchange(s, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", 1)
      assert.equal(413, list[1].status)
      s:close()
      -- exactly at the limit is fine
      r = U.once(port, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" .. string.rep("x", 100))
      assert.equal(200, r.status)
      assert.equal("len=100\n" .. string.rep("x", 100), r.body)
      -- chunked: 60 + 60 bytes
      r, data, how = U.once(port, "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n"
        .. string.rep("y", 60) .. "\r\n3c\r\n" .. string.rep("y", 60) .. "\r\n0\r\n\r\n")
      assert.equal(413, r.status)
      assert.equal("eof", how)
      healthy()
      -- Expect: 100-continue with a body too large: no 100, straight 413
      r = U.once(port, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n")
      assert.equal(413, r.status)
      assert.not_matches("100 Continue", data or "", 1, true)
      -- the default limit (1 MB)
      local mb = 1048576
      r = U.once(dport, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: " .. (mb + 1) .. "\r\n\r\n")
      assert.equal(413, r.status)
      r = U.once(dport, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: " .. mb .. "\r\nConnection: close\r\n\r\n"
        .. string.rep("z", mb), 5000)
      assert.equal(200, r.status)
      assert.equal("len=" .. mb .. "\n", r.body:sub(1, #("len=" .. mb .. "\n")))
      healthy(dport)
    end)

    it("answers 408 and closes when a request stalls before its head ends (header_timeout)", function()
      local s = assert(H.connect(port))
      local t0 = H.now()
      s:send("GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
      local data, how = s:read_all(3000)
      local took = H.now() - t0
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 408 ", data)
      assert.is_true(took >= 250 and took < 2000, "took " .. took)
      s:close()
      healthy()
      -- also on a kept-alive connection, for its second request
      s = assert(H.connect(port))
      assert.equal(200, U.exchange(s, req("/first"), 1)[1].status)
      s:send("GET /second HTTP/1.1\r\n")
      data, how = s:read_all(3000)
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 408 ", data)
      s:close()
      healthy()
    end)

    it("answers 408 and closes when a request body stalls", function()
      local s = assert(H.connect(port))
      local t0 = H.now()
      s:send("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\nonly part")
      local data, how = s:read_all(3000)
      local took = H.now() - t0
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 408 ", data)
      assert.is_true(took >= 250 and took < 2000, "took " .. took)
      s:close()
      healthy()
    end)

    it("closes an idle keep-alive connection after keepalive_timeout", function()
      local s = assert(H.connect(port))
      assert.equal(200, U.exchange(s, req("/idle"), 1)[1].status)
      local t0 = H.now()
      local rest, how = s:read_all(3000)
      local took = H.now() - t0
      assert.equal("eof", how)
      assert.equal("", rest)
      assert.is_true(took >= 500 and took < 2000, "took " .. took)
      s:close()
      -- a connection that never sends anything is closed too
      s = assert(H.connect(port))
      assert.is_true(U.closed_within(s, 2000))
      s:close()
      healthy()
    end)

    it("keeps a connection that is busy across the keep-alive timeout", function()
      local s = assert(H.connect(port))
      for i = 1, 4 do
        assert.equal(200, U.exchange(s, req("/busy" .. i), 1)[1].status)
        H.sleep(250)
      end
      s:close()
    end)

    it("survives clients that vanish mid-request and mid-response", function()
      for _, text in ipairs({
        "GET / HTTP/1.1\r\nHost",
        "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        req("/sleep?100"),
        req("/later"),
        string.rep(req("/stream"), 50),
      }) do
        local s = assert(H.connect(port))
        s:send(text)
        s:close()
      end
      H.sleep(200)
      healthy()
    end)

    it("survives a storm of mixed bad input", function()
      local bad = {
        "\0\0\0\0\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/9.9\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        string.rep("A", 5000), "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        "\r\n\r\n\r\n", "GET / HTTP/1.1\rHost: t\r\n\r\n",
      }
      for round = 1, 3 do
        for _, b in ipairs(bad) do
          local r = U.once(port, b, 1500)
          if r then
            assert.is_true(r.status >= 400, b)
          end
        end
      end
      healthy()
      healthy(dport)
    end)
  end)

  describe("options", function()
    it("refuses unknown or invalid create_server options", function()
      local p2 = H.start_app([[
        local http = require("luacluster.http")
        for _, opts in ipairs({ { max_header_sise = 1 }, { max_body_size = -1 }, { header_timeout = "1" }, 5,
            { keepalive_timeout = 0 / 0 } }) do
          local ok, err = pcall(http.create_server, function() end, opts)
          say(tostring(ok), err)
        end
        local ok, err = pcall(http.create_server, "nope")
        say(tostring(ok), err)
        process.exit(0)
      ]], { "-w", 0 })
      assert.equal(0, (p2:wait(5000)))
      local out = p2:output()
      assert.matches("false [^\n]*unknown option 'max_header_sise'", out)
      assert.matches("false [^\n]*max_body_size must be a number", out)
      assert.matches("false [^\n]*header_timeout must be a number", out)
      assert.matches("false [^\n]*keepalive_timeout must be a number", out)
      assert.matches("false [^\n]*opts must be a table", out)
      assert.matches("false [^\n]*handler must be a function", out)
    end)

    it("takes math.huge as no limit for sizes and timeouts", function()
      local hport = H.free_port()
      local p2 = H.start_app([[
        local http = require("luacluster.http")
        if cluster.is_worker then
          local huge = math.huge
          http.create_server(function(req) return 200, "got " .. #req:body() .. " " .. #req.headers["x-big"] end, {
            max_header_size = huge, max_body_size = huge, header_timeout = huge, keepalive_timeout = huge,
            send_timeout = huge, max_connections = huge,
          }):listen()
          say("ready")
        end
      ]], { "-w", 1, "-p", hport })
      assert(p2:wait_output("ready", 5000), p2:output())
      local body = ("b"):rep(2 * 1048576)
      local r = U.once(hport, req("/", "X-Big: " .. ("h"):rep(40000) .. "\r\nContent-Length: " .. #body
        .. "\r\nConnection: close\r\n") .. body, 10000)
      p2:stop()
      assert.is_truthy(r, p2:output())
      assert.equal(200, r.status)
      assert.equal("got " .. #body .. " 40000", r.body)
    end)
  end)
end)
