-- ws:subscribe and the publish fast path (runtime/ps_route.c, runtime/ws_fanout.c) in a real
-- luacluster of 2 workers, with python3-websockets subscribers (spec/ws_pubsub_client.py):
-- each publish once and in order per publisher on every subscribed socket of both workers,
-- unsubscribe, a closed socket leaving its topics, the backlog rule for a subscriber that
-- never reads, 1,000 subscribers.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")

local function publish_n(from, topic, n, kind, size, burst)
  for i = 1, n do
    local m = from .. "-" .. i
    if #m < size then m = m .. string.rep(".", size - #m) end
    assert(pubsub.publish(topic, m, kind))
    if size > 4096 and i % 4 == 0 and not burst then timer.sleep(5) end -- big ones paced: readers keep up
  end
end

if cluster.is_master then
  cluster.setup{ workers = 2 }
  local seen = 0
  pubsub.subscribe("news", function(d, t, k) seen = seen + 1 end)
  cluster.on("request", function(w, msg)
    local before = pubsub.stats().forwarded
    publish_n("master", msg.topic, msg.n, msg.kind, msg.size, msg.burst)
    if msg.topic == "news" then say("master lua news " .. seen) end
    return "forwarded=" .. (pubsub.stats().forwarded - before) .. " workers=" .. tostring(pubsub.topics()[msg.topic])
  end)
else
  local me = cluster.worker
  local lua_got = 0
  pubsub.subscribe("news", function() lua_got = lua_got + 1 end)
  http.create_server(function(req, res)
    if req.path == "/pub" then
      local from, topic, n, kind, size = req.query:match("^(%a+),([%w_]+),(%d+),(%a+),(%d+)$")
      n, size = tonumber(n), tonumber(size)
      if from == "worker" then
        publish_n(from, topic, n, kind, size)
        return 200, "published\n"
      end
      return 200, me:request({ topic = topic, n = n, kind = kind, size = size, burst = from == "burst" }, 60000)
    elseif req.path == "/stats" then
      local s = pubsub.stats()
      return 200, "w" .. me.id .. " lua=" .. lua_got .. " delivered=" .. s.delivered .. " slow_closed=" .. s.slow_closed
    end
    local ws = req:websocket()
    if not ws then return end
    ws:on("close", function(code) if code == 1008 then say("w" .. me.id .. " closed 1008") end end)
    ws:on("message", function(data)
      local op, topic = data:match("^(%a+) (.*)$")
      local ok, err
      if op == "sub" then ok, err = ws:subscribe(topic) else ok, err = ws:unsubscribe(topic) end
      ws:send(ok and "ok" or tostring(err))
    end)
    assert(ws:subscribe(req.query))
    ws:send("hello w" .. me.id)
    -- the handler returns: the subscribed socket lives on
  end):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

local function client(port, mode, ...)
  local out, rc = H.sh("timeout 120 /usr/bin/python3 " .. H.root .. "/spec/ws_pubsub_client.py " .. mode .. " " .. port
    .. " " .. table.concat({ ... }, " ") .. " 2>&1")
  assert.equals(0, rc, out)
  return out
end

local function worker_pids(p)
  local pids = {}
  for _, pid in ipairs(H.children(p.pid)) do
    pids[#pids + 1] = pid
  end
  return pids
end

-- a worker's memory bound: a few MiB of backlog per socket, not the publishes' total. ASan's
-- allocator keeps freed memory in quarantine (256 MB by default), which these bursts of 64 KiB
-- buffers fill: under it the server gets a 16 MB quarantine and twice the bound
local ASAN = os.getenv("ASAN_OPTIONS")
local MAX_RSS_KB = (ASAN and 80 or 40) * 1024
local SERVER_ASAN = ASAN and (ASAN .. ":quarantine_size_mb=16") or nil

local function rss_kb(pid)
  local s = H.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

describe("ws:subscribe", function()
  local p, port, ctl
  setup(function()
    port = H.free_port()
    ctl = H.tmpdir() .. "/ctl.sock"
    p = H.start_app(APP, { "-w", "2", "--control", ctl }, { env = { WS_PORT = tostring(port), ASAN_OPTIONS = SERVER_ASAN } })
    assert.truthy(H.wait_listening(port, 20000), p and p:output())
  end)
  teardown(function()
    if p then p:stop() end
  end)

  it("sockets subscribed in 2 workers get each publish once, in order, with its kind, from a worker and from the master; Lua subscribers too", function()
    local out = client(port, "fanout", 6)
    assert.matches("workers 2\n", out, 1, true)
    assert.matches("fanout bad 0\n", out, 1, true)
    assert.truthy(H.wait_for(function() return p:stdout():find("master lua news 40", 1, true) end, 5000), p:output())
    -- each worker's Lua subscriber got all 40 too
    for _ = 1, 10 do
      local s = H.curl("http://127.0.0.1:" .. port .. "/stats")
      assert.matches("lua=40 ", s, 1, true)
    end
  end)

  it("luacluster status and the metrics count publishes, forwards and deliveries", function()
    local st = H.sh(H.bin .. " status --control " .. ctl)
    -- the fanout above: 40 publishes to news (each forwarded to 2 workers) and 2 HTTP requests' worth
    local pubs, fwd, dlv = st:match("pubsub: (%d+) publishes, (%d+) forwarded to workers, (%d+) delivered to WebSockets")
    assert.truthy(pubs, st)
    assert.is_true(tonumber(pubs) >= 40 and tonumber(fwd) >= 80 and tonumber(dlv) >= 6 * 40, st)
    local m = H.sh(H.bin .. " metrics --control " .. ctl)
    assert.truthy(m:find("\nluacluster_pubsub_publishes_total " .. pubs .. "\n", 1, true), m)
    local sum = 0
    for n in m:gmatch('\nluacluster_worker_pubsub_deliveries_total{worker="%d",generation="1"} (%d+)') do sum = sum + tonumber(n) end
    assert.equal(tonumber(dlv), sum, m)
  end)

  it("ws:unsubscribe stops the publishes of that topic; a socket takes a second topic", function()
    local out = client(port, "unsub")
    assert.matches("b ok\n", out, 1, true)
    assert.matches("a nothing\n", out, 1, true)
    assert.matches("a again ok\n", out, 1, true)
  end)

  it("a socket that closes or vanishes leaves its topics: the master stops forwarding when a topic has none", function()
    local out = client(port, "leave")
    assert.matches("before 1 1\n", out, 1, true)
    assert.matches("after forwarded=0 workers=nil\n", out, 1, true)
    assert.matches("after2 forwarded=0 workers=nil\n", out, 1, true)
    assert.matches("c nothing\n", out, 1, true)
  end)

  it("a subscriber that never reads is closed with 1008 past the backlog limit; the others get every publish; the worker's memory stays bounded", function()
    -- 600 publishes of 64 KiB (37.5 MiB) to 2 stuck sockets and 2 readers
    local out = client(port, "slow", 600, 65536)
    assert.matches("bad 0 ", out, 1, true)
    assert.truthy(H.wait_for(function() return p:count("closed 1008", true) == 2 end, 10000), p:output())
    for _, pid in ipairs(worker_pids(p)) do
      assert.is_true(rss_kb(pid) < MAX_RSS_KB, "worker " .. pid .. " has " .. rss_kb(pid) .. " kB")
    end
    local slow = 0
    for _ = 1, 10 do
      slow = slow + tonumber(H.curl("http://127.0.0.1:" .. port .. "/stats"):match("slow_closed=(%d+)"))
    end
    assert.is_true(slow > 0)
  end)

  it("a burst of 64 KiB publishes (nothing between them) keeps the worker's memory bounded", function()
    -- 1500 x 64 KiB = 94 MiB written by the master at once to the worker(s) with subscribers
    local out = client(port, "burst", 1500, 65536)
    assert.matches("burst done\n", out, 1, true)
    for _, pid in ipairs(worker_pids(p)) do
      assert.is_true(rss_kb(pid) < MAX_RSS_KB, "worker " .. pid .. " has " .. rss_kb(pid) .. " kB")
    end
  end)

  it("1,000 subscribers over 2 workers each get one publish once", function()
    local out = client(port, "many", 1000)
    assert.matches("many sockets 1000 workers 2 got 1000 ", out, 1, true)
    assert.matches("many extra 0\n", out, 1, true)
  end)
end)
