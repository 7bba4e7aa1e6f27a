-- Writes the seed corpus of fuzz_http_client (runtime/fuzz/fuzz_http_client.c) under
-- spec/fuzz/corpus/http_client: responses a server may send, good and bad, each under a few
-- delivery modes (byte 0: bytes per read, HEAD, small limits; see the target's header).
-- Run from the repository root: luajit spec/fuzz/make_corpus_http_client.lua
local DIR = "spec/fuzz/corpus/http_client"

local SEEDS = {
  cl = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: t\r\n\r\nhello",
  cl_twice_same = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
  cl_conflict = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  cl_and_te = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=\"q\\\"\"\r\ndefg\r\n0\r\nX-T: v\r\n\r\n",
  chunked_bad = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
  chunked_big = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n300\r\n" .. ("x"):rep(768) .. "\r\n0\r\n\r\n",
  te_gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
  te_http10 = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  close = "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nuntil the close",
  interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
  no_content = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
  not_modified = "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
  no_reason = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
  bare_lf = "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
  bare_cr = "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
  garbage = "SSH-2.0-OpenSSH_9.2\r\n\r\n",
  http2 = "HTTP/2.0 200 OK\r\n\r\n",
  status_600 = "HTTP/1.1 600 X\r\n\r\n",
  obs_fold = "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n",
  space_colon = "HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
  big_head = "HTTP/1.1 200 OK\r\nX-A: " .. ("a"):rep(300) .. "\r\n\r\n",
  pipelined = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}

os.execute("mkdir -p " .. DIR)
for name, bytes in pairs(SEEDS) do
  for _, mode in ipairs({ 0, 1, 3, 4, 8 + 2 }) do
    local f = assert(io.open(string.format("%s/%s_%d", DIR, name, mode), "wb"))
    f:write(string.char(mode), bytes)
    f:close()
  end
end
