-- Writes the seed corpus of the fuzz targets (runtime/fuzz/) under spec/fuzz/corpus/{ipc,http}.
-- Run from the repository root: luajit spec/fuzz/make_corpus.lua
-- Each file's first byte is the target's delivery mode (see the target's header comment).
package.path = "./lua/?.lua;" .. package.path
local codec = require("luacluster.lib.codec")

local function le32(n)
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end

local function frame(kind, payload, opts)
  opts = opts or {}
  return le32(opts.len or #payload) .. string.char(kind, opts.flags or 0, 0, 0) .. le32(opts.peer or 0)
    .. le32(opts.seq or 0) .. payload
end

local function enc(v) return assert(codec.encode(v)) end

local function write(dir, name, bytes)
  os.execute("mkdir -p spec/fuzz/corpus/" .. dir)
  local f = assert(io.open("spec/fuzz/corpus/" .. dir .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end

local MSG, CTRL, REQ, REPLY, ROUTE, BCAST, ROUTE_FAIL, CONN = 1, 2, 3, 4, 5, 6, 7, 8

-- ---- ipc ----
local ipc = {
  msg_table = { 0x30, frame(MSG, enc({ hello = "world", n = 1, list = { 1, 2, 3 }, nested = { a = { b = true } } })) },
  msg_nil = { 0x30, frame(MSG, enc(nil)) },
  msg_string_bytes = { 0x00, frame(MSG, enc(string.rep("\0\255", 40))) },
  control = { 0x30, frame(CTRL, enc({ op = "peers", ids = { 1, 2 } })) .. frame(CTRL, enc({ op = "disconnect" })) },
  request = { 0x30, frame(REQ, enc({ q = 1 }), { seq = 7 }) },
  reply = { 0x30, frame(REPLY, enc({ true, "answer" }), { seq = 1 }) .. frame(REPLY, enc({ false, "e" }), { seq = 9 }) },
  route = { 0x38, frame(ROUTE, enc("to 1"), { peer = 1, seq = 3 }) .. frame(ROUTE, enc("to 5"), { peer = 5, seq = 4 }) },
  bcast = { 0x38, frame(BCAST, enc({ all = true })) },
  route_fail = { 0x30, frame(ROUTE_FAIL, "", { peer = 2, seq = 3 }) },
  conn_without_socket = { 0x30, frame(CONN, "", { flags = 1, peer = 1 }) },
  msg_with_socket = { 0x31, frame(MSG, enc("sock"), { flags = 1 }) },
  msg_with_server = { 0x31, frame(MSG, enc("srv"), { flags = 3 }) },
  msg_with_unix_socket = { 0x33, frame(MSG, enc("unix"), { flags = 1 }) },
  unclaimed_socket = { 0x31, frame(MSG, enc("no flag")) },
  oversized = { 0x34, frame(MSG, enc(string.rep("x", 600))) .. frame(MSG, enc("after")) },
  oversized_with_socket = { 0x35, frame(MSG, string.rep("y", 300), { flags = 1 }) .. frame(MSG, enc("after")) },
  bad_kind = { 0x30, frame(9, enc(1)) },
  bad_flags = { 0x30, frame(MSG, enc(1), { flags = 4 }) },
  server_without_handle = { 0x30, frame(MSG, enc(1), { flags = 2 }) },
  garbage_payload = { 0x30, frame(MSG, "\255\254\253\252") .. frame(MSG, enc(2)) },
  trailing_bytes = { 0x30, frame(MSG, enc(1) .. "zz") },
  truncated = { 0x30, frame(MSG, enc({ 1, 2, 3 }), { len = 100 }) },
  split_bytes = { 0x00, frame(MSG, enc({ k = "v" })) .. frame(CTRL, enc({ op = "x" })) .. frame(REQ, enc(3), { seq = 2 }) },
  -- under the largest limit (bit 6): a header near 4 GiB once wrapped header + len to a few
  -- bytes (a read out of bounds in delivery), and a routed one overflowed the master's heap
  huge_len = { 0x70, frame(MSG, "", { len = 0xFFFFFFF0 }) .. enc("tail") },
  huge_len_split = { 0x40, frame(MSG, "", { len = 0xFFFFFFFF }) .. enc("tail") },
  huge_len_routed = { 0x78, frame(ROUTE, "", { len = 0xFFFFFFF8, peer = 1, seq = 2 }) .. enc("x") },
  huge_len_bcast = { 0x78, frame(BCAST, "", { len = 0xFFFFFFF4 }) .. enc("x") },
  over_lua_string = { 0x70, frame(MSG, "", { len = 0x7FFFFF00 }) .. enc("tail") },
  -- sockets with frames that take none
  reply_with_socket = { 0x31, frame(REPLY, enc({ true, 1 }), { flags = 1, seq = 1 }) },
  route_with_socket = { 0x39, frame(ROUTE, enc("r"), { flags = 1, peer = 1, seq = 1 }) },
  conn_with_server = { 0x31, frame(CONN, "", { flags = 3, peer = 1 }) },
  deep_table = { 0x30, frame(MSG, enc((function() local t = {} local c = t for _ = 1, 90 do c[1] = {} c = c[1] end return t end)())) },
}
local function sorted(t)
  local names = {}
  for name in pairs(t) do
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

for _, name in ipairs(sorted(ipc)) do
  write("ipc", name, string.char(ipc[name][1]) .. ipc[name][2])
end

-- ---- http ----
local host = "Host: x\r\n"
local http = {
  get = "GET / HTTP/1.1\r\n" .. host .. "\r\n",
  get_query = "GET /a/b?x=1&y=2#frag HTTP/1.1\r\n" .. host .. "User-Agent: f\r\nAccept: */*\r\n\r\n",
  pipelined = ("GET /p HTTP/1.1\r\n" .. host .. "\r\n"):rep(5),
  http10 = "GET / HTTP/1.0\r\n\r\n",
  http10_keepalive = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n",
  post_body = "POST /upload HTTP/1.1\r\n" .. host .. "Content-Length: 11\r\n\r\nhello world",
  post_chunked = "POST /c HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
  post_stream = "POST /stream HTTP/1.1\r\n" .. host .. "Content-Length: 3\r\n\r\nabcGET /stream HTTP/1.0\r\n\r\n",
  expect = "POST / HTTP/1.1\r\n" .. host .. "Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
  head = "HEAD / HTTP/1.1\r\n" .. host .. "\r\n",
  big = "GET /big HTTP/1.1\r\n" .. host .. "\r\n" .. "GET /big HTTP/1.1\r\n" .. host .. "\r\n",
  err = "GET /err HTTP/1.1\r\n" .. host .. "\r\nGET / HTTP/1.1\r\n" .. host .. "\r\n",
  nocontent = "GET /nc HTTP/1.1\r\n" .. host .. "\r\n",
  close = "GET /close HTTP/1.1\r\n" .. host .. "\r\nGET / HTTP/1.1\r\n" .. host .. "\r\n",
  conn_close = "GET / HTTP/1.1\r\n" .. host .. "Connection: close\r\n\r\n",
  options_star = "OPTIONS * HTTP/1.1\r\n" .. host .. "\r\n",
  absolute = "GET http://x/y?z HTTP/1.1\r\n" .. host .. "\r\n",
  connect = "CONNECT x:443 HTTP/1.1\r\n" .. host .. "\r\n",
  repeated = "GET / HTTP/1.1\r\n" .. host .. "Cookie: a\r\nCookie: b\r\n\r\n",
  -- refused shapes
  cl_te = "POST / HTTP/1.1\r\n" .. host .. "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  te_space = "POST / HTTP/1.1\r\n" .. host .. "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
  te_double = "POST / HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  te_gzip = "POST / HTTP/1.1\r\n" .. host .. "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
  cl_double = "POST / HTTP/1.1\r\n" .. host .. "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
  obs_fold = "GET / HTTP/1.1\r\n" .. host .. "X: a\r\n b\r\n\r\n",
  bare_cr = "GET / HTTP/1.1\r\n" .. host .. "X: a\rb\r\n\r\n",
  bare_lf = "GET / HTTP/1.1\n" .. host:gsub("\r", "") .. "\n",
  no_host = "GET / HTTP/1.1\r\n\r\n",
  two_hosts = "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
  version = "GET / HTTP/2.0\r\n" .. host .. "\r\n",
  chunk_bad_crlf = "POST / HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
  chunk_huge = "POST / HTTP/1.1\r\n" .. host .. "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
  body_too_big = "POST / HTTP/1.1\r\n" .. host .. "Content-Length: 99999\r\n\r\n",
  long_url = "GET /" .. string.rep("a", 3000) .. " HTTP/1.1\r\n" .. host .. "\r\n",
  many_headers = "GET / HTTP/1.1\r\n" .. host .. string.rep("X-A: 1\r\n", 120) .. "\r\n",
  control_byte = "GET / HTTP/1.1\r\n" .. host .. "X: a\1b\r\n\r\n",
  unknown_method = "BREW / HTTP/1.1\r\n" .. host .. "\r\n",
}
local modes = { 3, 0, 1, 2, 7, 8, 11 }
local i = 0
for _, name in ipairs(sorted(http)) do -- sorted: the same files on every run
  i = i + 1
  write("http", name, string.char(modes[i % #modes + 1]) .. http[name])
end
-- a handler that waits on a timer (/wait): pipelined requests arrive behind it, and more than
-- the 64 KiB of input kept behind a running handler (reading must resume once it answers)
local wait = "POST /wait HTTP/1.1\r\n" .. host .. "Content-Length: 5\r\n\r\nhello"
local p = "GET /p HTTP/1.1\r\n" .. host .. "\r\n"
write("http", "wait", string.char(0) .. wait .. p:rep(3))
write("http", "wait_pipelined_big", string.char(3) .. p .. wait .. p:rep(math.floor(100000 / #p)))
-- the request vectors of spec/data/http_vectors.lua (strict parsing and request smuggling),
-- each followed by a second request that a refusal must keep from being served
local ok, vectors = pcall(dofile, "spec/data/http_vectors.lua")
if ok then
  for _, v in ipairs(vectors) do
    write("http", "vec-" .. v.id, string.char(3) .. v.request .. "GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
  end
end
print("wrote the corpus under spec/fuzz/corpus")
