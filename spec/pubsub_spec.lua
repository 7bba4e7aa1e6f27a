-- luacluster.pubsub with real processes: a publish from the master or a worker reaches every
-- subscriber in every worker once, only subscribed workers get the frame, unsubscribe and a
-- killed worker take a worker out of a topic, one publisher's order is kept, bad arguments raise.
local H = require("helper")


describe("pubsub", function()
  after_each(function()
    H.cleanup()
  end)

  it("delivers a worker's and the master's publishes to every subscriber in every worker, in order, only to subscribed workers", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 3 }
  local subscribed = 0
  pubsub.subscribe("news", function(data) say("master got " .. data) end)
  cluster.on("message", function(w, msg)
    if msg == "subscribed" then
      subscribed = subscribed + 1
      if subscribed == 3 then
        timer.after(200, function()
          -- publish from the master, then ask worker 3 (no subscriber of "news") to publish
          for i = 1, 5 do pubsub.publish("news", "m" .. i) end
          cluster.workers[3]:send("publish")
        end)
      end
    elseif msg == "stats" then
      local t = pubsub.topics()
      say("master forwarded=" .. pubsub.stats().forwarded .. " news_workers=" .. tostring(t.news))
    else
      say(msg)
    end
  end)
else
  local me = cluster.worker
  if me.id ~= 3 then
    -- two subscribers in each of workers 1 and 2
    pubsub.subscribe("news", function(data, topic, kind) say("w" .. me.id .. "a " .. topic .. " " .. data .. " " .. kind) end)
    pubsub.subscribe("news", function(data) say("w" .. me.id .. "b " .. data) end)
  else
    pubsub.subscribe("other", function(data) say("w3 other " .. data) end)
    me:on("message", function(msg)
      if msg == "publish" then
        for i = 1, 20 do pubsub.publish("news", "p" .. i, "binary") end
        timer.after(1000, function()
          me:send("w3 received=" .. pubsub.stats().received)
          me:send("stats")
        end)
      end
    end)
  end
  me:send("subscribed")
end
]]
    local p = H.start_app(src, { "-w", 3 })
    assert.truthy(p:wait_output("w3 received=", 20000), p:output())
    assert.truthy(p:wait_output("master forwarded=", 5000), p:output())
    local out = p:stdout()
    for _, w in ipairs({ "w1", "w2" }) do
      for i = 1, 5 do
        assert.equal(1, p:count(w .. "a news m" .. i .. " text\n", true), out)
        assert.equal(1, p:count(w .. "b m" .. i .. "\n", true), out)
      end
      local last = 0
      for i = 1, 20 do
        assert.equal(1, p:count(w .. "a news p" .. i .. " binary\n", true), out)
        -- order per publisher: p1..p20 in that order
        local at = out:find(w .. "a news p" .. i .. " binary\n", 1, true)
        assert.truthy(at > last, "out of order at p" .. i .. "\n" .. out)
        last = at
      end
    end
    for i = 1, 20 do
      assert.equal(1, p:count("master got p" .. i .. "\n", true), out)
    end
    assert.equal(5, p:count("master got m", true), out)
    -- worker 3 has no subscriber of "news": the master never forwarded it a frame
    assert.truthy(out:find("w3 received=0\n", 1, true), out)
    assert.equal(0, p:count("w3 other", true), out)
    -- 25 publishes to 2 workers
    assert.truthy(out:find("master forwarded=50 news_workers=2\n", 1, true), out)
    p:stop()
  end)

  it("unsubscribe stops delivery; the last one takes the worker out of the topic", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("message", function(w, msg)
    if msg == "pub" then
      pubsub.publish("t", "x" .. pubsub.stats().published)
      w:send("published")
    elseif msg == "stats" then
      say("forwarded=" .. pubsub.stats().forwarded .. " workers=" .. tostring(pubsub.topics().t))
    else
      say(msg)
    end
  end)
else
  local me = cluster.worker
  local a = pubsub.subscribe("t", function(d) say("a " .. d) end)
  local b = pubsub.subscribe("t", function(d) say("b " .. d) end)
  local step = 0
  me:on("message", function()
    step = step + 1
    if step == 1 then
      a:cancel()
      me:send("pub")
    elseif step == 2 then
      b:unsubscribe()
      b:cancel() -- twice: nothing
      me:send("pub")
    elseif step == 3 then
      timer.after(300, function() me:send("received=" .. pubsub.stats().received) me:send("stats") end)
    end
  end)
  timer.after(100, function() me:send("pub") end)
end
]]
    local p = H.start_app(src, { "-w", 1 })
    assert.truthy(p:wait_output("forwarded=", 20000), p:output())
    local out = p:stdout()
    assert.equal(1, p:count("a x0\n", true), out)
    assert.equal(1, p:count("b x0\n", true), out)
    assert.equal(0, p:count("a x1", true), out)
    assert.equal(1, p:count("b x1\n", true), out)
    assert.equal(0, p:count(" x2", true), out)
    assert.truthy(out:find("received=2\n", 1, true), out)
    assert.truthy(out:find("forwarded=2 workers=nil\n", 1, true), out)
    p:stop()
  end)

  it("drops a SIGKILLed subscriber's worker from every topic; its replacement registers its own", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 2 }
  local onlines = 0
  cluster.on("online", function()
    onlines = onlines + 1
    if onlines == 3 then -- worker 2's replacement
      timer.after(500, function()
        local before = pubsub.stats().forwarded
        pubsub.publish("k", "after")
        say("topics k=" .. tostring(pubsub.topics().k) .. " j=" .. tostring(pubsub.topics().j)
          .. " forwarded=" .. (pubsub.stats().forwarded - before))
      end)
    end
  end)
else
  local me = cluster.worker
  pubsub.subscribe("k", function(d) say("w" .. me.id .. " got " .. d) end)
  if me.id == 2 then
    pubsub.subscribe("j", function() end)
  end
  say("pid " .. me.id .. " " .. me.pid)
end
]]
    local p = H.start_app(src, { "-w", 2 })
    assert.truthy(p:wait_output("pid 2 %d+", 20000), p:output())
    assert.truthy(p:wait_output("pid 1 %d+", 20000), p:output())
    H.sleep(300)
    local pid2 = tonumber(p:stdout():match("pid 2 (%d+)"))
    H.sh("kill -9 " .. pid2)
    assert.truthy(p:wait_output("topics k=", 20000), p:output())
    local out = p:stdout()
    assert.equal(2, p:count("pid 2 ", true), out) -- the replacement started
    -- the dead worker is out of both its topics; the replacement took "k" and "j" again
    assert.truthy(out:find("topics k=2 j=1 forwarded=2\n", 1, true), out)
    assert.truthy(H.wait_for(function() return p:count("w2 got after", true) == 1 end, 5000), p:output())
    assert.equal(1, p:count("w1 got after", true), out)
    p:stop()
  end)

  it("after a reload, the new generation's subscriptions register as its workers start", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("online", function(w)
    if w.generation == 2 then
      timer.after(1000, function()
        pubsub.publish("r", "after-reload")
        say("topics r=" .. tostring(pubsub.topics().r))
      end)
    end
  end)
else
  local me = cluster.worker
  pubsub.subscribe("r", function(d) say("gen" .. me.generation .. " got " .. d) end)
  say("gen" .. me.generation .. " subscribed")
end
]]
    local p = H.start_app(src, { "-w", 1 })
    assert.truthy(p:wait_output("gen1 subscribed", 20000), p:output())
    p:kill("SIGHUP")
    assert.truthy(p:wait_output("topics r=", 20000), p:output())
    assert.truthy(H.wait_for(function() return p:count("gen2 got after-reload", true) == 1 end, 5000), p:output())
    local out = p:stdout()
    assert.equal(0, p:count("gen1 got", true), out) -- the old generation has drained and exited
    assert.truthy(out:find("topics r=1\n", 1, true), out)
    p:stop()
  end)

  it("a reload cancels the old code's master subscriptions; the new code's start at the switch; a refused reload's never run", function()
    local dir = H.tmpdir()
    local src = [[
local pubsub = require("luacluster.pubsub")
local DIR = "]] .. dir .. [["
_G.runs = (rawget(_G, "runs") or 0) + 1
local run = _G.runs
if cluster.is_master then
  cluster.setup{ workers = 1 }
  pubsub.subscribe("r", function(d) say("code" .. run .. " got " .. d) end)
  if run == 2 then
    pubsub.publish("r", "during") -- while the new code stages: the serving (old) code's subscriber has it
  elseif run == 3 then
    error("refused on purpose")
  end
  -- the spec asks for a publish with a file (the timers of the code that serves run)
  timer.every(50, function()
    local f = io.open(DIR .. "/pub")
    if not f then return end
    local data = f:read("*a")
    f:close()
    os.remove(DIR .. "/pub")
    pubsub.publish("r", data)
    say("code" .. run .. " published " .. data)
  end)
  say("code" .. run .. " ready")
end
]]
    local p = H.start_app(src, { "-w", 1 })
    local function publish(data, code)
      H.write_file(dir .. "/pub", data)
      assert.truthy(p:wait_output("code" .. code .. " published " .. data, 10000), p:output())
      H.sleep(200)
    end
    assert.truthy(p:wait_output("code1 ready", 20000), p:output())
    publish("a", 1)
    p:kill("SIGHUP")
    assert.truthy(p:wait_output("generation 2 serves", 20000), p:output())
    publish("b", 2)
    p:kill("SIGHUP") -- refused: its top level raises after it subscribed
    assert.truthy(p:wait_output("reload refused", 20000), p:output())
    publish("c", 2)
    p:kill("SIGHUP") -- generation 3 again, from a fourth run of the top level
    assert.truthy(p:wait_output("generation 3 serves", 20000), p:output())
    publish("d", 4)
    local out = p:stdout()
    assert.equal(1, p:count("code1 got a\n", true), out)
    assert.equal(1, p:count("code1 got during\n", true), out)
    assert.equal(0, p:count("code2 got during", true), out)
    assert.equal(1, p:count("code2 got b\n", true), out)
    assert.equal(1, p:count("code2 got c\n", true), out)
    assert.equal(1, p:count("code4 got d\n", true), out)
    assert.equal(0, p:count("code3 got", true), out)
    -- each publish ran one master subscriber: the old code's stopped with its timers
    assert.equal(5, p:count(" got ", true), out)
    p:stop()
  end)

  it("a draining worker keeps receiving publishes until it exits", function()
    local port = H.free_port()
    local src = [[
local pubsub = require("luacluster.pubsub")
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("online", function(w)
    if w.generation == 2 then
      timer.after(500, function()
        pubsub.publish("d", "during-drain")
        say("topics d=" .. tostring(pubsub.topics().d))
      end)
    end
  end)
else
  local me = cluster.worker
  pubsub.subscribe("d", function(d) say("gen" .. me.generation .. " got " .. d) end)
  http.create_server(function(req, res)
    if req.url == "/slow" then
      say("gen" .. me.generation .. " slow")
      timer.sleep(3000)
    end
    return 200, "ok\n"
  end):listen()
end
]]
    local p = H.start_app(src, { "-w", 1, "-p", port })
    -- the worker answers (not just the master's port accepting) before the slow request goes out
    assert.truthy(H.wait_for(function()
      local _, st = H.curl("http://127.0.0.1:" .. port .. "/")
      return st == 200
    end, 20000), p:output())
    local slow = assert(H.connect(port))
    slow:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.truthy(p:wait_output("gen1 slow", 10000), p:output())
    p:kill("SIGHUP") -- the old worker drains while /slow is in flight
    assert.truthy(p:wait_output("topics d=", 20000), p:output())
    assert.truthy(H.wait_for(function()
      return p:count("gen1 got during-drain", true) == 1 and p:count("gen2 got during-drain", true) == 1
    end, 5000), p:output())
    assert.truthy(p:stdout():find("topics d=2\n", 1, true), p:output())
    slow:close()
    p:stop()
  end)

  it("a worker's own publish reaches its own subscribers once; a raising or self-cancelling subscriber does not disturb the others", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("message", function(_, msg) say(msg) if msg == "done" then cluster.stop() end end)
else
  pubsub.subscribe("s", function(d) error("boom " .. d) end)
  local once
  once = pubsub.subscribe("s", function(d) say("once " .. d) once:cancel() end)
  pubsub.subscribe("s", function(d, topic, kind) say("all " .. d .. " " .. topic .. " " .. kind) end)
  for i = 1, 3 do pubsub.publish("s", "n" .. i) end
  timer.after(500, function() cluster.worker:send("done") end)
end
]]
    local p = H.start_app(src, { "-w", 1 })
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:stdout()
    assert.equal(1, p:count("once n1\n", true), out)
    assert.equal(1, p:count("once ", true), out)
    for i = 1, 3 do
      assert.equal(1, p:count("all n" .. i .. " s text\n", true), out)
    end
    assert.equal(3, p:count("pubsub subscriber failed", true), p:output())
  end)

  it("a publish over max_message_size (topic and data) returns nil, err in a worker and in the master, and reaches nobody", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
local LIMIT = 65536
if cluster.is_master then
  cluster.setup{ workers = 1, max_message_size = LIMIT }
  pubsub.subscribe("big", function(d) say("master got " .. #d) end)
  cluster.on("message", function(w, msg)
    if msg == "subscribed" then
      say("master fits " .. tostring(pubsub.publish("big", string.rep("m", LIMIT - 3))))
      say("master over", pubsub.publish("big", string.rep("m", LIMIT - 2)))
      w:send("go")
    elseif msg == "done" then
      timer.after(300, function() cluster.stop() end)
    end
  end)
else
  local me = cluster.worker
  pubsub.subscribe("big", function(d) say("worker got " .. #d) end)
  me:on("message", function()
    say("worker over", pubsub.publish("big", string.rep("w", LIMIT - 2), "binary"))
    say("worker fits " .. tostring(pubsub.publish("big", string.rep("w", LIMIT - 3))))
    timer.after(500, function() me:send("done") end)
  end)
  me:send("subscribed")
end
]]
    local p = H.start_app(src, { "-w", 1 })
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:stdout()
    assert.equal(1, p:count("master fits true\n", true), out)
    assert.equal(1, p:count("worker fits true\n", true), out)
    assert.truthy(out:find("master over nil [^\n]*65537 bytes[^\n]*max_message_size %(65536"), out)
    assert.truthy(out:find("worker over nil [^\n]*65537 bytes[^\n]*max_message_size %(65536"), out)
    assert.equal(2, p:count("master got 65533\n", true), out)
    assert.equal(2, p:count("worker got 65533\n", true), out)
    assert.equal(0, p:count("got 65534", true), out)
    assert.equal(0, p:count("skipped", true), p:output()) -- no frame the channel had to skip
  end)

  it("a worker that does not read its channel (stopped) costs the master a bounded queue: publishes to it past 128 MiB are dropped (logged), a worker that reads gets all", function()
    local dir = H.tmpdir()
    local src = [[
local pubsub = require("luacluster.pubsub")
local DIR = "]] .. dir .. [["
local function take(name)
  local f = io.open(DIR .. "/" .. name)
  if f then f:close() os.remove(DIR .. "/" .. name) return true end
end
if cluster.is_master then
  cluster.setup{ workers = 2 }
  local chunk = string.rep("x", 1048576)
  timer.every(20, function()
    if take("flood") then
      local n = 0
      local t
      t = timer.every(10, function() -- (100 MB/s: a worker that reads keeps up)
        n = n + 1
        pubsub.publish("flood", chunk)
        if n >= 300 then
          t:stop()
          pubsub.publish("flood", "end")
          say("flooded dropped=" .. pubsub.stats().dropped)
        end
      end)
    elseif take("end") then
      pubsub.publish("flood", "end")
    end
  end)
else
  local me = cluster.worker
  local got = 0
  pubsub.subscribe("flood", function(d)
    if d == "end" then say("w" .. me.id .. " got " .. got .. " then end") else got = got + 1 end
  end)
  say("pid " .. me.id .. " " .. me.pid)
end
]]
    local p = H.start_app(src, { "-w", 2 })
    assert.truthy(p:wait_output("pid 1 %d+", 20000), p:output())
    assert.truthy(p:wait_output("pid 2 %d+", 20000), p:output())
    H.sleep(300)
    local pid2 = tonumber(p:stdout():match("pid 2 (%d+)"))
    H.sh("kill -STOP " .. pid2)
    H.write_file(dir .. "/flood", "")
    assert.truthy(p:wait_output("flooded dropped=", 60000), p:output())
    local hwm = tonumber(H.read_file("/proc/" .. p.pid .. "/status"):match("VmHWM:%s*(%d+)"))
    H.sh("kill -CONT " .. pid2)
    assert.truthy(p:wait_output("w1 got 300 then end", 30000), p:output())
    H.sleep(1000) -- (worker 2 reads what was queued for it)
    H.write_file(dir .. "/end", "")
    assert.truthy(p:wait_output("w2 got %d+ then end", 30000), p:output())
    local out = p:stdout()
    local got2 = tonumber(out:match("w2 got (%d+) then end"))
    assert(got2 >= 50 and got2 < 300, got2 .. "\n" .. out)
    assert.equal(300 - got2 + 1, tonumber(out:match("flooded dropped=(%d+)")), out) -- (its first "end" too)
    assert(p:count("publishes to it are dropped", true) >= 1, p:output())
    assert.equal(2, p:count("w1 got 300 then end\n", true), out) -- (both "end"s)
    assert.equal(2, p:count("w1 got ", true), out)
    if not os.getenv("ASAN_OPTIONS") then -- (ASan's quarantine keeps freed memory)
      assert(hwm < 240 * 1024, "the master's peak RSS: " .. hwm .. " kB")
    end
    p:stop()
  end)

  it("raises on bad arguments", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
local function try(name, f)
  local ok, err = pcall(f)
  say(name .. " " .. tostring(ok) .. " " .. tostring(err))
end
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("message", function(_, msg) say(msg) if msg == "done" then cluster.stop() end end)
else
  try("topic", function() pubsub.publish(1, "x") end)
  try("empty", function() pubsub.publish("", "x") end)
  try("data", function() pubsub.publish("t", { 1 }) end)
  try("kind", function() pubsub.publish("t", "x", "json") end)
  try("utf8", function() pubsub.publish("t", "caf\xe9") end)              -- Latin-1, as text
  try("binary", function() assert(pubsub.publish("t", "caf\xe9", "binary")) end)
  try("fn", function() pubsub.subscribe("t", "nope") end)
  try("stopic", function() pubsub.subscribe(nil, function() end) end)
  try("dot", function() local s = pubsub.subscribe("t", function() end) s.cancel() end)
  cluster.worker:send("done")
end
]]
    local p = H.start_app(src, { "-w", 1 })
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:stdout()
    assert.truthy(out:find("topic false [^\n]*topic must be a non%-empty string"), out)
    assert.truthy(out:find("empty false [^\n]*topic must be a non%-empty string"), out)
    assert.truthy(out:find("data false [^\n]*data must be a string"), out)
    assert.truthy(out:find('kind false [^\n]*kind must be "text" or "binary"'), out)
    assert.truthy(out:find('utf8 false [^\n]*text is not valid UTF%-8'), out)
    assert.truthy(out:find("binary true nil", 1, true), out)
    assert.truthy(out:find("fn false [^\n]*expected a function"), out)
    assert.truthy(out:find("stopic false [^\n]*topic must be a non%-empty string"), out)
    assert.truthy(out:find("dot false [^\n]*with a colon"), out)
  end)

  it("set_bridge gets every publish made on this host once, in order (master and workers); deliver_remote reaches every subscriber here and not the bridge", function()
    local src = [[
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ workers = 2 }
  pubsub.set_bridge({ publish = function(topic, data, kind) say("bridge " .. topic .. " " .. data .. " " .. kind) end })
  pubsub.subscribe("b", function(d) say("master got " .. d) end)
  local online = 0
  cluster.on("message", function(_, msg)
    if msg ~= "subscribed" then return end
    online = online + 1
    if online < 2 then return end
    for i = 1, 3 do pubsub.publish("b", "m" .. i, "binary") end
    pubsub.deliver_remote("b", "r1", "text")
    pubsub.publish("nobody", "m-alone")          -- no subscriber anywhere: the bridge has it all the same
    cluster.broadcast("publish")
    timer.after(1500, function()
      pubsub.set_bridge(nil)
      pubsub.publish("b", "m-after")
      timer.after(500, function() cluster.stop() end)
    end)
  end)
else
  local me = cluster.worker
  pubsub.subscribe("b", function(d, _, kind) say("w" .. me.id .. " got " .. d .. " " .. kind) end)
  me:on("message", function()
    for i = 1, 3 do pubsub.publish("b", "w" .. me.id .. "-" .. i) end
    pubsub.publish("nobody", "w" .. me.id .. "-alone") -- no subscriber in the master: bridged all the same
  end)
  me:send("subscribed")
end
]]
    local p = H.start_app(src, { "-w", 2 })
    assert.equal(0, (p:wait(30000)), p:output())
    local out = p:stdout()
    local bridged = {}
    for line in out:gmatch("bridge ([^\n]*)") do bridged[#bridged + 1] = line end
    -- the master's own first (it published them before it asked the workers), then each worker's in order
    assert.same({ "b m1 binary", "b m2 binary", "b m3 binary", "nobody m-alone text" }, { unpack(bridged, 1, 4) }, out)
    for id = 1, 2 do
      local seq = {}
      for _, l in ipairs(bridged) do
        local i = l:match("^b w" .. id .. "%-(%d) text$")
        if i then seq[#seq + 1] = tonumber(i) end
      end
      assert.same({ 1, 2, 3 }, seq, out)
    end
    assert.equal(1, p:count("bridge nobody w1-alone text", true), out)
    assert.equal(1, p:count("bridge nobody w2-alone text", true), out)
    assert.equal(12, #bridged, out)       -- r1 (from another host) and m-after (no bridge) never
    for _, who in ipairs({ "master", "w1", "w2" }) do
      assert.equal(1, p:count(who .. " got r1", true), out)
      assert.equal(1, p:count(who .. " got m-after", true), out)
      for i = 1, 3 do
        assert.equal(1, p:count(who .. " got m" .. i, true), out)
        assert.equal(1, p:count(who .. " got w1-" .. i, true), out)
        assert.equal(1, p:count(who .. " got w2-" .. i, true), out)
      end
    end
    assert.equal(1, p:count("w1 got m1 binary", true), out)
  end)
end)
