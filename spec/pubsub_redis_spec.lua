-- pubsub across hosts: two luacluster instances (two masters, as on two hosts) name the same
-- real redis-server (started on a free loopback port, stopped by pid) in
-- cluster.setup{ pubsub = { redis = } }. Lua subscribers in the workers and the master of
-- both get every publish of either host's master and workers exactly once, in order from one
-- publisher, binary data intact; while Redis is down local delivery goes on and the outage is
-- logged once, and cross-host delivery comes back by itself when Redis does; a reload keeps
-- one subscription connection per master (CLIENT LIST); bad options are refused at setup.
local H = require("helper")

local N = 20 -- text publishes per burst (then one binary)

local APP = [[
local pubsub = require("luacluster.pubsub")
local http = require("luacluster.http")
local HOST, REDIS, PREFIX = process.argv[1], process.argv[2], process.argv[3] or "spec:"
local t = {}
for i = 0, 255 do t[#t + 1] = string.char(i) end
local BIN = table.concat(t) .. "\r\n\0end\r\n"
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
-- n text publishes, then one binary, from this process
local function burst(who, n)
  for i = 1, n do pubsub.publish("chat", who .. "-" .. i) end
  pubsub.publish("chat", who .. "|" .. BIN, "binary")
end
local function show(where)
  return function(data, topic, kind)
    if kind == "binary" then
      local who, rest = data:match("^([^|]*)|(.*)$")
      say(HOST, where, "got", topic, kind, who, rest == BIN and "intact" or ("broken:" .. hex(data)))
    else
      say(HOST, where, "got", topic, kind, data)
    end
  end
end
if cluster.is_master then
  cluster.setup{ workers = 2, pubsub = { redis = "127.0.0.1:" .. REDIS, prefix = PREFIX } }
  pubsub.subscribe("chat", show("m"))
  cluster.on("message", function(_, msg)
    if type(msg) == "table" and msg.burst then burst(msg.burst, msg.n) end
  end)
else
  local me = cluster.worker
  pubsub.subscribe("chat", show("w" .. me.id))
  http.create_server(function(req)
    local from, who, n = req.url:match("^/pub/(%a+)/(%w+)/(%d+)$")
    if from == "worker" then
      burst(who, tonumber(n))
    elseif from == "master" then
      me:send({ burst = who, n = tonumber(n) })
    end
    return 200, "ok\n"
  end):listen()
  say(HOST, "w" .. me.id, "gen" .. me.generation, "subscribed")
end
]]


-- CLIENT LIST -> { { id =, name =, psub = }, ... }
local function clients(port)
  local out = H.sh("redis-cli -p " .. port .. " CLIENT LIST")
  local list = {}
  for line in out:gmatch("[^\n]+") do
    list[#list + 1] = { id = line:match("id=(%d+)"), name = line:match("name=(%S*)"),
      psub = tonumber(line:match("psub=(%d+)")) }
  end
  return list
end


-- the connections named name (luacluster-pubsub-<pid> | luacluster-publish-<pid>)
local function named(port, name)
  local out = {}
  for _, c in ipairs(clients(port)) do
    if c.name == name then
      out[#out + 1] = c
    end
  end
  return out
end


describe("pubsub across hosts through Redis", function()
  local redis, rport

  before_each(function()
    rport = H.free_port()
    redis = H.start_redis(rport)
  end)

  after_each(function()
    H.cleanup()
    if redis then
      redis:stop()
      redis = nil
    end
  end)

  -- an instance ("a host") with 2 workers, its HTTP port and its own app folder
  local function host(tag, src)
    local own = H.tmpdir()
    local port = H.free_port()
    H.write_file(own .. "/app.lua", H.prelude .. (src or APP))
    local p = H.start(own .. "/app.lua", { "-p", port, "--control", own .. "/ctl.sock" }, { args = { tag, rport }, dir = own })
    p.port, p.tag, p.app, p.ctl = port, tag, own .. "/app.lua", own .. "/ctl.sock"
    return p
  end

  -- the value of metric name (no labels) on host p
  local function metric(p, name)
    local m = H.sh(H.bin .. " metrics --control " .. p.ctl)
    return tonumber(m:match("\n" .. name .. " (%S+)\n")), m
  end

  -- both workers subscribed, the master's subscription in Redis
  local function wait_ready(p, gen)
    gen = gen or 1
    assert(H.wait_for(function()
      return p:count(p.tag .. " w1 gen" .. gen .. " subscribed", true) == 1
        and p:count(p.tag .. " w2 gen" .. gen .. " subscribed", true) == 1
    end, 20000), p:output())
    assert(H.wait_for(function()
      local s = named(rport, "luacluster-pubsub-" .. p.pid)
      return #s == 1 and s[1].psub == 1
    end, 10000), p:output() .. H.sh("redis-cli -p " .. rport .. " CLIENT LIST"))
    assert(H.wait_listening(p.port, 10000), p:output())
    H.sleep(200) -- (the workers' ps_sub have reached their master)
  end

  -- hosts A and B, both ready
  local function two_hosts()
    local a, b = host("A"), host("B")
    wait_ready(a)
    wait_ready(b)
    return a, b
  end

  -- a burst of N text publishes and one binary, named who, from host p's master or a worker
  local function pub(p, from, who)
    local body, status = H.curl("http://127.0.0.1:" .. p.port .. "/pub/" .. from .. "/" .. who .. "/" .. N)
    assert.equal(200, status, body .. p:output())
  end

  local WHERE = { "w1", "w2", "m" }

  -- every subscriber of host p (where: WHERE) has who's burst (N texts, one binary)?
  local function has(p, who, where_list)
    for _, where in ipairs(where_list or WHERE) do
      local pre = p.tag .. " " .. where .. " got chat "
      if p:count(pre .. "text " .. who .. "-" .. N .. "\n", true) < 1
          or p:count(pre .. "binary " .. who .. " ", true) < 1 then
        return false
      end
    end
    return true
  end

  -- ... exactly once each, in publish order, the binary one intact
  local function check(p, who, where_list)
    local out = p:stdout()
    for _, where in ipairs(where_list or WHERE) do
      local pre = p.tag .. " " .. where .. " got chat "
      local last = 0
      for i = 1, N do
        local line = pre .. "text " .. who .. "-" .. i .. "\n"
        assert.equal(1, p:count(line, true), line .. " in\n" .. out)
        local at = out:find(line, 1, true)
        assert(at > last, "out of order at " .. line .. "\n" .. out)
        last = at
      end
      assert.equal(1, p:count(pre .. "binary " .. who .. " ", true), out)
      assert.equal(1, p:count(pre .. "binary " .. who .. " intact\n", true), out)
      assert(out:find(pre .. "binary " .. who .. " intact\n", 1, true) > last, "the binary one came early\n" .. out)
    end
  end

  it("delivers every host's publishes, from its master and its workers, once to every subscriber of both hosts, in order, binary intact", function()
    local a, b = two_hosts()
    pub(a, "worker", "Aw")
    pub(a, "master", "Am")
    pub(b, "worker", "Bw")
    pub(b, "master", "Bm")
    for _, who in ipairs({ "Aw", "Am", "Bw", "Bm" }) do
      assert(H.wait_for(function() return has(a, who) and has(b, who) end, 10000),
        who .. "\n" .. a:output() .. b:output())
    end
    H.sleep(500) -- (a second copy would come now)
    for _, p in ipairs({ a, b }) do
      for _, who in ipairs({ "Aw", "Am", "Bw", "Bm" }) do
        check(p, who)
      end
    end
    -- one subscription and one publishing connection per master
    for _, p in ipairs({ a, b }) do
      assert.equal(1, #named(rport, "luacluster-pubsub-" .. p.pid))
      assert.equal(1, #named(rport, "luacluster-publish-" .. p.pid))
    end
    -- a message on the prefix that no luacluster master published is not delivered
    H.sh("redis-cli -p " .. rport .. " PUBLISH spec:chat foreign")
    pub(b, "worker", "Bz")
    assert(H.wait_for(function() return has(a, "Bz") end, 10000), a:output())
    assert.equal(0, a:count("foreign", true), a:output())
  end)

  it("goes on delivering on each host while Redis is down, logs the outage once, and crosses hosts again when Redis is back", function()
    local a, b = two_hosts()
    redis:stop()
    redis = nil
    for _, p in ipairs({ a, b }) do
      assert(p:wait_output("does not answer", 10000, true), p:output())
    end
    -- publishes during the outage reach this host's subscribers (not the other host's)
    for i = 1, 3 do
      pub(a, "worker", "Ad" .. i)
      pub(b, "master", "Bd" .. i)
      H.sleep(500) -- (reconnects are tried meanwhile)
    end
    for i = 1, 3 do
      assert(H.wait_for(function() return has(a, "Ad" .. i) and has(b, "Bd" .. i) end, 10000),
        a:output() .. b:output())
    end
    H.sleep(1500)
    for i = 1, 3 do
      check(a, "Ad" .. i)
      check(b, "Bd" .. i)
      assert.equal(0, b:count("Ad" .. i, true))
      assert.equal(0, a:count("Bd" .. i, true))
    end
    -- logged once per host, not once per publish or per reconnect
    assert.equal(1, a:count("does not answer", true), a:output())
    assert.equal(1, b:count("does not answer", true), b:output())
    -- the metrics say the link is down, and count what stayed here
    local up, m = metric(a, "luacluster_pubsub_redis_up")
    assert.equal(0, up, m)
    assert(metric(a, "luacluster_pubsub_redis_dropped_total") >= 3 * (N + 1), m)
    -- Redis again on the same port: both come back by themselves
    redis = H.start_redis(rport)
    for _, p in ipairs({ a, b }) do
      assert(p:wait_output("answers again", 15000, true), p:output())
    end
    wait_ready(a)
    wait_ready(b)
    pub(a, "worker", "Aback")
    pub(b, "master", "Bback")
    assert(H.wait_for(function()
      return has(a, "Aback") and has(b, "Aback") and has(a, "Bback") and has(b, "Bback")
    end, 10000), a:output() .. b:output())
    H.sleep(300)
    for _, p in ipairs({ a, b }) do
      check(p, "Aback")
      check(p, "Bback")
    end
    assert.equal(1, a:count("does not answer", true), a:output())
    assert.equal(1, a:count("answers again", true), a:output())
    assert.equal(1, (metric(a, "luacluster_pubsub_redis_up")))
    assert(metric(a, "luacluster_pubsub_redis_sent_total") >= N + 1)
    assert(metric(b, "luacluster_pubsub_redis_received_total") >= N + 1)
  end)

  it("finds a Redis that hangs (SIGSTOP) down instead of queueing for it, and crosses hosts again when it goes on", function()
    local a, b = two_hosts()
    redis:kill(19) -- SIGSTOP: the kernel takes the bytes, nothing answers
    pub(a, "worker", "Ah1")
    assert(a:wait_output("does not answer", 15000, true), a:output())
    assert(H.wait_for(function() return has(a, "Ah1") end, 5000), a:output())
    pub(a, "worker", "Ah2")
    assert(H.wait_for(function() return has(a, "Ah2") end, 5000), a:output())
    redis:kill(18) -- SIGCONT
    assert(a:wait_output("answers again", 15000, true), a:output())
    wait_ready(a)
    wait_ready(b)
    pub(a, "master", "Aon")
    assert(H.wait_for(function() return has(b, "Aon") and has(a, "Aon") end, 10000), a:output() .. b:output())
    H.sleep(300)
    check(a, "Ah2")
    check(a, "Aon")
    check(b, "Aon")
    assert.equal(0, b:count("Ah2", true), b:output()) -- (made while Redis was down)
    assert.equal(1, a:count("does not answer", true), a:output())
  end)

  it("logs once that Redis refuses PUBLISH (an ACL), keeps the subscription, and crosses again when it is allowed", function()
    local a, b = two_hosts()
    local sub_id = named(rport, "luacluster-pubsub-" .. a.pid)[1].id
    H.sh("redis-cli -p " .. rport .. " ACL SETUSER default -publish")
    for i = 1, 3 do
      pub(a, "worker", "Ar" .. i)
    end
    assert(H.wait_for(function() return has(a, "Ar3") end, 10000), a:output())
    assert(a:wait_output("refuses PUBLISH ('NOPERM", 10000, true), a:output())
    H.sleep(500)
    assert.equal(1, a:count("refuses PUBLISH", true), a:output())
    assert.equal(0, a:count("does not answer", true), a:output())
    assert.equal(0, b:count("Ar1", true), b:output())
    H.sh("redis-cli -p " .. rport .. " ACL SETUSER default +publish")
    pub(a, "worker", "Aok")
    assert(H.wait_for(function() return has(b, "Aok") end, 10000), a:output() .. b:output())
    H.sleep(300)
    check(a, "Aok")
    check(b, "Aok")
    assert.equal(sub_id, named(rport, "luacluster-pubsub-" .. a.pid)[1].id) -- the same subscription
  end)

  -- hosts A and B whose masters publish on "big" what first(pubsub) does (master subscribers
  -- say "<host> m got <size> <n>"), then 24 x 1 MiB in one go (nothing leaves meanwhile), when
  -- A's worker is asked; A has been asked
  local function big_burst(first)
    local src = [[
local pubsub = require("luacluster.pubsub")
local http = require("luacluster.http")
local HOST, REDIS = process.argv[1], process.argv[2]
if cluster.is_master then
  cluster.setup{ workers = 1, pubsub = { redis = "127.0.0.1:" .. REDIS, prefix = "spec:" } }
  local n = 0
  pubsub.subscribe("big", function(d) n = n + 1 say(HOST, "m got", #d, n) end)
  cluster.on("message", function()
    ]] .. first .. [[

    timer.after(500, function()
      local mib = string.rep("x", 1048576)
      for _ = 1, 24 do pubsub.publish("big", mib) end
    end)
  end)
else
  http.create_server(function()
    cluster.worker:send("go")
    return 200, "ok\n"
  end):listen()
end
]]
    local a, b = host("A", src), host("B", src)
    for _, p in ipairs({ a, b }) do
      assert(H.wait_for(function() return #named(rport, "luacluster-pubsub-" .. p.pid) == 1 end, 10000), p:output())
    end
    assert(H.wait_listening(a.port, 10000), a:output())
    local _, status = H.curl("http://127.0.0.1:" .. a.port .. "/")
    assert.equal(200, status, a:output())
    assert(H.wait_for(function() return a:count("A m got 1048576", true) == 24 end, 20000), a:output()) -- all here
    H.sleep(1500)
    local got = b:count("B m got 1048576", true)
    assert(got >= 15 and got <= 17, got .. " of 24 crossed\n" .. b:output())
    return a, b
  end

  it("keeps at most 16 MiB waiting for Redis: a bigger burst's rest stays on this host, logged once", function()
    local a = big_burst("")
    assert.equal(1, a:count("bytes of publishes wait for Redis", true), a:output())
  end)

  it("a single publish over the 16 MiB bound stays on this host, logged as such; a burst's overflow after it is still logged", function()
    local a, b = big_burst('pubsub.publish("big", string.rep("y", 17 * 1048576))')
    assert.equal(1, a:count("A m got 17825792 1\n", true), a:output())
    assert.equal(0, b:count("B m got 17825792", true), b:output())
    assert.equal(1, a:count("is over the 16777216 bytes that may wait for Redis", true), a:output())
    assert.equal(1, a:count("bytes of publishes wait for Redis", true), a:output())
  end)

  it("a message from Redis over this host's max_message_size is not delivered (logged once) and not held in memory; the link stays", function()
    local dir = H.tmpdir()
    local p = H.start_app([[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 1, max_message_size = 65536, pubsub = { redis = "127.0.0.1:" .. process.argv[1], prefix = "spec:" } }
  pubsub.subscribe("chat", function(d) say("master got " .. #d) end)
else
  pubsub.subscribe("chat", function(d) say("worker got " .. #d) end)
  say("worker subscribed")
end
]], {}, { args = { rport } })
    assert(p:wait_output("worker subscribed", 20000), p:output())
    assert(H.wait_for(function()
      local s = named(rport, "luacluster-pubsub-" .. p.pid)
      return #s == 1 and s[1].psub == 1
    end, 10000), p:output())
    H.sleep(300)
    -- another host's publishes (its format: version, kind, an origin that is not ours, the data)
    local function publish(size, what)
      local f = assert(io.open(dir .. "/msg", "wb"))
      f:write("\1t", "ORIGIN42")
      local chunk = string.rep(what, 1048576)
      local left = size
      while left > 0 do
        f:write(chunk:sub(1, math.min(left, #chunk)))
        left = left - #chunk
      end
      f:close()
      H.sh("redis-cli -p " .. rport .. " -x PUBLISH spec:chat < " .. dir .. "/msg")
    end
    publish(1000, "a")
    assert(p:wait_output("worker got 1000", 10000), p:output())
    publish(70000, "b")                 -- over 65536: nobody
    -- Redis configured to send a subscriber any backlog (its default closes one past 32 MB)
    H.sh("redis-cli -p " .. rport .. " CONFIG SET client-output-buffer-limit 'pubsub 0 0 0'")
    publish(150 * 1048576, "c")         -- 150 MiB: read and dropped, not held
    publish(2000, "d")
    assert(p:wait_output("worker got 2000", 30000), p:output())
    local out = p:stdout()
    assert.equal(1, p:count("master got 1000\n", true), out)
    assert.equal(1, p:count("master got 2000\n", true), out)
    assert.equal(0, p:count("got 70000", true), out)
    assert.equal(0, p:count("got 157286400", true), out)
    assert.equal(1, p:count("over this host's max_message_size", true), p:output())
    assert.equal(0, p:count("does not answer", true), p:output())
    local hwm = tonumber(H.read_file("/proc/" .. p.pid .. "/status"):match("VmHWM:%s*(%d+)"))
    assert(hwm < 100 * 1024, "the master's peak RSS: " .. hwm .. " kB\n" .. p:output())
    p:stop()
  end)

  it("keeps one subscription connection per master across a reload, and delivers to the new generation", function()
    local a, b = two_hosts()
    local sub_before = named(rport, "luacluster-pubsub-" .. a.pid)[1].id
    local pub_before = named(rport, "luacluster-publish-" .. a.pid)[1].id
    a:kill("SIGHUP")
    wait_ready(a, 2)
    -- (the old generation gone: a draining worker still gets every publish, under the same id)
    assert(H.wait_for(function() return a:count(") finished", true) >= 2 end, 15000), a:output())
    -- the same connections, not new ones beside the old
    local subs, pubs = named(rport, "luacluster-pubsub-" .. a.pid), named(rport, "luacluster-publish-" .. a.pid)
    assert.equal(1, #subs, H.sh("redis-cli -p " .. rport .. " CLIENT LIST"))
    assert.equal(1, #pubs, H.sh("redis-cli -p " .. rport .. " CLIENT LIST"))
    assert.equal(sub_before, subs[1].id)
    assert.equal(pub_before, pubs[1].id)
    pub(b, "worker", "Bafter")
    pub(a, "worker", "Aafter")
    pub(a, "master", "Mafter")
    assert(H.wait_for(function()
      return has(a, "Bafter") and has(b, "Aafter") and has(b, "Mafter") and has(a, "Aafter")
    end, 10000), a:output() .. b:output())
    H.sleep(300)
    for _, who in ipairs({ "Bafter", "Aafter", "Mafter" }) do
      check(a, who)
      check(b, who)
    end
    -- a reload whose code names another prefix: the link is made again, still one of each
    H.write_file(a.app, H.prelude .. APP:gsub('or "spec:"', 'or "other:"'))
    a:kill("SIGHUP")
    wait_ready(a, 3)
    assert(H.wait_for(function() return a:count(") finished", true) >= 4 end, 15000), a:output())
    assert.are_not.equal(sub_before, named(rport, "luacluster-pubsub-" .. a.pid)[1].id)
    assert.equal(1, #named(rport, "luacluster-publish-" .. a.pid))
    pub(b, "worker", "Bother")
    pub(a, "worker", "Aother")
    assert(H.wait_for(function() return has(a, "Aother") and has(b, "Bother") end, 10000),
      a:output() .. b:output())
    H.sleep(500)
    assert.equal(0, a:count("Bother", true), a:output())
    assert.equal(0, b:count("Aother", true), b:output())
  end)
end)


describe("cluster.setup{ pubsub = }", function()
  after_each(function()
    H.cleanup()
  end)

  it("refuses a bad option with a clear error", function()
    local p = H.start_app([[
local function try(opts)
  local ok, err = pcall(cluster.setup, { workers = 0, pubsub = opts })
  say("refused", tostring(not ok), tostring(err))
end
if cluster.is_master then
  try({ redis = "localhost" })
  try({ redis = "127.0.0.1:99999" })
  try({ redis = 6379 })
  try({ redis = "127.0.0.1:6379", prefix = 1 })
  try({ redis = "127.0.0.1:6379", channel = "x" })
  try("127.0.0.1:6379")
  cluster.stop()
end
]], {})
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:stdout()
    assert.truthy(out:find('refused true [^\n]*cluster.setup: pubsub.redis must be "host:port", not localhost\n'), out)
    assert.truthy(out:find('refused true [^\n]*pubsub.redis must be "host:port", not 127.0.0.1:99999\n'), out)
    assert.truthy(out:find('refused true [^\n]*pubsub.redis must be "host:port", not 6379\n'), out)
    assert.truthy(out:find("refused true [^\n]*pubsub.prefix must be a string\n"), out)
    assert.truthy(out:find("refused true [^\n]*pubsub: unknown option 'channel' %(expected redis, prefix%)\n"), out)
    assert.truthy(out:find("refused true [^\n]*cluster.setup: pubsub must be a table\n"), out)
  end)
end)


describe("pubsub = { redis = } naming a port where no Redis answers", function()
  after_each(function()
    H.cleanup()
  end)

  it("backs off from a Redis that answers the subscription and then closes it at once (a link that flaps), not a loop", function()
    -- a "Redis" that answers CLIENT SETNAME and PSUBSCRIBE, then closes the subscription
    local fake = [=[
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(64)
def serve(c):
    f = c.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line: return
            n = int(line[1:]); args = []
            for _ in range(n):
                size = int(f.readline()[1:]); args.append(f.read(size + 2)[:-2])
            if args[0].upper() == b"CLIENT": c.sendall(b"+OK\r\n")
            elif args[0].upper() == b"PSUBSCRIBE":
                p = args[1]
                c.sendall(b"*3\r\n$10\r\npsubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(p), p))
                return
            else: c.sendall(b":0\r\n")
    except Exception: return
    finally: c.close()
while True:
    c, _ = srv.accept(); print("accepted", flush=True)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
]=]
    local port = H.free_port()
    local dir = H.tmpdir()
    H.write_file(dir .. "/fake.py", fake)
    local srv = H.spawn({ "/usr/bin/python3", dir .. "/fake.py", tostring(port) }, { dir = dir })
    assert(H.wait_listening(port, 10000), srv:output())
    local p = H.start_app([[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 1, pubsub = { redis = "127.0.0.1:" .. process.argv[1] } }
  pubsub.subscribe("t", function(d) say("master got " .. d) end)
  timer.every(300, function() pubsub.publish("t", "tick") end)
end
]], {}, { args = { port } })
    assert(p:wait_output("does not answer", 10000, true), p:output())
    local before = srv:count("accepted", true)
    H.sleep(3000)
    -- two connections a try; a try at 100, 200, 400 ... 3000 ms: a handful in 3 s (a loop: dozens)
    local tries = (srv:count("accepted", true) - before) / 2
    assert(tries >= 1 and tries <= 6, tries .. " tries in 3 s\n" .. p:output())
    assert(p:count("does not answer", true) <= 7, p:output())
    assert(p:count("master got tick", true) >= 5, p:output())
    srv:stop()
  end)

  it("delivers locally, logs once, and tries again with backoff, not in a loop", function()
    local port = H.free_port()
    local web = H.spawn({ "/usr/bin/python3", "-m", "http.server", tostring(port), "--bind", "127.0.0.1" },
      { dir = H.tmpdir() })
    assert(H.wait_listening(port, 10000), web:output())
    local p = H.start_app([[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 1, pubsub = { redis = "127.0.0.1:" .. process.argv[1] } }
  pubsub.subscribe("t", function(d) say("master got " .. d) end)
  timer.every(300, function() pubsub.publish("t", "tick") end)
else
  pubsub.subscribe("t", function(d) say("worker got " .. d) end)
end
]], {}, { args = { port } })
    assert(p:wait_output("does not answer", 10000, true), p:output())
    -- (the reply named, as the service on the port gave it)
    assert(p:wait_output("not a Redis reply: '<!DOCTYPE", 1000, true), p:output())
    local before = web:count("code 400", true)
    H.sleep(3000)
    local tries = web:count("code 400", true) - before
    -- a try at 100, 200, 400 ... 3000 ms: a handful in 3 s (a loop would be hundreds)
    assert(tries >= 1 and tries <= 6, tries .. " connections in 3 s\n" .. web:output())
    assert.equal(1, p:count("does not answer", true), p:output())
    assert(p:count("worker got tick", true) >= 5, p:output())
    assert(p:count("master got tick", true) >= 5, p:output())
    web:stop()
  end)
end)
