-- Shared dictionaries across processes: exact sums from concurrent incr in two workers;
-- workers SIGKILLed in a loop while they write (every new worker reads and writes at once,
-- no value is torn, the region checks out, and some kills did land inside an operation);
-- contents across a reload; a reload that resizes a dictionary is refused, one that drops a
-- dictionary keeps it (and says so), one that adds a dictionary creates it.
local H = require("helper")

local function stop(app)
  if app then
    app:stop()
  end
end


describe("shared dictionaries in several processes", function()
  after_each(function()
    H.cleanup()
  end)

  it("incr from two workers at once loses nothing", function()
    local app = H.start_app([[
local shared = require("luacluster.shared")
local N = 100000
if cluster.is_master then
  cluster.setup{ workers = 2, shared_dicts = { c = "1m" } }
  local t
  t = timer.every(50, function()
    if shared.c:get("done") == 2 then
      t:stop()
      say("hits", shared.c:get("hits"), "half", shared.c:get("half"), "list", shared.c:llen("q"),
        "keys", shared.c:get("k1"), shared.c:get("k2"), "verify", shared.c:verify())
      cluster.stop()
    end
  end)
  return
end
-- both start together: wait for the other one, so that the loops overlap
shared.c:incr("ready", 1, 0)
local t0 = os.clock()
while shared.c:get("ready") < 2 and os.clock() - t0 < 5 do end
for i = 1, N do
  shared.c:incr("hits", 1, 0)
  shared.c:incr("half", 0.5, 0)
  shared.c:incr("k" .. (i % 2 + 1), 1, 0)
  if i % 10 == 0 then
    shared.c:rpush("q", i)
  end
end
shared.c:incr("done", 1, 0)
]], { "-w", "2" })
    local code = app:wait(60000)
    assert.equal(0, code, app:output())
    assert.truthy(app:stdout():find("hits 200000 half 100000 list 20000 keys 100000 100000 verify true", 1, true),
      app:output())
  end)

  it("survives workers SIGKILLed in a loop while they write: no lock kept, nothing torn", function()
    local app = H.start_app([[
local core = require("luacluster.core")
local shared = require("luacluster.shared")
local DURATION = tonumber(os.getenv("CHAOS_MS"))

-- a value that carries its own check: its body, its length, its number
local function payload(i, len)
  return string.rep(string.char(97 + i % 26), len) .. ":" .. len .. ":" .. i
end
local function intact(v)
  local body, len, i = v:match("^(%a*):(%d+):(%d+)$")
  return body ~= nil and #body == tonumber(len) and body == string.rep(string.char(97 + tonumber(i) % 26), #body)
end

if cluster.is_master then
  cluster.setup{ workers = 2, shared_dicts = { c = "2m" } }
  local online, kills, t0, ticker = {}, 0, core.hrtime(), nil
  cluster.on("online", function(w) online[w] = core.hrtime() end)
  ticker = timer.every(30, function()
    if core.hrtime() - t0 < DURATION then
      -- a worker up for more than a second (a quicker crash would be backed off) dies now
      for _, w in pairs(cluster.workers) do
        if online[w] and core.hrtime() - online[w] > 1050 then
          online[w] = nil
          core.kill(w.pid, "SIGKILL") -- a crash (not w:kill()): the master starts another
          kills = kills + 1
          break
        end
      end
      return
    end
    local n = 0
    for _, w in pairs(cluster.workers) do
      if online[w] then n = n + 1 end
    end
    if n < 2 then return end
    ticker:stop()
    local checked = 0
    for _, w in pairs(cluster.workers) do
      local reply, err = w:request("check", 20000)
      say("check", w.id, reply or err)
      checked = checked + 1
    end
    local st = core.shdict_stats()[1]
    say("kills", kills, "repairs", st.repairs, "checked", checked, "verify", shared.c:verify(),
      "count", type(shared.c:get("count")))
    cluster.stop()
  end)
  return
end

-- at once, before anything else: a read and a write (a lock a dead worker held never waits)
local b0 = core.hrtime()
shared.c:set("boot:" .. process.pid, "up")
local boot_ok = shared.c:get("boot:" .. process.pid) == "up" and shared.c:incr("boots", 1, 0)
local boot_ms = core.hrtime() - b0

local n = cluster.worker.id * 1000000 + math.floor(core.hrtime()) % 1000 * 1000
timer.every(1, function()
  local deadline = core.hrtime() + 20
  while core.hrtime() < deadline do
    n = n + 1
    shared.c:set("v" .. n % 64, payload(n, 1000 + n * 7919 % 60000))
    shared.c:incr("count", 1, 0)
    shared.c:rpush("q", payload(n, 100 + n % 500))
    if (shared.c:llen("q") or 0) > 200 then
      shared.c:lpop("q")
    end
    local v = shared.c:get("v" .. (n * 31) % 64)
    if v and not intact(v) then
      shared.c:incr("torn", 1, 0)
    end
  end
end)

cluster.worker:on("request", function()
  local bad = {}
  if not boot_ok or boot_ms > 1000 then
    bad[#bad + 1] = "boot " .. tostring(boot_ok) .. " " .. boot_ms .. " ms"
  end
  local ok, err = shared.c:verify()
  if not ok then bad[#bad + 1] = "verify " .. tostring(err) end
  for _, k in ipairs(shared.c:get_keys(0)) do
    local v = k:match("^v%d+$") and shared.c:get(k) -- (the other worker may have evicted it since)
    if v and not intact(v) then bad[#bad + 1] = "torn " .. k end
  end
  local items = 0
  while true do
    local v = shared.c:lpop("q")
    if not v then break end
    items = items + 1
    if not intact(v) then bad[#bad + 1] = "torn list item" end
  end
  if shared.c:get("torn") then bad[#bad + 1] = "torn reads " .. shared.c:get("torn") end
  if not shared.c:set("after", "chaos") or shared.c:get("after") ~= "chaos" then bad[#bad + 1] = "write" end
  return #bad == 0 and ("ok " .. items) or table.concat(bad, "; ")
end)
]], { "-w", "2" }, { env = { CHAOS_MS = "7000" } })
    local code = app:wait(90000)
    local out = app:output()
    assert.equal(0, code, out)
    local stdout = app:stdout()
    local _, checks = stdout:gsub("check %d ok %d+", "")
    assert.equal(2, checks, out)
    local kills, repairs = stdout:match("kills (%d+) repairs (%d+) checked 2 verify true count number")
    assert.truthy(kills, out)
    assert.is_true(tonumber(kills) >= 4, out)
    -- kills that landed while a worker held the lock: the next holder repaired the region
    assert.is_true(tonumber(repairs) >= 1, out)
  end)
end)


describe("shared dictionaries across a reload", function()
  local app, port, dir, ctl

  local function src(tag, dicts)
    return H.prelude .. ([[
local shared = require("luacluster.shared")
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 1, shared_dicts = %s }
  return
end
local gen = cluster.worker.generation
shared.s:add("first", "written by generation " .. gen)
shared.s:incr("boots", 1, 0)
http.create_server(function()
  local extra = shared.new and shared.new:capacity() or "-"
  return 200, table.concat({ %q, gen, shared.s:get("first"), shared.s:get("boots"), tostring(extra),
    tostring(shared.drop and shared.drop:get("kept")) }, " ")
end):listen()
if shared.drop then shared.drop:set("kept", "yes") end
]]):format(dicts, tag)
  end

  local function get()
    return (H.curl("http://127.0.0.1:" .. port .. "/"))
  end

  local function reload(tag, dicts)
    H.write_file(dir .. "/app.lua", src(tag, dicts))
    return H.sh(H.bin .. " reload --control " .. ctl)
  end

  setup(function()
    port = H.free_port()
    dir = H.app({ ["app.lua"] = src("v1", '{ s = "1m", drop = "64k" }') })
    ctl = dir .. "/control.sock"
    app = H.start(dir .. "/app.lua", { "-p", port, "--control", ctl })
    assert(H.wait_for(function() return get():match("^v1") end, 10000), app:output())
  end)

  teardown(function()
    stop(app)
    H.cleanup()
  end)

  it("keeps the contents: the new generation reads what the old one wrote", function()
    assert.equal("v1 1 written by generation 1 1 - yes", get())
    local out, rc = reload("v2", '{ s = "1m", drop = "64k" }')
    assert.equal(0, rc, out .. app:output())
    assert.equal("v2 2 written by generation 1 2 - yes", get())
  end)

  it("refuses a reload that resizes a dictionary, and the old one keeps serving with its contents", function()
    local out, rc = reload("v3", '{ s = "2m", drop = "64k" }')
    assert.is_not.equal(0, rc, out)
    assert.matches("shared_dicts.s is 1048576 bytes in the running cluster and 2097152 in the new code", out, 1, true)
    assert.equal("v2 2 written by generation 1 2 - yes", get())
  end)

  it("keeps a dictionary the new code drops (and logs it), and creates one it adds", function()
    local out, rc = reload("v4", '{ s = "1m", new = "128k" }')
    assert.equal(0, rc, out .. app:output())
    -- (generation 3: the refused reload made none)
    assert.equal("v4 3 written by generation 1 3 131072 yes", get())
    assert.truthy(app:wait_output("shared dictionary 'drop' is no longer declared: it is kept with its contents", 5000, true),
      app:output())
    assert.truthy(app:output():find("shared dictionary 'new' created (131072 bytes)", 1, true), app:output())
  end)
end)
