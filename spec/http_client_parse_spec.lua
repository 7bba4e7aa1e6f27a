-- The HTTP client's response reader (runtime/http_client_lua.c over http_head.c's response
-- mode and http_body.c), driven directly through the core module: status lines, the header
-- rules the server holds requests to, RFC 9112 6.3's framing rules for a response, chunked and
-- close-delimited bodies, each also fed one byte at a time.
local core = require("luacluster.core")

-- the whole head at once -> len, status, headers | nil, err
local function head(s, limit)
  return core.http_response():head(s, limit)
end


-- the head fed one byte more per call (the same buffer growing): -> what the last call returned
local function head_bytewise(s)
  local rr = core.http_response()
  for i = 1, #s do
    local len, status, headers = rr:head(s:sub(1, i))
    if len ~= 0 then
      return len, status, headers, i
    end
  end
  return 0
end


local function reader(s, no_body, max_body)
  local rr = core.http_response()
  local len = assert(rr:head(s))
  assert.is_true(len > 0)
  local kind, n = rr:framing(no_body, max_body or 1000)
  return rr, kind, n, s:sub(len + 1)
end


describe("http client: response head", function()
  it("reads a status line and lower-case fields, a repeated one joined by ', '", function()
    local s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nX-Y: z\r\nset-cookie: b=2\r\n\r\nhello"
    local len, status, headers = head(s)
    assert.equal(#s - 5, len)
    assert.equal(200, status)
    assert.same({ ["content-length"] = "5", ["set-cookie"] = "a=1, b=2", ["x-y"] = "z" }, headers)
  end)

  it("waits for the blank line, byte by byte, and parses the same", function()
    local s = "HTTP/1.1 404 Not Found\r\nServer: t\r\nContent-Length: 0\r\n\r\n"
    local len, status, headers, at = head_bytewise(s)
    assert.equal(#s, len)
    assert.equal(#s, at)
    assert.equal(404, status)
    assert.equal("t", headers.server)
  end)

  it("accepts a bare LF line end, no reason phrase, an empty one, obs-text in it", function()
    assert.equal(200, select(2, head("HTTP/1.1 200 OK\nContent-Length: 0\n\n")))
    assert.equal(204, select(2, head("HTTP/1.1 204\r\n\r\n")))
    assert.equal(204, select(2, head("HTTP/1.1 204 \r\n\r\n")))
    assert.equal(200, select(2, head("HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\n\r\n")))
    assert.equal(500, select(2, head("HTTP/1.0 500 Internal Server Error\r\n\r\n")))
  end)

  local BAD = {
    { "garbage instead of a status line", "SSH-2.0-OpenSSH_9.2\r\n\r\n", 'invalid status line: "SSH-2.0-OpenSSH_9.2"' },
    { "a request line", "GET / HTTP/1.1\r\n\r\n", "invalid status line" },
    { "HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", "unsupported HTTP version in the status line" },
    { "lower-case http", "http/1.1 200 OK\r\n\r\n", "invalid status line" },
    { "a two-digit status", "HTTP/1.1 20 OK\r\n\r\n", "invalid status line" },
    { "a four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", "invalid status line" },
    { "a status over 599", "HTTP/1.1 600 X\r\n\r\n", "invalid status line" },
    { "a status under 100", "HTTP/1.1 099 X\r\n\r\n", "invalid status line" },
    { "no space after the status", "HTTP/1.1 200OK\r\n\r\n", "invalid status line" },
    { "a control byte in the reason", "HTTP/1.1 200 O\1K\r\n\r\n", 'invalid status line: "HTTP/1.1 200 O\\x01K"' },
    { "an empty first line", "\r\nHTTP/1.1 200 OK\r\n\r\n", "empty status line" },
    { "a bare CR", "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", "a bare CR in the response head" },
    { "a space before a colon", "HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n", 'invalid header field: "X-A : b"' },
    { "obs-fold", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n", "invalid header field" },
    { "a line without a colon", "HTTP/1.1 200 OK\r\nnonsense\r\n\r\n", "invalid header field" },
    { "a control byte in a value", "HTTP/1.1 200 OK\r\nX-A: b\0c\r\n\r\n", "invalid header field" },
    { "a Content-Length that is not digits", "HTTP/1.1 200 OK\r\nContent-Length: 5a\r\n\r\n", "invalid Content-Length" },
    { "a negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length" },
    { "a Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", "invalid Content-Length" },
    { "conflicting Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
      'conflicting Content-Length values: "Content-Length: 6"' },
    { "Content-Length and Transfer-Encoding",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding" },
    { "a Transfer-Encoding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
      "a Transfer-Encoding other than chunked" },
    { "chunked after another coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "a Transfer-Encoding other than chunked" },
    { "chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      "a Transfer-Encoding other than chunked" },
    { "Transfer-Encoding in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      "Transfer-Encoding in an HTTP/1.0 response" },
  }
  for _, c in ipairs(BAD) do
    it("refuses " .. c[1], function()
      local len, err = head(c[2])
      assert.is_nil(len)
      assert.equal("string", type(err))
      assert.equal(1, err:find(c[3], 1, true), err)
      -- and the same fed byte by byte: the same verdict, at the latest at the head's end
      local blen, berr = head_bytewise(c[2])
      assert.is_nil(blen)
      assert.equal(err, berr)
    end)
  end

  it("accepts the same Content-Length twice (RFC 9110 8.6)", function()
    local _, status, headers = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
    assert.equal(200, status)
    assert.equal("5, 5", headers["content-length"])
  end)

  it("refuses a head over the limit and more than 100 fields", function()
    local big = "HTTP/1.1 200 OK\r\nX-A: " .. ("a"):rep(200) .. "\r\n\r\n"
    local len, err = head(big, 100)
    assert.is_nil(len)
    assert.equal("response head larger than 100 bytes", err)
    -- an endless head is refused once it passes the limit, before any blank line
    len, err = head("HTTP/1.1 200 OK\r\n" .. ("X-A: b\r\n"):rep(50), 100)
    assert.is_nil(len)
    assert.equal("response head larger than 100 bytes", err)
    local many = { "HTTP/1.1 200 OK" }
    for i = 1, 101 do
      many[#many + 1] = "X-" .. i .. ": v"
    end
    len, err = head(table.concat(many, "\r\n") .. "\r\n\r\n")
    assert.is_nil(len)
    assert.equal(1, err:find("more than 100 header fields", 1, true))
  end)
end)


describe("http client: response framing", function()
  it("gives no body to a HEAD response, 1xx, 204 and 304, whatever their fields say", function()
    assert.equal("none", select(2, reader("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true)))
    assert.equal("none", select(2, reader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true)))
    assert.equal("none", select(2, reader("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")))
    assert.equal("none", select(2, reader("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n")))
    assert.equal("none", select(2, reader("HTTP/1.1 100 Continue\r\n\r\n")))
  end)

  it("frames a Content-Length body and leaves what follows it", function()
    local rr, kind, n = reader("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert.equal("length", kind)
    assert.equal(5, n)
    local piece, used, done = rr:body("helloEXTRA")
    assert.equal("hello", piece)
    assert.equal(5, used)
    assert.is_true(done)
    assert.is_true(rr:keepalive())
  end)

  it("refuses a Content-Length over max_body_size before any body byte", function()
    local rr = core.http_response()
    rr:head("HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n")
    local kind, err = rr:framing(false, 1000)
    assert.is_nil(kind)
    assert.equal("body larger than max_body_size (1000 bytes): Content-Length 1001", err)
  end)

  it("decodes a chunked body with extensions and trailers, whole and byte by byte", function()
    local body = "5;a=b\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: v\r\n\r\n"
    local rr, kind = reader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert.equal("chunked", kind)
    local piece, used, done = rr:body(body .. "NEXT")
    assert.equal("hello world", piece)
    assert.equal(#body, used)
    assert.is_true(done)
    rr = reader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    local out = {}
    for i = 1, #body do
      local p, u, d = rr:body(body:sub(i, i))
      assert.equal(1, u)
      out[#out + 1] = p
      assert.equal(i == #body, d)
    end
    assert.equal("hello world", table.concat(out))
  end)

  local BAD_CHUNKED = {
    { "a size that is not hex", "g\r\nhello\r\n0\r\n\r\n", "invalid chunked body" },
    { "data longer than its size", "5\r\nhello!\r\n0\r\n\r\n", "invalid chunked body" },
    { "a bare LF after the size", "5\nhello\r\n0\r\n\r\n", "invalid chunked body" },
    { "17 hex digits", "10000000000000005\r\nhello\r\n", "invalid chunked body" },
    { "a chunk over max_body_size", "3e9\r\n", "body larger than max_body_size (1000 bytes)" },
    { "chunks that add up over max_body_size", "1f4\r\n" .. ("x"):rep(500) .. "\r\n1f5\r\n",
      "body larger than max_body_size (1000 bytes)" },
  }
  for _, c in ipairs(BAD_CHUNKED) do
    it("refuses a chunked body with " .. c[1], function()
      local rr = reader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
      local piece, err = rr:body(c[2])
      assert.is_nil(piece)
      assert.equal(c[3], err)
    end)
  end

  it("hands back a close-delimited body and stops it at max_body_size", function()
    local rr, kind = reader("HTTP/1.0 200 OK\r\n\r\n")
    assert.equal("close", kind)
    assert.is_false(rr:keepalive())
    local piece, used, done = rr:body(("x"):rep(600))
    assert.equal(600, #piece)
    assert.equal(600, used)
    assert.is_false(done)
    local p2, err = rr:body(("x"):rep(401))
    assert.is_nil(p2)
    assert.equal("body larger than max_body_size (1000 bytes)", err)
  end)

  it("lets a connection be reused as the version and Connection say", function()
    assert.is_true((reader("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")):keepalive())
    assert.is_false((reader("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")):keepalive())
    assert.is_false((reader("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")):keepalive())
    assert.is_true((reader("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")):keepalive())
    assert.is_false((reader("HTTP/1.1 200 OK\r\n\r\n")):keepalive()) -- close-delimited
  end)

  it("raises on misuse: a shrinking buffer, a second head without reset, a body before framing", function()
    local rr = core.http_response()
    assert.equal(0, rr:head("HTTP/1.1 200 OK\r\nA: b"))
    assert.has_error(function() rr:head("HTTP/1.1") end)
    assert.is_true(rr:head("HTTP/1.1 200 OK\r\nA: b\r\n\r\n") > 0)
    assert.has_error(function() rr:head("HTTP/1.1 200 OK\r\nA: b\r\n\r\nmore") end)
    assert.has_error(function() rr:body("x") end)
    assert.has_error(function() core.http_response():framing(false, 10) end)
  end)

  it("reads a final head after a 1xx once reset", function()
    local s = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    local rr = core.http_response()
    local len, status = rr:head(s)
    assert.equal(103, status)
    rr:reset()
    local rest = s:sub(len + 1)
    local len2, status2, headers = rr:head(rest)
    assert.equal(200, status2)
    assert.is_nil(headers.link)
    assert.equal("ok", rest:sub(len2 + 1))
  end)
end)
