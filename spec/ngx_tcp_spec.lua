-- ngx.socket.tcp against the real thing: spec/ngx_tcp_cases.lua runs in Debian's nginx with
-- lua-nginx-module (content_by_lua) and in a luacluster worker's handler, both against one
-- scripted TCP server (spec/net_util.lua's), and every line must be equal. Then what only
-- luacluster can show: a name resolved as the system does, what is not provided yet
-- (unix sockets) in plain words, a socket nobody closed closing when collected,
-- and a second reader on one socket.
local H = require("helper")
local N = require("net_util")
local nginx_lua = require("nginx_lua")
local run = require("ngx_app_run")

local APP = [[
package.path = os.getenv("SPEC_DIR") .. "/?.lua;" .. package.path
local ngx = require("luacluster.ngx")
local app = require("ngx_app")
local cases = require("ngx_tcp_cases")
local ser = require("ngx_cases").ser
local PORT = tonumber(os.getenv("PEER_PORT"))

local function show(...)
  local t = {}
  for i = 1, select("#", ...) do
    t[i] = ser((select(i, ...)))
  end
  return table.concat(t, ",")
end

local tests = {}

function tests.cases()
  return table.concat(cases.run(ngx, PORT), "\n") .. "\n"
end

function tests.name()
  local s = ngx.socket.tcp()
  local ok, err = s:connect("localhost", PORT)
  s:send("echo by%20name%0A\n")
  local line = s:receive()
  s:close()
  local bad = { ngx.socket.tcp():connect("no-such-host.invalid", PORT) }
  return show(ok, err, line, bad[1], bad[2])
end

function tests.missing()
  local s = ngx.socket.tcp()
  local u = { s:connect("unix:/tmp/no.sock") }
  s:settimeout(300)
  assert(s:connect("127.0.0.1", PORT))
  -- a peer that does not speak TLS (and says nothing): the handshake's timeout
  local tls = { s:sslhandshake(nil, "example.com", true) }
  return show(u[1], u[2], tls[1], tls[2])
end

function tests.busy()
  local s = ngx.socket.tcp()
  assert(s:connect("127.0.0.1", PORT))
  s:send("later 200 x%0A\n")
  local other
  ngx.timer.at(0.05, function()
    other = table.concat({ show(s:receive()), show(s:receiveany(1)), show(s:receiveuntil("x")()),
      show(s:close()) }, " ")
  end)
  local mine = s:receive()
  return show(mine) .. " " .. tostring(other) .. " " .. show(s:close())
end

-- where lua-nginx-module 0.10.26 (luacluster's model) words it otherwise than Debian's 0.10.23
function tests.words()
  local s = ngx.socket.tcp()
  assert(s:connect("127.0.0.1", PORT, { pool = "words" })) -- (a new pool: setkeepalive checks its size)
  local function err_of(fn)
    local ok, err = pcall(fn)
    return ok and "no error" or (tostring(err):gsub("^[^\n]-:%d+: ", ""))
  end
  local reader = s:receiveuntil("x")
  local out = {
    err_of(function() s:receive(-1) end),
    err_of(function() s:receive({}) end),
    err_of(function() s:receive(nil) end),
    err_of(function() s:settimeouts(1, 2) end),
    err_of(function() reader(1, 2) end),
    err_of(function() s:setkeepalive(1, "y") end),
  }
  s:close()
  return table.concat(out, "\n")
end

function tests.gc()
  return show(app.collected(40, function()
    assert(ngx.socket.tcp():connect("127.0.0.1", PORT))
  end))
end

-- the guards that setkeepalive gives back serve the next connects: a socket that took its
-- connection from the pool and its guard from those, then was dropped, still closes it
function tests.gc_reused()
  local kept = {}
  for i = 1, 40 do
    kept[i] = ngx.socket.tcp()
    assert(kept[i]:connect("127.0.0.1", PORT, { pool = "gc_reused", pool_size = 50 }))
  end
  for i = 1, 40 do
    assert(kept[i]:setkeepalive(0))
  end
  kept = nil
  return show(app.collected(40, function()
    local s = ngx.socket.tcp()
    assert(s:connect("127.0.0.1", PORT, { pool = "gc_reused" }))
    assert(s:getreusedtimes() == 1)
  end))
end

-- a send of a table is flattened into parts kept for the next sends: one of 400000 elements
-- (a big MSET of nginx.redis) leaves no 4 MiB array behind -> the KiB held after a collection
function tests.send_memory()
  local s = ngx.socket.tcp()
  assert(s:connect("127.0.0.1", PORT))
  assert(s:send({ "echo a", "\n" }))
  assert(s:receive(1) == "a")
  collectgarbage()
  collectgarbage()
  local before = collectgarbage("count")
  local t = {}
  for i = 1, 400000 do
    t[i] = "x\n"
  end
  local n = s:send(t)
  t = nil
  collectgarbage()
  collectgarbage()
  local held = math.floor(collectgarbage("count") - before)
  s:close()
  return show(n, held)
end

app.serve(tests)
]]


describe("ngx.socket.tcp", function()
  local get_, peer_port

  setup(function()
    peer_port = H.free_port_range(2) -- and peer_port + 1, free: the cases' refused connect
    N.server(peer_port)
    get_ = select(2, run.start(APP, { PEER_PORT = peer_port }))
  end)

  teardown(function()
    H.cleanup()
  end)

  local function get(path)
    return get_(path, "-m 30")
  end

  it("answers every case of spec/ngx_tcp_cases.lua as OpenResty does", function()
    assert(nginx_lua.available(), "this spec needs nginx and libnginx-mod-http-lua (vendor/install-deps.sh)")
    local nginx, nport, dir = nginx_lua.start({ "ngx_cases.lua", "ngx_tcp_cases.lua" }, "/cases",
      "for _, line in ipairs(require('ngx_tcp_cases').run(ngx, " .. peer_port .. ")) do ngx.say(line) end")
    local body, status = H.curl("http://127.0.0.1:" .. nport .. "/cases", "-m 30")
    nginx:stop()
    assert.equal(200, status, body .. H.read_file(dir .. "/error.log"))
    local ours = nginx_lua.lines(get("/cases"))
    assert.equal("", nginx_lua.diff(nginx_lua.lines(body), ours))
    assert.is_true(#ours > 30)
  end)

  it("connects to a name as the system resolves it; a name that does not resolve in nginx's words", function()
    -- (3: Host not found) from a DNS server that says so, (2: Server failure) when none answers
    -- (a machine or a namespace with no name server: CI's fresh Debian root)
    assert.matches('^1,nil,"by name",nil,"no%-such%-host%.invalid could not be resolved %([23]: [%a ]+%)"$',
      get("/name"))
  end)

  it("says plainly that unix sockets are not there; sslhandshake with a peer that is silent times out", function()
    assert.equal('nil,"unix domain sockets are not supported by luacluster.ngx",nil,"timeout"', get("/missing"))
  end)

  it('a second reader is "socket busy reading"; close is refused while a read waits', function()
    assert.equal('"x" nil,"socket busy reading" nil,"socket busy reading" nil,"socket busy reading"'
      .. ' nil,"socket busy reading" 1', get("/busy"))
  end)

  it("words the errors that changed after Debian's lua-nginx-module 0.10.23 as 0.10.26 does", function()
    assert.equal(table.concat({
      "bad argument #1 to 'receive' (bad number argument)",
      "bad argument #1 to 'receive' (bad argument)",
      "bad argument #1 to 'receive' (bad argument)",
      "ngx.socket settimeouts: expecting 4 arguments (including the object) but seen 3",
      "expecting 0 or 1 argument, but seen 2",
      "bad argument #2 to 'setkeepalive' (number expected, got string)",
    }, "\n"), get("/words"))
  end)

  it("keeps no large array after a send of a large table", function()
    local n, held = get("/send_memory"):match("^(%d+),(%-?%d+)$")
    assert.equal("800000", n)
    assert.is_true(tonumber(held) < 1024, held .. " KiB held")
  end)

  it("closes the connections of sockets nobody closed when they are collected", function()
    local made, left = get("/gc"):match("^(%-?%d+),(%-?%d+)$")
    assert.is_true(tonumber(made) >= 38, made)
    assert.is_true(tonumber(left) <= 2, left)
  end)

  it("closes them too when the sockets took pooled connections and reused guards", function()
    -- 40 pooled connections taken and dropped: none made, all 40 closed once collected
    local made, left = get("/gc_reused"):match("^(%-?%d+),(%-?%d+)$")
    assert.is_true(math.abs(tonumber(made)) <= 2, made)
    assert.is_true(tonumber(left) <= -38, left)
  end)
end)
