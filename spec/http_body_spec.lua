-- The request body's framer (runtime/http_body.c): Content-Length and the chunked coding with
-- its strict grammar (chunk-size, extensions, CRLF exactly, trailers with the head's field
-- rules), each case a real request on a real socket followed by a pipelined GET, so that a
-- body framed one byte too long or too short shows in the second answer. The same bodies are
-- also sent one byte per write, which drives every state across reads.
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req)
    return 200, req.method .. " " .. req.path .. " body=" .. req:body()
  end, { max_body_size = 100, max_header_size = 300, header_timeout = 1500 }):listen()
  say("ready")
end
]]

local NEXT = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"

local function chunked(body, method)
  return (method or "POST") .. " /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" .. body
end

-- name, the chunked body, the status of the first answer, the body the handler read
local CHUNKED = {
  { "one chunk", "5\r\nhello\r\n0\r\n\r\n", 200, "hello" },
  { "three chunks", "2\r\nhe\r\n1\r\nl\r\n2\r\nlo\r\n0\r\n\r\n", 200, "hello" },
  { "upper and lower case hex", "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", 200, "0123456789abcdefghij" },
  { "leading zeros do not count against 64 bits", "00000000000000000000005\r\nhello\r\n0\r\n\r\n", 200, "hello" },
  { "a last chunk of several zeros", "5\r\nhello\r\n000\r\n\r\n", 200, "hello" },
  { "an extension", "5;a\r\nhello\r\n0;b\r\n\r\n", 200, "hello" },
  { "an extension with a token value", "5;a=b;c=d\r\nhello\r\n0\r\n\r\n", 200, "hello" },
  { "an extension with a quoted value", '5;a="x \\" y"\r\nhello\r\n0\r\n\r\n', 200, "hello" },
  { "extensions with BWS", "5 ; a = b\t;\tc\r\nhello\r\n0\r\n\r\n", 200, "hello" },
  { "a trailer", "5\r\nhello\r\n0\r\nX-T: v\r\nX-U:w\r\n\r\n", 200, "hello" },
  { "a Content-Length trailer (not framing)", "5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n", 200, "hello" },
  { "a Content-Length trailer with HTAB around it, as in a head", "5\r\nhello\r\n0\r\ncontent-length:\t7\t\r\n\r\n",
    200, "hello" },
  { "no size", "\r\nhello\r\n0\r\n\r\n", 400 },
  { "a size that is not hex", "g\r\nhello\r\n0\r\n\r\n", 400 },
  { "a sign before the size", "+5\r\nhello\r\n0\r\n\r\n", 400 },
  { "17 significant hex digits (over 64 bits)", "10000000000000005\r\nhello\r\n0\r\n\r\n", 400 },
  { "a size over max_body_size", "65\r\n" .. ("x"):rep(101) .. "\r\n0\r\n\r\n", 413 },
  { "chunks that add up to more than max_body_size", "32\r\n" .. ("x"):rep(50) .. "\r\n33\r\n" .. ("y"):rep(51)
    .. "\r\n0\r\n\r\n", 413 },
  { "whitespace before the size", " 5\r\nhello\r\n0\r\n\r\n", 400 },
  { "a bare LF after the size", "5\nhello\r\n0\r\n\r\n", 400 },
  { "a bare CR after the size", "5\rhello\r\n0\r\n\r\n", 400 },
  { "an empty extension", "5;\r\nhello\r\n0\r\n\r\n", 400 },
  { "an extension without a value after =", "5;a=\r\nhello\r\n0\r\n\r\n", 400 },
  { "a control byte in a quoted extension", '5;a="x\1"\r\nhello\r\n0\r\n\r\n', 400 },
  { "an unterminated quoted extension", '5;a="x\r\nhello\r\n0\r\n\r\n', 400 },
  { "a bare LF in an extension", "5;a\nhello\r\n0\r\n\r\n", 400 },
  { "a chunk-size line over 4096 bytes", "5;" .. ("a"):rep(4100) .. "\r\nhello\r\n0\r\n\r\n", 400 },
  { "data longer than its size", "5\r\nhello!\r\n0\r\n\r\n", 400 },
  { "a bare LF after the data", "5\r\nhello\n0\r\n\r\n", 400 },
  { "a bare CR after the data", "5\r\nhello\r0\r\n\r\n", 400 },
  { "a bare LF ending the body", "5\r\nhello\r\n0\r\n\n", 400 },
  { "a trailer with a space before the colon", "5\r\nhello\r\n0\r\nX-T : v\r\n\r\n", 400 },
  { "a trailer without a colon", "5\r\nhello\r\n0\r\nX-T v\r\n\r\n", 400 },
  { "a trailer with an empty name", "5\r\nhello\r\n0\r\n: v\r\n\r\n", 400 },
  { "an obs-folded trailer", "5\r\nhello\r\n0\r\nX-T: v\r\n w\r\n\r\n", 400 },
  { "a trailer with a control byte", "5\r\nhello\r\n0\r\nX-T: a\0b\r\n\r\n", 400 },
  { "a trailer ending in a bare LF", "5\r\nhello\r\n0\r\nX-T: v\n\r\n", 400 },
  { "a Content-Length trailer that is not digits", "5\r\nhello\r\n0\r\nContent-Length: 5x\r\n\r\n", 400 },
  { "an empty Content-Length trailer", "5\r\nhello\r\n0\r\nContent-Length:\r\n\r\n", 400 },
  { "a Content-Length trailer with two numbers", "5\r\nhello\r\n0\r\nContent-Length: 5 5\r\n\r\n", 400 },
  { "two Content-Length trailers", "5\r\nhello\r\n0\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400 },
  { "a Content-Length trailer of 19 digits", "5\r\nhello\r\n0\r\nContent-Length: 1234567890123456789\r\n\r\n", 400 },
  { "trailers over max_header_size", "5\r\nhello\r\n0\r\nX-T: " .. ("v"):rep(400) .. "\r\n\r\n", 431 },
}


describe("the request body's framer", function()
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

  -- sends the request, then reads the answers: the first must have `status` (and body), and
  -- after a 200 the pipelined GET must be answered as its own request
  local function check(request, status, body, bytewise)
    local s = assert(H.connect(port))
    if bytewise then
      for i = 1, #request do
        s:send(request:sub(i, i))
        if i % 8 == 0 then H.sleep(1) end
      end
    else
      s:send(request)
    end
    local list, data = U.exchange(s, nil, status == 200 and 2 or 1, 4000)
    s:close()
    assert.is_truthy(list[1], ("no answer: %q"):format(data))
    assert.equal(status, list[1].status, data)
    if status == 200 then
      assert.equal("POST /b body=" .. body, list[1].body)
      assert.is_truthy(list[2], data)
      assert.equal("GET /next body=", list[2].body)
    else
      assert.equal(1, #list, data)
    end
  end

  for _, case in ipairs(CHUNKED) do
    local name, body, status, read = case[1], case[2], case[3], case[4]
    it("chunked: " .. name .. " -> " .. status, function()
      check(chunked(body) .. NEXT, status, read)
    end)
  end

  it("chunked, one byte per write: every state across reads", function()
    for _, case in ipairs(CHUNKED) do
      local name, body, status, read = case[1], case[2], case[3], case[4]
      if #body < 200 then
        local ok, err = pcall(check, chunked(body) .. NEXT, status, read, true)
        assert(ok, name .. ": " .. tostring(err))
      end
    end
  end)

  it("Content-Length: exactly that many bytes, in one write and one byte per write", function()
    local req = "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" .. NEXT
    check(req, 200, "hello")
    check(req, 200, "hello", true)
    check("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n" .. NEXT, 200, "")
    check("POST /b HTTP/1.1\r\nHost: a\r\n\r\n" .. NEXT, 200, "")
  end)

  it("Content-Length: over max_body_size is refused before the body", function()
    check("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", 413)
  end)

  it("Content-Length: a body that stops short times out (408)", function()
    check("POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello", 408)
  end)

  -- the head is judged whole before its body: an unknown method is 501 whether or not a bad
  -- body came in the same read (it was 400 when the old parser's body check ran first)
  it("answers an unknown method 501 even when a broken body arrives with its head", function()
    check(chunked("5;\r\nhello\r\n0\r\n\r\n", "POSX"), 501)
    check(chunked("5\r\nhello!!\r\n0\r\n\r\n", "POSX"), 501)
  end)
end)
