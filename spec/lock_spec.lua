-- luacluster.lock (resty.lock's interface on a shared dictionary) in real clusters: exclusion
-- between the coroutines of two worker processes, the interface's return values and errors,
-- the timeout, the expiry of a lock whose holder was SIGKILLed, and a wait that leaves the
-- event loop serving.
local H = require("helper")


-- a cluster with the dictionaries `locks` and `data`; `worker` runs in each worker
local function app(worker, workers)
  return string.format([[
if cluster.is_master then
  cluster.setup({ workers = %d, shared_dicts = { locks = "1m", data = "1m" } })
end
if cluster.is_worker then
  local lock = require("luacluster.lock")
  local data = require("luacluster.shared").data
  %s
end
]], workers or 1, worker)
end


-- the worker of the HTTP specs: /hold?exptime=S takes "k" and keeps it (answers its pid),
-- /try?timeout=S waits for "k" (answers "ok <elapsed>" or "err <err>" after releasing it),
-- /ping answers at once
local SERVER = [[
  local http = require("luacluster.http")
  local held = {}
  http.create_server(function(req)
    local q = {}
    for k, v in (req.query or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = tonumber(v) end
    if req.path == "/hold" then
      local l = assert(lock.new("locks", { exptime = q.exptime }))
      local elapsed, err = l:lock("k")
      held[#held + 1] = l
      return 200, {}, (elapsed and "held " or "err ") .. tostring(elapsed and process.pid or err)
    elseif req.path == "/try" then
      local l = assert(lock.new("locks", { timeout = q.timeout, max_step = 0.05 }))
      local t0 = timer.now()
      local elapsed, err = l:lock("k")
      local waited = timer.now() - t0
      if elapsed then
        l:unlock()
        return 200, {}, string.format("ok %.3f %d %d", elapsed, waited, process.pid)
      end
      return 200, {}, string.format("err %s %d %d", err, waited, process.pid)
    end
    return 200, {}, "pong"
  end):listen()
]]


-- starts SERVER in `workers` workers; -> process, base url, port, once it answers
local function serve(workers)
  local port = H.free_port()
  local p = H.start_app(app(SERVER, workers), { "-p", port })
  local url = "http://127.0.0.1:" .. port
  assert.truthy(H.wait_for(function() return select(2, H.curl(url .. "/ping")) == 200 end, 10000), p:output())
  return p, url, port
end


describe("luacluster.lock", function()
  after_each(function()
    H.cleanup()
  end)

  it("keeps a read-modify-write exact under contention from 2 workers, 3 coroutines each", function()
    local p = H.start_app(app([[
  local ROUNDS, PER_WORKER = 30, 3
  data:incr("ready", 1, 0)
  local function run()
    local l = assert(lock.new("locks", { max_step = 0.02 }))
    local waited = 0
    for _ = 1, ROUNDS do
      local elapsed, err = l:lock("counter")
      assert(elapsed, err)
      if elapsed > 0 then waited = waited + 1 end
      if data:incr("inside", 1, 0) ~= 1 then data:incr("violations", 1, 0) end
      local n = data:get("n") or 0
      timer.sleep(math.random(0, 2))
      data:set("n", n + 1)
      data:incr("inside", -1)
      assert(l:unlock())
    end
    data:incr("waited", waited, 0)
    if data:incr("finished", 1, 0) == 2 * PER_WORKER then
      say("total", data:get("n"), "violations", data:get("violations") or 0, "waited", data:get("waited"))
    end
  end
  timer.after(0, function()
    while data:get("ready") < 2 do timer.sleep(5) end -- both workers start together
    for _ = 1, PER_WORKER do timer.after(0, run) end
  end)
]], 2), {})
    local line = p:wait_output("total %d+ violations %d+ waited %d+", 30000)
    assert.truthy(line, p:output())
    local total, violations, waited = line:match("total (%d+) violations (%d+) waited (%d+)")
    assert.equal(2 * 3 * 30, tonumber(total), p:output())
    assert.equal(0, tonumber(violations))
    assert.truthy(tonumber(waited) > 0, "no lock() ever waited: there was no contention")
    assert.equal(0, (p:stop(10000)))
  end)

  it("has resty.lock's return values and errors", function()
    local p = H.start_app(app([[
  local function out(name, ...) say(name .. ":", ...) end
  timer.after(0, function()
    out("bad name", pcall(lock.new, 42))
    out("bad opts", pcall(lock.new, "locks", { timeout = "1" }))
    out("missing", lock.new("nope"))
    local a = assert(lock.new("locks", { exptime = 0.4, timeout = 0 }))
    local b = assert(lock:new("locks", { timeout = 0 })) -- resty.lock's call form
    out("unlock free", a:unlock())
    out("expire free", a:expire())
    out("nil key", a:lock(nil))
    out("lock", a:lock("k"))
    out("lock again", a:lock("k2"))
    out("busy", b:lock("k"))
    out("other key", b:lock("k2"))
    out("unlock b", b:unlock())
    out("expire", a:expire(3))
    timer.sleep(700) -- past the first exptime (0.4 s): expire moved it
    out("still held", b:lock("k"))
    out("unlock", a:unlock())
    out("unlock twice", a:unlock())
    out("free again", b:lock("k"))
    b:unlock()
    -- a lock that expired under its holder: the next holder keeps it
    local c = assert(lock.new("locks", { exptime = 0.2 }))
    local d = assert(lock.new("locks", { timeout = 0 }))
    out("c", c:lock("x"))
    timer.sleep(400)
    out("d", d:lock("x"))
    out("c expire", c:expire())
    out("c unlock", c:unlock())
    local e = assert(lock.new("locks", { timeout = 0 }))
    out("e", e:lock("x"))
    -- the timeout, waited on the loop's clock
    local f = assert(lock.new("locks", { timeout = 0.3 }))
    local t0 = timer.now()
    local el, err = f:lock("x")
    out("timeout", el, err, timer.now() - t0 >= 290)
    -- a wait that ends when the holder unlocks: elapsed is the sum of the sleeps
    local g = assert(lock.new("locks", { timeout = 2, step = 0.01 }))
    timer.after(100, function() d:unlock() end)
    el = g:lock("x")
    out("waited", el > 0.05 and el < 1)
    g:unlock()
    -- a lock object collected while it holds: its lock is released, as resty.lock's is
    local function hold_and_drop() -- (in a frame of its own: no stack slot keeps the object)
      local h = assert(lock.new("locks"))
      h:lock("gc")
    end
    hold_and_drop()
    collectgarbage()
    collectgarbage()
    out("collected", assert(lock.new("locks", { timeout = 0 })):lock("gc"))
    out("done", true)
  end)
]]), {})
    assert.truthy(p:wait_output("done: true", 10000), p:output())
    local lines = {}
    for name, rest in p:stdout():gmatch("%[worker 1%] ([^\n]-): ([^\n]*)") do
      lines[name] = rest
    end
    local function line(name)
      return lines[name]
    end
    assert.matches("^false .*dictionary's name must be a string", line("bad name"))
    assert.matches("^false .*timeout must be a number", line("bad opts"))
    assert.equal("nil dictionary not found", line("missing"))
    assert.equal("nil unlocked", line("unlock free"))
    assert.equal("nil unlocked", line("expire free"))
    assert.equal("nil nil key", line("nil key"))
    assert.equal("0", line("lock"))
    assert.equal("nil locked", line("lock again"))
    assert.equal("nil timeout", line("busy"))
    assert.equal("0", line("other key"))
    assert.equal("true", line("unlock b"))
    assert.equal("true", line("expire"))
    assert.equal("nil timeout", line("still held"))
    assert.equal("true", line("unlock"))
    assert.equal("nil unlocked", line("unlock twice"))
    assert.equal("0", line("free again"))
    assert.equal("0", line("c"))
    assert.equal("0", line("d"))
    assert.equal("nil not found", line("c expire"))
    assert.equal("true", line("c unlock"))
    assert.equal("nil timeout", line("e"))
    assert.equal("nil timeout true", line("timeout"))
    assert.equal("true", line("waited"))
    assert.equal("0", line("collected"))
    assert.equal(0, (p:stop(10000)))
  end)

  it("never evicts a held lock to make room for another: a full dictionary says no memory", function()
    local p = H.start_app([[
if cluster.is_master then
  cluster.setup({ workers = 1, shared_dicts = { locks = "32k" } })
end
if cluster.is_worker then
  local lock = require("luacluster.lock")
  timer.after(0, function()
    local held, err = {}, nil
    for i = 1, 5000 do
      local l = assert(lock.new("locks", { timeout = 0 }))
      local elapsed
      elapsed, err = l:lock("key" .. i)
      if not elapsed then break end
      held[i] = l
    end
    local probe = assert(lock.new("locks", { timeout = 0 }))
    say("held", #held, "then", err, "first", select(2, probe:lock("key1")))
  end)
end
]], {})
    local line = p:wait_output("held %d+ then [^\n]*", 10000)
    assert.truthy(line, p:output())
    local n = tonumber(line:match("held (%d+)"))
    assert.truthy(n > 10 and n < 5000, line)
    assert.equal("held " .. n .. " then no memory first timeout", line)
    assert.equal(0, (p:stop(10000)))
  end)

  it("is released at exptime when its holder is SIGKILLed", function()
    local p, url = serve(2)
    local t_hold = H.now()
    local body = H.curl(url .. "/hold?exptime=2")
    local holder = tonumber(body:match("^held (%d+)"))
    assert.truthy(holder, body)
    body = H.curl(url .. "/try?timeout=0")
    assert.matches("^err timeout", body)
    assert.equal(0, select(2, H.sh("kill -9 " .. holder)))
    assert.truthy(H.wait_for(function() return not H.pid_alive(holder) end, 5000))
    -- any process (the other worker, or the dead one's replacement) gets it at the expiry
    local got
    assert.truthy(H.wait_for(function()
      got = H.curl(url .. "/try?timeout=4")
      return got:match("^ok")
    end, 15000, 100), tostring(got) .. p:output())
    local pid = tonumber(got:match("^ok [%d%.]+ %d+ (%d+)"))
    assert.are_not.equal(holder, pid)
    local since = H.now() - t_hold
    assert.truthy(since >= 1900, "taken " .. since .. " ms after /hold, before the 2 s exptime")
    assert.truthy(since < 9000, "taken " .. since .. " ms after /hold")
    assert.equal(0, (p:stop(10000)))
  end)

  it("waits without blocking the loop: the same worker serves while a lock() waits", function()
    local p, url, port = serve(1)
    assert.matches("^held", (H.curl(url .. "/hold?exptime=30")))
    local s = assert(H.connect(port))
    s:send("GET /try?timeout=1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    H.sleep(100)
    local slowest = 0
    for _ = 1, 10 do
      local t0 = H.now()
      local body, status = H.curl(url .. "/ping")
      assert.equal(200, status)
      assert.equal("pong", body)
      slowest = math.max(slowest, H.now() - t0)
    end
    local waiting = s:read_all(1)
    assert.equal("", waiting, "the waiting lock() answered while the lock was held")
    local answer = s:read_all(8000)
    s:close()
    local waited = tonumber(answer:match("err timeout (%d+)"))
    assert.truthy(waited and waited >= 1400, answer)
    -- each /ping took a loop turn, not the rest of the wait (1.5 s)
    assert.truthy(slowest < 1000, "a /ping took " .. slowest .. " ms while lock() waited")
    assert.equal(0, (p:stop(10000)))
  end)

  it("times out on the loop's clock when the loop is busy: timeout = 0.3 s is not 300 sleeps of 1 ms", function()
    local p = H.start_app(app([[
  timer.after(0, function()
    local h = assert(lock.new("locks"))
    assert(h:lock("busy"))
    -- other work on the same loop: 20 ms of CPU every 5 ms, so each 1 ms sleep lasts ~20 ms
    local hog = timer.every(5, function()
      local t = os.clock() + 0.02
      while os.clock() < t do end
    end)
    local f = assert(lock.new("locks", { timeout = 0.3, step = 0.001, ratio = 1 }))
    local t0 = timer.now()
    local el, err = f:lock("busy")
    say("busy wait:", el, err, timer.now() - t0)
    hog:stop()
  end)
]]), {})
    local line = p:wait_output("busy wait: [^\n]*", 30000)
    assert.truthy(line, p:output())
    local waited = tonumber(line:match("nil timeout (%d+)"))
    assert.truthy(waited, line)
    assert.truthy(waited >= 290, line)
    -- before the fix: ~6 s (the sum of the 1 ms steps reached 0.3 s only after 300 loop turns)
    assert.truthy(waited < 2500, line)
    assert.equal(0, (p:stop(10000)))
  end)

  it("raises on a method called with a dot (a programming mistake, not nil, err)", function()
    local p = H.start_app(app([[
  timer.after(0, function()
    local a = assert(lock.new("locks"))
    say("dot lock:", pcall(a.lock, "k"))
    say("dot unlock:", pcall(a.unlock))
    say("dot expire:", pcall(a.expire, 3))
    say("done:", true)
  end)
]]), {})
    assert.truthy(p:wait_output("done: true", 10000), p:output())
    for _, name in ipairs({ "lock", "unlock", "expire" }) do
      local line = p:stdout():match("dot " .. name .. ": ([^\n]*)")
      assert.matches("^false .*lock:" .. name .. ": call it as l:" .. name, line)
    end
    assert.equal(0, (p:stop(10000)))
  end)

  it("releases a lock whose object was collected in a process that takes no other lock", function()
    local p = H.start_app(app([[
  timer.after(0, function()
    if cluster.worker.id == 1 then
      local function hold_and_drop() -- (a frame of its own: no stack slot keeps the object)
        assert(assert(lock.new("locks")):lock("gc")) -- exptime 30 s
      end
      hold_and_drop()
      collectgarbage()
      collectgarbage()
      data:set("dropped", true) -- and this worker never calls into luacluster.lock again
    else
      while not data:get("dropped") do timer.sleep(10) end
      local l = assert(lock.new("locks", { timeout = 5 }))
      say("other worker:", l:lock("gc"))
    end
  end)
]], 2), {})
    local line = p:wait_output("other worker: [^\n]*", 20000)
    assert.truthy(line, p:output())
    -- resty.lock deletes the entry when the object is collected; before the fix the entry stayed
    -- until the next lock call of worker 1, here until its exptime (nil timeout after 5 s)
    assert.truthy(tonumber(line:match("other worker: ([%d%.]+)$")), line)
    assert.equal(0, (p:stop(10000)))
  end)
end)
