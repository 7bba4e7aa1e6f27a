-- Debian's OpenResty drivers, unmodified, on luacluster.ngx's ngx.socket.tcp inside a worker's
-- handlers, against real servers the spec starts on free loopback ports: lua-nginx-redis
-- (nginx.redis) on redis-server, lua-nginx-memcached on memcached, lua-nginx-redis-connector
-- (a redis:// url), and lua-nginx-websocket's client on a WebSocket echo server
-- (spec/ws_echo.py, python3-websockets). And the loop never blocks on them: one worker answers
-- 50 concurrent requests that each wait 300 ms in a Redis BLPOP in well under the 15 s a
-- blocking client would take.
local H = require("helper")
local run = require("ngx_app_run")

local APP = [[
package.path = os.getenv("SPEC_DIR") .. "/?.lua;" .. package.path
local ngx = require("luacluster.ngx")
local app = require("ngx_app")
local redis = require("nginx.redis")
local memcached = require("nginx.memcached")
local connector = require("nginx.redis.connector")
local ws_client = require("nginx.websocket.client")
local REDIS, MEMC, WS = tonumber(os.getenv("REDIS_PORT")), tonumber(os.getenv("MEMC_PORT")),
  tonumber(os.getenv("WS_PORT"))

local function show(...)
  local t = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v == ngx.null then
      v = "null"
    elseif type(v) == "table" then
      local parts = {}
      for j, x in ipairs(v) do
        parts[j] = x == ngx.null and "null" or type(x) == "table" and ("{" .. table.concat(x, ",") .. "}") or tostring(x)
      end
      v = "[" .. table.concat(parts, ";") .. "]"
    end
    t[i] = tostring(v)
  end
  return table.concat(t, ",")
end

local function red_connect()
  local red = redis:new()
  red:set_timeout(2000)
  assert(red:connect("127.0.0.1", REDIS))
  return red
end

local tests = {}

function tests.redis()
  local red = red_connect()
  local out = {
    show(red:set("dog", "an animal")),
    show(red:get("dog")),
    show(red:get("no-such-key")),
    show(red:hmset("h", "a", "1", "b", "2")),
    show(red:hgetall("h")),
    show(red:incr("dog")), -- an error reply: nil and Redis's own words
    show(red:get("dog")),  -- the connection is fine after it
  }
  red:close()
  return table.concat(out, " ")
end

function tests.pipeline()
  local red = red_connect()
  red:init_pipeline()
  red:set("cat", "Marry")
  red:set("horse", "Bob")
  red:get("cat")
  red:get("horse")
  red:lpush("list", "x")
  red:lrange("list", 0, -1)
  red:incr("cat")
  local results, err = red:commit_pipeline()
  red:del("list")
  red:close()
  if not results then
    return "error: " .. tostring(err)
  end
  local out = {}
  for i, r in ipairs(results) do
    out[i] = type(r) == "table" and (r[1] == false and "err:" .. tostring(r[2]) or show(r)) or show(r)
  end
  return table.concat(out, " ")
end

-- each call takes the pooled connection of the last one: the reused count grows
function tests.keepalive()
  local red = red_connect()
  local times = red:get_reused_times()
  red:set("k", "v" .. times)
  local v = red:get("k")
  local ok, err = red:set_keepalive(10000, 10)
  return show(times, v, ok, err)
end

function tests.memcached()
  local memc = memcached:new()
  memc:set_timeout(2000)
  assert(memc:connect("127.0.0.1", MEMC))
  local times = memc:get_reused_times()
  local out = {
    show(memc:set("dog", 32)),
    show(memc:get("dog")),
    show(memc:incr("dog", 10)),
    show(memc:get("dog")),
    show(memc:delete("dog")),
    show(memc:get("dog")),
    show(memc:set("big", ("x"):rep(100000), 0, 7)),
  }
  local big, flags = memc:get("big")
  out[#out + 1] = show(#big, flags)
  out[#out + 1] = show(memc:set_keepalive(10000, 10))
  return times .. " " .. table.concat(out, " ")
end

function tests.connector()
  local red = red_connect()
  red:select(2)
  red:set("where", "db 2")
  red:close()
  local rc = connector.new({ url = "redis://127.0.0.1:" .. REDIS .. "/2", connect_timeout = 2000 })
  local r, err = rc:connect()
  if not r then
    return "error: " .. tostring(err)
  end
  local v = r:get("where")
  return show(v, rc:set_keepalive(r))
end

function tests.websocket()
  local wb = ws_client:new({ timeout = 2000 })
  local ok, err = wb:connect("ws://127.0.0.1:" .. WS .. "/")
  if not ok then
    return "error: " .. tostring(err)
  end
  local out = { show(wb:send_text("hello over websocket")) }
  out[#out + 1] = show(wb:recv_frame())
  out[#out + 1] = show(wb:send_binary(("b"):rep(60000)))
  local data, typ, rerr = wb:recv_frame()
  out[#out + 1] = show(data and #data, typ, rerr)
  out[#out + 1] = show(wb:send_close())
  return table.concat(out, " ")
end

-- waits 300 ms in Redis: BLPOP on a list nobody pushes to
function tests.blpop(req)
  local red = red_connect()
  local res, err = red:blpop("empty-" .. req.query, 0.3)
  red:close()
  return show(res, err)
end

app.serve(tests)
]]


-- starts argv and waits until port answers a TCP connect
local function start_server(argv, port, what)
  local dir = H.tmpdir()
  local p = H.spawn(argv, { dir = dir, cwd = dir })
  assert(H.wait_for(function()
    local s = H.connect(port)
    if s then
      s:close()
    end
    return s ~= nil
  end, 10000), what .. " did not start:\n" .. p:output())
  return p
end


describe("Debian's lua-nginx-* drivers, unmodified, on luacluster.ngx", function()
  local app, get, port, servers

  setup(function()
    local ports = H.free_ports(3)
    local redis_port, memc_port, ws_port = ports[1], ports[2], ports[3]
    servers = {
      start_server({ "/usr/bin/redis-server", "--port", tostring(redis_port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no" }, redis_port, "redis-server"),
      -- (-u: memcached refuses to run as root without it; it names the user it runs as)
      start_server({ "/usr/bin/memcached", "-l", "127.0.0.1", "-p", tostring(memc_port), "-U", "0",
        "-u", (H.sh("id -un"):gsub("%s+$", "")) },
        memc_port, "memcached"),
      start_server({ "/usr/bin/python3", H.root .. "/spec/ws_echo.py", tostring(ws_port) }, ws_port,
        "the WebSocket echo server"),
    }
    app, get, port = run.start(APP, { REDIS_PORT = redis_port, MEMC_PORT = memc_port, WS_PORT = ws_port })
  end)

  teardown(function()
    for _, p in ipairs(servers or {}) do
      p:stop()
    end
    H.cleanup()
  end)

  describe("nginx.redis", function()
    it("sets and gets, answers null for a missing key, hmset/hgetall, and an error reply", function()
      assert.equal("OK an animal null OK [a;1;b;2]"
        .. " false,ERR value is not an integer or out of range an animal", get("/redis"))
    end)

    it("runs a pipeline: init_pipeline, commands, commit_pipeline", function()
      assert.equal("OK OK Marry Bob 1 [x] err:ERR value is not an integer or out of range", get("/pipeline"))
    end)

    it("set_keepalive puts the connection in the pool and the next connect reuses it", function()
      for i = 0, 4 do
        assert.equal(i .. ",v" .. i .. ",1,nil", get("/keepalive"))
      end
    end)
  end)

  it("nginx.memcached: set, get, incr, delete, a 100 kB value, set_keepalive and reuse", function()
    assert.equal("0 1 32,0 42 42,0 1 nil,nil,nil 1 100000,7 1", get("/memcached"))
    assert.equal("1 1 32,0 42 42,0 1 nil,nil,nil 1 100000,7 1", get("/memcached"))
  end)

  it("nginx.redis.connector: connects with a redis:// url (its database selected) and reads", function()
    assert.equal("db 2,1", get("/connector"))
  end)

  it("nginx.websocket.client: a handshake, text and a 60000-byte binary frame echoed, close", function()
    assert.equal("26,nil hello over websocket,text,nil 60008,nil 60000,binary,nil 6,nil", get("/websocket"))
  end)

  it("never blocks the loop: 50 concurrent 300 ms BLPOPs in one worker take far less than 15 s", function()
    local urls = {}
    for i = 1, 50 do
      urls[i] = "'http://127.0.0.1:" .. port .. "/blpop?" .. i .. "'"
    end
    local t0 = H.now()
    local out = H.sh("curl -s -m 20 -Z --parallel-max 50 -w '\\n' " .. table.concat(urls, " "))
    local took = H.now() - t0
    local _, answered = out:gsub("null", "")
    assert.equal(50, answered, out .. "\n" .. app:output())
    assert.is_true(took >= 300, "each waits 300 ms")
    assert.is_true(took < 3000, ("50 BLPOPs of 300 ms took %d ms"):format(took))
  end)
end)
