-- http.request against real upstreams: Debian's nginx (Content-Length, chunked from
-- lua-nginx-module's ngx.flush, HEAD, 204, 304, keep-alive reuse seen in nginx's $connection,
-- a slow answer) and the scripted raw server spec/http_client_raw.py (close-delimited bodies,
-- 1xx, and every bad answer: garbage, closes mid-head and mid-body, conflicting framing, an
-- invalid chunk, stalls). Each case runs inside a handler of a real luacluster worker, and the
-- spec asks for it over HTTP; the answer is the case's result as one line.
local H = require("helper")
local U = require("http_client_util")

local APP = [==[
local http = require("luacluster.http")
local NGX = "http://127.0.0.1:%d"
local RAW = "http://127.0.0.1:%d"
local CLOSED = "http://127.0.0.1:%d"

local function show(res, err)
  if not res then
    return "err " .. tostring(err)
  end
  return res.status .. " " .. (res.headers["x-conn"] or "-") .. " " .. res.body
end

local function get(url, opts)
  return show(http.request(url, opts))
end

local KA = { keepalive = true }

-- the X-Conn (raw) or $connection (nginx) of a keep-alive request
local function conn_of(url)
  local res, err = http.request(url, KA)
  if not res then
    return "err " .. tostring(err)
  end
  return res.headers["x-conn"] or res.body
end

local cases = {
  cl = function() return get(NGX .. "/cl") end,
  cl_headers = function()
    local res = assert(http.request(NGX .. "/cl"))
    return res.headers["content-length"] .. " " .. res.headers["content-type"] .. " " .. res.headers.server:match("^nginx")
  end,
  chunked = function()
    local res, err = http.request(NGX .. "/chunked")
    return show(res, err) .. " " .. (res and res.headers["transfer-encoding"] or "")
  end,
  head = function()
    local res, err = http.request(NGX .. "/cl", { method = "HEAD" })
    return show(res, err) .. "|" .. (res and res.headers["content-length"] or "")
  end,
  s204 = function() return get(NGX .. "/204") end,
  s304 = function() return get(NGX .. "/304") end,
  post = function()
    return get(NGX .. "/echo", { method = "POST", body = "abc", headers = { ["X-Test"] = "v" } })
  end,
  reuse = function()
    local a, b = conn_of(NGX .. "/conn"), conn_of(NGX .. "/conn")
    local c = http.request(NGX .. "/conn").body -- no keepalive: a connection of its own
    return (a == b and "same" or "different " .. a .. " " .. b) .. " " .. (c ~= a and "fresh" or "reused " .. c)
  end,
  big_cl = function() return get(NGX .. "/big", { max_body_size = 1000 }) end,
  big_chunked = function() return get(NGX .. "/bigchunked", { max_body_size = 1000 }) end,
  big_ok = function() return #http.request(NGX .. "/big", { max_body_size = 2000 }).body end,
  slow = function() return get(NGX .. "/slow", { timeout = 10000 }) end,
  slow_timeout = function() return get(NGX .. "/slow", { timeout = 100 }) end,

  garbage = function() return get(RAW .. "/garbage") end,
  names = function()
    local h = http.request(RAW .. "/names").headers
    local name = "x-" .. ("ab"):rep(31)
    return table.concat({ tostring(h[name]), tostring(h[name .. "c"]), tostring(h["x-rep"]) }, "|")
  end,
  switch = function() return get(RAW .. "/switch") end,
  close_mid_head = function() return get(RAW .. "/close-mid-head") end,
  close_mid_body = function() return get(RAW .. "/close-mid-body") end,
  close_mid_chunk = function() return get(RAW .. "/close-mid-chunk") end,
  conflict_cl = function() return get(RAW .. "/conflict-cl") end,
  cl_and_te = function() return get(RAW .. "/cl-and-te") end,
  bad_chunk = function() return get(RAW .. "/bad-chunk") end,
  raw_chunked = function() return get(RAW .. "/chunked") end,
  http10 = function() return get(RAW .. "/http10") end,
  close_delimited = function() return get(RAW .. "/close-delimited-11") end,
  big_close = function()
    local res, err = http.request(RAW .. "/big-close", { max_body_size = 1048576 })
    return res and ("a body of " .. #res.body .. " bytes") or ("err " .. err)
  end,
  interim = function() return get(RAW .. "/interim") end,
  method = function() return get(RAW .. "/method", { method = "PUT", body = "data" }) end,
  request_head = function()
    local a = http.request(RAW .. "/head?q=1#frag", { headers = { ["X-Multi"] = { "a", "b" }, ["X-N"] = 5 } }).body
    local b = http.request(RAW .. "/head", { method = "POST", keepalive = true, headers = { host = "example.test" } }).body
    return a .. "|" .. b
  end,
  plain_head = function() -- a GET with no headers and no body: built in one piece; the URL then cached
    local a = http.request(RAW .. "/head").body
    local b = http.request(RAW .. "/head", { keepalive = true }).body
    local c = http.request(RAW .. "/head", { keepalive = true, timeout = 5000 }).body
    return a .. "|" .. b .. "|" .. c
  end,
  stall = function()
    local t0 = timer.now()
    return get(RAW .. "/stall", { timeout = 300 }) .. " " .. (timer.now() - t0 < 3000 and "soon" or "late")
  end,
  stall_send = function()
    local t0 = timer.now()
    local big = string.rep("b", 32 * 1048576)
    return get(RAW .. "/noread", { method = "POST", body = big, timeout = 500 }) .. " "
      .. (timer.now() - t0 < 5000 and "soon" or "late")
  end,
  stall_body = function() return get(RAW .. "/stall-body", { timeout = 300 }) end,
  refused = function() return get(CLOSED .. "/") end,
  -- the parsed-URL cache keeps no long URL: 200 distinct 64 KiB URLs (a proxy passing its
  -- clients' paths on) leave no 12 MiB behind -> the KiB still held after a full collection
  long_urls = function()
    local long = string.rep("a", 65536)
    local res, err = http.request(CLOSED .. "/" .. long .. "0") -- (the code a request runs, loaded)
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    for i = 1, 200 do
      res, err = http.request(CLOSED .. "/" .. long .. i)
    end
    long = nil
    collectgarbage()
    collectgarbage()
    return math.floor(collectgarbage("count") - before) .. " " .. tostring(res == nil and err:match("refused"))
  end,
  unresolvable = function() return get("http://no-such-host.invalid/") end,
  https = function() return get("https://127.0.0.1:1/") end,
  bad_url = function() return get("ftp://example.com/") .. "|" .. get("no url") end,
  mistakes = function()
    local r = {}
    for _, args in ipairs({ { 42 }, { RAW .. "/ok", { method = 1 } }, { RAW .. "/ok", { timeout = "x" } },
      { RAW .. "/ok", { headers = { ["Bad Name"] = "x" } } }, { RAW .. "/ok", { headers = { A = "a\r\nB: b" } } },
      { RAW .. "/ok", { headers = { ["Content-Length"] = "1" } } }, { RAW .. "/ok", { timout = 500 } } }) do
      r[#r + 1] = tostring((pcall(http.request, args[1], args[2])))
    end
    -- raised at the caller's line
    local _, e1 = pcall(function() local res = http.request(RAW .. "/ok", { timeout = "x" }) return res end)
    local _, e2 = pcall(function() local res = http.request(RAW .. "/ok", { headers = { ["Bad Name"] = "x" } }) return res end)
    local _, e3 = pcall(function() local res = http.request(RAW .. "/ok", { timout = 500 }) return res end)
    -- times past what a timer takes: at the caller, before any byte goes (not from net.connect,
    -- nor after the whole answer from set_keepalive)
    local _, e4 = pcall(function() local res = http.request(RAW .. "/ok", { timeout = math.huge }) return res end)
    local _, e5 = pcall(function()
      local res = http.request(RAW .. "/ok", { keepalive = true, keepalive_timeout = 1e13 }) return res
    end)
    return table.concat(r, " ") .. "|" .. e1 .. "|" .. e2 .. "|" .. e3 .. "|" .. tostring(e4) .. "|" .. tostring(e5)
  end,

  -- the pool: a connection goes back only after a complete, correctly framed answer
  pooled_after_ok = function()
    local a, b = conn_of(RAW .. "/ok"), conn_of(RAW .. "/ok")
    return a == b and "same" or "different"
  end,
  pooled_after_chunked_and_interim = function()
    local a = conn_of(RAW .. "/chunked")
    local b = conn_of(RAW .. "/interim")
    local c = conn_of(RAW .. "/ok")
    return (a == b and b == c) and "same" or ("different " .. a .. " " .. b .. " " .. c)
  end,
  not_pooled_after_bad_chunk = function()
    local a = conn_of(RAW .. "/ok")
    local res, err = http.request(RAW .. "/bad-chunk", KA)
    local b = conn_of(RAW .. "/ok")
    return tostring(res) .. " " .. err .. " " .. (a ~= b and "fresh" or "reused")
  end,
  not_pooled_after_conflict = function()
    local a = conn_of(RAW .. "/ok")
    local res = http.request(RAW .. "/conflict-cl", KA)
    local b = conn_of(RAW .. "/ok")
    return tostring(res) .. " " .. (a ~= b and "fresh" or "reused")
  end,
  not_pooled_after_extra_bytes = function()
    local a = conn_of(RAW .. "/ok")
    local res = assert(http.request(RAW .. "/extra", KA))
    local b = conn_of(RAW .. "/ok")
    return res.body .. " " .. (res.headers["x-conn"] == a and "on-a" or "not-on-a") .. " " .. (a ~= b and "fresh" or "reused")
  end,
  not_pooled_after_timeout = function()
    local a = conn_of(RAW .. "/ok")
    local _, err = http.request(RAW .. "/stall-body", { keepalive = true, timeout = 200 })
    local b = conn_of(RAW .. "/ok")
    return err .. " " .. (a ~= b and "fresh" or "reused")
  end,
  -- the server closes the pooled connection as the next request arrives: a GET goes again on
  -- a new connection, a POST (not idempotent) does not
  retried_get = function()
    local a = conn_of(RAW .. "/ok-then-drop")
    local b = conn_of(RAW .. "/ok")
    return (a ~= b and not b:find("^err")) and "fresh" or ("bad " .. a .. " " .. b)
  end,
  unretried_post = function()
    conn_of(RAW .. "/ok-then-drop")
    return get(RAW .. "/method", { method = "POST", body = "x", keepalive = true })
  end,
  server_closed_pooled = function()
    local a = conn_of(RAW .. "/ok-then-close")
    timer.sleep(100)
    local b = conn_of(RAW .. "/ok")
    return (a ~= b and not b:find("^err")) and "fresh" or ("bad " .. a .. " " .. b)
  end,
}

if cluster.is_worker then
  http.create_server(function(req)
    local f = cases[req.path:sub(2)]
    if not f then
      return 404, "no such case"
    end
    return 200, f()
  end):listen()
  say("ready")
end
]==]

local have = U.have_nginx()

;(have and describe or pending)("http.request", function()
  local nginx, raw, app, port

  setup(function()
    nginx = U.nginx()
    raw = U.raw()
    port = H.free_port()
    local closed = H.free_port()
    app = H.start_app(string.format(APP, nginx.port, raw.port, closed), { "-w", "1", "-p", port })
    assert(app:wait_output("ready", 10000, true), app:output())
  end)

  teardown(function()
    if app then app:stop() end
    if nginx then nginx:stop() end
    if raw then raw:stop() end
  end)

  local function case(name)
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/" .. name, "-m 20")
    assert.equal(200, status, body .. "\n" .. app:output())
    return body
  end

  describe("against nginx", function()
    it("reads a Content-Length body and its headers", function()
      assert.equal("200 - hello", case("cl"))
      assert.equal("5 text/plain nginx", case("cl_headers"))
    end)

    it("reads a chunked body written in several flushes", function()
      assert.equal("200 - one,two,three chunked", case("chunked"))
    end)

    it("reads no body after HEAD, 204 and 304", function()
      assert.equal("200 - |5", case("head"))
      assert.equal("204 - ", case("s204"))
      assert.equal("304 - ", case("s304"))
    end)

    it("sends a method, headers and a body", function()
      assert.equal("200 - POST v abc", case("post"))
    end)

    it("reuses a keep-alive connection: nginx sees one connection for two requests", function()
      assert.equal("same fresh", case("reuse"))
    end)

    it("refuses a body over max_body_size, by Content-Length and by chunks", function()
      assert.equal("err body larger than max_body_size (1000 bytes): Content-Length 2000", case("big_cl"))
      assert.equal("err body larger than max_body_size (1000 bytes)", case("big_chunked"))
      assert.equal("2000", case("big_ok"))
    end)

    it("waits for a slow upstream, and times the whole exchange out", function()
      assert.equal("200 - slow", case("slow"))
      assert.equal("err timeout", case("slow_timeout"))
    end)

    it("never blocks the loop: 50 concurrent requests to a 300 ms upstream on one worker", function()
      local t0 = H.now()
      local out = H.sh("seq 50 | xargs -P 50 -I{} curl -s -m 20 -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:"
        .. port .. "/slow")
      local elapsed = H.now() - t0
      local _, n = out:gsub("200\n", "")
      assert.equal(50, n, out)
      -- one after another they would take 15 s
      assert.is_true(elapsed < 8000, "took " .. elapsed .. " ms")
    end)
  end)

  describe("against a scripted server", function()
    it("reads chunks split across writes, with an extension and a trailer", function()
      assert.matches("^200 %d+ abcdefg$", case("raw_chunked"))
    end)

    it("reads a body delimited by the close (HTTP/1.0 and 1.1)", function()
      assert.matches("^200 %d+ close%-delimited body$", case("http10"))
      assert.matches("^200 %d+ until the close$", case("close_delimited"))
    end)

    it("skips 100 and 103 interim responses", function()
      assert.matches("^200 %d+ after interim$", case("interim"))
    end)

    it("sends another method with a body", function()
      assert.matches("^200 %d+ PUT data$", case("method"))
    end)

    it("sends the request line, Host, the caller's headers and the framing", function()
      local a, b = case("request_head"):match("^(.*)|(.*)$")
      local port = a:match("Host: 127%.0%.0%.1:(%d+)")
      assert.is_truthy(port, a)
      local lines = {}
      for line in (a .. "\r\n"):gmatch("(.-)\r\n") do
        lines[#lines + 1] = line
      end
      assert.equal("GET /head?q=1 HTTP/1.1", lines[1])
      table.sort(lines, function(x, y) return x < y end)
      assert.same({ "Connection: close", "GET /head?q=1 HTTP/1.1", "Host: 127.0.0.1:" .. port, "X-Multi: a", "X-Multi: b",
        "X-N: 5" }, lines)
      assert.equal("POST /head HTTP/1.1\r\nhost: example.test\r\nContent-Length: 0", b)
    end)

    it("sends a plain GET as its request line, Host and the framing, the same for a URL seen before", function()
      local a, b, c = case("plain_head"):match("^(.*)|(.*)|(.*)$")
      local port = a:match("Host: 127%.0%.0%.1:(%d+)")
      assert.is_truthy(port, a)
      assert.equal("GET /head HTTP/1.1\r\nHost: 127.0.0.1:" .. port .. "\r\nConnection: close", a)
      assert.equal("GET /head HTTP/1.1\r\nHost: 127.0.0.1:" .. port, b)
      assert.equal(b, c)
    end)

    it("hands out header names lower-cased, short and long, a repeated one's values joined", function()
      assert.equal("sixty-four|sixty-five|a, b", case("names"))
    end)

    it("refuses garbage instead of a status line", function()
      assert.equal('err invalid status line: "SSH-2.0-OpenSSH_9.2"', case("garbage"))
      assert.equal("err unexpected 101 Switching Protocols (the request asked for no upgrade)", case("switch"))
    end)

    it("reports a peer that closes mid-head or mid-body", function()
      assert.equal("err connection closed by the server in the response head", case("close_mid_head"))
      assert.equal("err connection closed by the server in the body (10 of 100 bytes)", case("close_mid_body"))
      assert.equal("err connection closed by the server in the chunked body", case("close_mid_chunk"))
    end)

    it("refuses conflicting framing and an invalid chunk", function()
      assert.equal('err conflicting Content-Length values: "Content-Length: 6"', case("conflict_cl"))
      assert.equal("err both Content-Length and Transfer-Encoding", case("cl_and_te"))
      assert.equal("err invalid chunked body", case("bad_chunk"))
    end)

    it("stops reading a close-delimited body over max_body_size", function()
      assert.equal("err body larger than max_body_size (1048576 bytes)", case("big_close"))
    end)

    it("times out an upstream that stalls before the head or in the body", function()
      assert.equal("err timeout soon", case("stall"))
      assert.equal("err timeout", case("stall_body"))
      assert.equal("err timeout soon", case("stall_send")) -- a body the upstream does not read
    end)

    it("reports a refused connect and a name that does not resolve", function()
      assert.matches("^err connect 127%.0%.0%.1:%d+: .*refused", case("refused"))
      assert.matches("^err connect no%-such%-host%.invalid:80: ", case("unresolvable"))
    end)

    it("keeps no long URL in its cache of parsed URLs", function()
      local kib, refused = case("long_urls"):match("^(%-?%d+) (%a+)$")
      assert.equal("refused", refused)
      assert.is_true(tonumber(kib) < 2048, kib .. " KiB held")
    end)

    it("connects for https (spec/net_tls_spec.lua has the TLS), and refuses URLs it cannot use", function()
      assert.matches("^err connect 127%.0%.0%.1:1: .*refused", case("https"))
      assert.equal("err unsupported URL scheme 'ftp' (http and https only)|err invalid URL (expected http://host[:port]/path): no url",
        case("bad_url"))
    end)

    it("raises on programming mistakes", function()
      local flags, e1, e2, e3, e4, e5 = case("mistakes"):match("^(.-)|(.-)|(.-)|(.-)|(.-)|(.*)$")
      assert.equal("false false false false false false false", flags)
      assert.matches("app%.lua:%d+: http%.request: timeout must be a number >= 0", e1)
      assert.matches('app%.lua:%d+: http%.request: invalid header name "Bad Name"', e2)
      -- a misspelt option raises (it was ignored: the request waited the default 60 s)
      assert.matches("app%.lua:%d+: http%.request: unknown option timout", e3)
      assert.matches("app%.lua:%d+: http%.request: timeout must be a number >= 0 and <= 1e12", e4)
      assert.matches("app%.lua:%d+: http%.request: keepalive_timeout must be a number >= 0 and <= 1e12", e5)
    end)
  end)

  describe("the pool", function()
    it("takes a connection back after a complete answer", function()
      assert.equal("same", case("pooled_after_ok"))
      assert.equal("same", case("pooled_after_chunked_and_interim"))
    end)

    it("never takes back a connection after an error, a timeout, or bytes the framing does not account for", function()
      assert.equal("nil invalid chunked body fresh", case("not_pooled_after_bad_chunk"))
      assert.equal("nil fresh", case("not_pooled_after_conflict"))
      assert.equal("ok on-a fresh", case("not_pooled_after_extra_bytes"))
      assert.equal("timeout fresh", case("not_pooled_after_timeout"))
    end)

    it("does not fail on a pooled connection the server closed", function()
      assert.equal("fresh", case("server_closed_pooled"))
    end)

    it("sends a GET again on a new connection when the pooled one closes unanswered, not a POST", function()
      assert.equal("fresh", case("retried_get"))
      assert.equal("err connection closed by the server before the response", case("unretried_post"))
    end)
  end)
end)
