-- The calls of ngx.socket.tcp that must answer exactly as OpenResty's: run(ngx, port) makes
-- each call against spec/net_util.lua's scripted server on port and returns one line per case,
-- "name => results" (ngx_cases.lua's serialization; errors as "error: message" without their
-- file:line). spec/ngx_tcp_spec.lua runs the same file in Debian's nginx (content_by_lua) and
-- in a luacluster worker's handler, and compares the lines.
-- Plain Lua 5.1 / LuaJIT, no luacluster module: nginx loads it too.
local ser, run_list = require("ngx_cases").ser, require("ngx_cases").run_list

local cases = {}

-- the message of the error fn raises, without its file:line. fn makes its call as a method
-- call (sock:name(...)), not a tail call, so that both name the method and count its
-- arguments as a method's.
local function err_of(fn)
  local ok, err = pcall(fn)
  if ok then
    return "no error"
  end
  return (tostring(err):gsub("^[^\n]-:%d+: ", ""))
end

local function add(name, fn)
  cases[#cases + 1] = { name, fn }
end


-- a scripted server's command, its argument %XX-escaped
local function cmd(name, arg)
  if arg == nil then
    return name .. "\n"
  end
  return name .. " " .. arg:gsub("[^%w]", function(c)
    return ("%%%02X"):format(c:byte())
  end) .. "\n"
end


-- a socket connected to the scripted server, the commands sent
local function peer(ngx, port, ...)
  local sock = ngx.socket.tcp()
  sock:settimeout(2000)
  assert(sock:connect("127.0.0.1", port))
  local n = select("#", ...)
  if n > 0 then
    assert(sock:send({ ... }))
  end
  return sock
end


-- ---- receive ----

add("receive lines: CR LF and LF, the default pattern", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "a\r\nb\nc\r\r\n"))
  return s:receive(), s:receive("*l"), s:receive()
end)

add("receive a size, a numeric string, zero", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "hello world"))
  return s:receive(5), s:receive("1"), s:receive(0), s:receive(2.9), s:receive("3")
end)

add("receive *a until the peer closes, then closed", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "abc\ndef"), cmd("close"))
  local all = s:receive("*a")
  return all, ser({ s:receive() }), ser({ s:receive(1) }), s:close()
end)

add("receive a line cut by the close: closed and the partial", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "abc"), cmd("close"))
  local a, b, c = s:receive()
  return a, b, c, s:receive(), s:close()
end)

add("receive a size cut by the close: closed and the partial", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "abc"), cmd("close"))
  local a, b, c = s:receive(5)
  return a, b, c, ser({ s:receiveuntil("x")() }), s:getreusedtimes()
end)

add("receive at a close with nothing left: closed and an empty partial", function(ngx, port)
  local s = peer(ngx, port, cmd("close"))
  return s:receive()
end)

add("a read timeout keeps the socket, the partial line is handed out", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "par"), cmd("later", "300 tial\n"))
  s:settimeout(100)
  local a, b, c = s:receive()
  s:settimeout(2000)
  return a, b, c, s:receive(), s:close()
end)

add("a read timeout with nothing read", function(ngx, port)
  local s = peer(ngx, port, cmd("later", "300 late\n"))
  s:settimeouts(1000, 1000, 100)
  local a, b, c = s:receive(4)
  s:settimeouts(1000, 1000, 2000)
  return a, b, c, s:receive()
end)

-- (a number below zero, a table, a boolean, nil: lua-nginx-module 0.10.26's words differ from
-- Debian's 0.10.23's; spec/ngx_tcp_spec.lua asserts 0.10.26's)
add("receive's bad patterns", function(ngx, port)
  local s = peer(ngx, port)
  local out = {}
  for _, p in ipairs({ "*x", "x", "*ab", "*L" }) do
    out[#out + 1] = err_of(function() s:receive(p) end)
  end
  out[#out + 1] = err_of(function() s:receive("*l", 1) end)
  return out
end)

-- ---- receiveuntil ----

add("receiveuntil: the data before the pattern, then the rest", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "hello, world! -agentzh\r\n--abcedhb blah blah"))
  local reader = s:receiveuntil("\r\n--abcedhb")
  return reader(), s:receive(5)
end)

add("receiveuntil's iterator with a size: chunks, then nil once, then over again", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "hello, world! -agentzh\r\n--abcedhb blah|x|"))
  local reader = s:receiveuntil("\r\n--abcedhb")
  local out = {}
  for _ = 1, 8 do
    local data, err, partial = reader(4)
    out[#out + 1] = ser(data) .. "/" .. ser(err) .. "/" .. ser(partial)
  end
  local bar = s:receiveuntil("|")
  out[#out + 1] = ser(bar(10))
  out[#out + 1] = ser(bar(10))
  out[#out + 1] = ser(bar())
  return out
end)

add("receiveuntil's chunk that ends right at the pattern is empty", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "abcd--end rest"))
  local reader = s:receiveuntil("--end")
  return reader(4), reader(4), reader(4), s:receive(5)
end)

add("receiveuntil inclusive", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "hello world _END_ blah _END_"))
  local reader = s:receiveuntil("_END_", { inclusive = true })
  return reader(), reader(3), reader(3), reader(3)
end)

add("receiveuntil's pattern overlapping itself", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "xaaab|aabaab|"))
  local a = s:receiveuntil("aab")
  local b = s:receiveuntil("|")
  return a(), b(), s:receiveuntil("aab")(), b()
end)

add("receiveuntil cut by the close", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "no end here"), cmd("close"))
  local a, b, c = s:receiveuntil("--")()
  return a, b, c, s:receive()
end)

add("receiveuntil's iterator times out", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "before"), cmd("later", "300 after--"))
  s:settimeout(100)
  local reader = s:receiveuntil("--")
  local a, b, c = reader()
  s:settimeout(2000)
  return a, b, c, reader()
end)

-- (the iterator's count error: 0.10.26's "argument", 0.10.23's "arguments")
add("receiveuntil's argument errors", function(ngx, port)
  local s = peer(ngx, port)
  local out = { ser({ s:receiveuntil("") }) }
  for _, args in ipairs({ { "x", { inclusive = 1 } }, { "x", "opts" }, {} }) do
    out[#out + 1] = err_of(function() s:receiveuntil(unpack(args)) end)
  end
  local reader = s:receiveuntil("x")
  out[#out + 1] = tostring(select(2, pcall(reader, "x"))):gsub("^[^\n]-:%d+: ", "")
  return out
end)

-- ---- receiveany ----

add("receiveany: at most max of what came", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "abcdef"))
  ngx.sleep(0.1)
  return s:receiveany(3), s:receiveany("10")
end)

add("receiveany's bad max", function(ngx, port)
  local s = peer(ngx, port)
  local out = {}
  for _, m in ipairs({ 0, -1, "x" }) do
    out[#out + 1] = err_of(function() s:receiveany(m) end)
  end
  return out
end)

add("receiveany times out", function(ngx, port)
  local s = peer(ngx, port)
  s:settimeout(100)
  return s:receiveany(10)
end)

-- ---- send ----

add("send: bytes sent for strings, numbers, nested tables, empty data", function(ngx, port)
  local s = peer(ngx, port)
  return s:send("abc"), s:send(12), s:send({ "a", { "b", 1 }, 2.5 }), s:send(""), s:send({}), s:send(true)
end)

add("send's argument errors", function(ngx, port)
  local s = peer(ngx, port)
  local out = {}
  for _, d in ipairs({ function() end, { a = 1 }, { "a", true } }) do
    out[#out + 1] = err_of(function() s:send(d) end)
  end
  out[#out + 1] = err_of(function() s:send() end)
  return out
end)

-- ---- connect ----

add("connect's bad arguments", function(ngx, port)
  local s = ngx.socket.tcp()
  local out = { ser({ s:connect("127.0.0.1") }), ser({ s:connect("127.0.0.1", 70000) }),
    ser({ s:connect("127.0.0.1", -1) }), ser({ s:connect("127.0.0.1", { pool = "x" }) }),
    ser({ s:connect("127.0.0.1", nil) }) }
  for _, args in ipairs({ {}, { "127.0.0.1", port, {}, 1 }, { "127.0.0.1", port, { pool_size = 0 } },
    { "127.0.0.1", port, { pool_size = "x" } }, { "127.0.0.1", port, { pool = {} } },
    { "127.0.0.1", port, { backlog = -1 } } }) do
    out[#out + 1] = err_of(function() s:connect(unpack(args)) end)
  end
  return out
end)

add("connect refused", function(ngx, port)
  -- the scripted server's port + 1 is nobody's (the spec made sure)
  local s = ngx.socket.tcp()
  return s:connect("127.0.0.1", port + 1)
end)

add("connect with options, and a fourth argument that is not a table", function(ngx, port)
  local s = ngx.socket.tcp()
  local out = { s:connect("127.0.0.1", port, { pool = "named", pool_size = 2, backlog = 3 }) }
  out[#out + 1] = s:getreusedtimes()
  out[#out + 1] = s:close()
  out[#out + 1] = s:connect("127.0.0.1", port, nil)
  out[#out + 1] = s:close()
  return unpack(out)
end)

add("connect on a connected socket closes the first connection", function(ngx, port)
  local s = peer(ngx, port)
  local a = s:connect("127.0.0.1", port)
  assert(s:send(cmd("echo", "again\n")))
  return a, s:receive(), s:close()
end)

add("ngx.socket.connect", function(ngx, port)
  local s, err = ngx.socket.connect("127.0.0.1", port)
  assert(s:send(cmd("echo", "hi\n")))
  return err, s:receive(), s:close(), ngx.socket.connect("127.0.0.1")
end)

-- ---- a closed socket, a socket never connected ----

add("a socket never connected", function(ngx)
  local s = ngx.socket.tcp()
  local out = { ser({ s:send("x") }), ser({ s:receive() }), ser({ s:receiveany(1) }),
    ser({ s:close() }), ser({ s:getreusedtimes() }), ser({ s:setkeepalive() }),
    ser({ s:receiveuntil("x")() }) }
  out[#out + 1] = err_of(function() s:setoption("keepalive", true) end)
  out[#out + 1] = err_of(function() s:sslhandshake() end)
  return out
end)

add("a closed socket", function(ngx, port)
  local s = peer(ngx, port)
  local out = { ser({ s:close() }), ser({ s:close() }), ser({ s:send("x") }), ser({ s:receive() }),
    ser({ s:getreusedtimes() }), ser({ s:setkeepalive() }), ser({ s:setoption("keepalive", true) }),
    ser({ s:sslhandshake() }) }
  return out
end)

-- ---- timeouts ----

-- (settimeouts' count error: 0.10.26 names settimeouts, 0.10.23 settimeout)
add("settimeout and settimeouts: counts and values", function(ngx)
  local s = ngx.socket.tcp()
  local out = { ser({ s:settimeout(100) }), ser({ s:settimeout(0) }), ser({ s:settimeout("x") }),
    ser({ s:settimeouts(1, 2, 3) }) }
  for _, args in ipairs({ { -1 }, { 2 ^ 31 }, {}, { 1, 2 } }) do
    out[#out + 1] = err_of(function() s:settimeout(unpack(args)) end)
  end
  out[#out + 1] = err_of(function() s:settimeouts(1, 2, -3) end)
  return out
end)

-- ---- pools ----

add("setkeepalive, then connect takes the pooled connection", function(ngx, port)
  local s = peer(ngx, port, cmd("id"))
  local id = s:receive()
  local out = { s:getreusedtimes(), s:setkeepalive(), ser({ s:send("x") }), ser({ s:close() }) }
  s = peer(ngx, port, cmd("id"))
  out[#out + 1] = s:getreusedtimes()
  out[#out + 1] = s:receive() == id and "same connection" or "another connection"
  out[#out + 1] = s:setkeepalive(0, 5)
  s = peer(ngx, port, cmd("id"))
  out[#out + 1] = s:getreusedtimes()
  out[#out + 1] = s:receive() == id and "same connection" or "another connection"
  out[#out + 1] = s:close()
  return out
end)

add("setkeepalive refuses unread data", function(ngx, port)
  local s = peer(ngx, port, cmd("echo", "ab"))
  local a = s:receive(1)
  return a, ser({ s:setkeepalive() }), s:receive(1), s:setkeepalive()
end)

add("a pooled connection its peer closed is not handed out", function(ngx, port)
  local s = peer(ngx, port, cmd("closelater", "50"))
  assert(s:setkeepalive())
  ngx.sleep(0.2)
  s = peer(ngx, port)
  return s:getreusedtimes(), s:close()
end)

add("setkeepalive's argument errors", function(ngx, port)
  local out = {}
  for _, args in ipairs({ { "x" }, { 1, 2, 3 } }) do
    local s = peer(ngx, port)
    out[#out + 1] = err_of(function() s:setkeepalive(unpack(args)) end)
    s:close()
  end
  local s = peer(ngx, port, cmd("id"))
  s:receive()
  out[#out + 1] = ser({ s:setkeepalive("1000", "3") })
  return out
end)

add("backlog: pool_size connections in use, backlog connects wait, more are refused", function(ngx, port)
  local opts = { pool = "backlog-" .. port, pool_size = 1, backlog = 1 }
  local out = {}
  local a = ngx.socket.tcp()
  out[#out + 1] = "a " .. ser(a:connect("127.0.0.1", port, opts))
  ngx.timer.at(0, function()
    local b = ngx.socket.tcp()
    local ok, err = b:connect("127.0.0.1", port, opts) -- waits for a's place
    out[#out + 1] = "b " .. ser(ok) .. " " .. ser(err) .. " reused " .. ser(b:getreusedtimes())
    ngx.sleep(0.3)
    b:close()
  end)
  ngx.timer.at(0, function()
    local c = ngx.socket.tcp()
    out[#out + 1] = "c " .. ser({ c:connect("127.0.0.1", port, opts) })
  end)
  ngx.timer.at(0.15, function()
    local d = ngx.socket.tcp()
    d:settimeouts(100, 1000, 1000) -- b holds the place until 0.35 s
    out[#out + 1] = "d " .. ser({ d:connect("127.0.0.1", port, opts) })
  end)
  ngx.sleep(0.05)
  out[#out + 1] = "a keepalive " .. ser(a:setkeepalive())
  ngx.sleep(0.6)
  out[#out + 1] = "e " .. ser({ a:connect("127.0.0.1", port, opts) }) .. " reused " .. ser(a:getreusedtimes())
  a:close()
  return out
end)

-- ---- options ----

add("getoption reads what setoption set", function(ngx, port)
  local s = peer(ngx, port)
  local out = {}
  for _, o in ipairs({ { "keepalive", true }, { "tcp-nodelay", true }, { "reuseaddr", 1 }, { "keepalive", false },
    { "tcp-nodelay", 0 } }) do
    local before = s:getoption(o[1])
    out[#out + 1] = o[1] .. " " .. ser(before) .. " " .. ser(s:setoption(o[1], o[2])) .. " " .. ser(s:getoption(o[1]))
  end
  out[#out + 1] = ser({ s:getoption("bogus") })
  out[#out + 1] = ser({ s:getoption() })
  s:close()
  out[#out + 1] = ser({ s:getoption("keepalive") })
  return out
end)

add("setoption", function(ngx, port)
  local s = peer(ngx, port)
  return s:setoption("tcp-nodelay", true), s:setoption("keepalive", true), s:setoption("sndbuf", 65536),
    s:setoption("rcvbuf", 65536), s:setoption("reuseaddr", 1), ser({ s:setoption("bogus", 1) }),
    ser({ s:setoption("keepalive") }), ser({ s:setoption() })
end)

local function run(ngx, port)
  return run_list(cases, ngx, port)
end


return { run = run }
