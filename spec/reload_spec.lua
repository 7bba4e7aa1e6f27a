-- Integration specs of hot reload and control (issue 5): `luacluster reload|status|stop`,
-- SIGHUP, --watch, against the real binary under a running load whose every response is
-- counted (spec/load.lua, a separate process: K connections on one poll loop).
local H = require("helper")
local L = require("load")

-- the app's source with its tag; an app serves "TAG worker-id generation"
local function http_app(tag, extra_master, extra_worker)
  return ([[
local http = require("luacluster.http")
local TAG = %q
if cluster.is_master then
  %s
else
  %s
  http.create_server(function(req, res)
    return 200, TAG .. " " .. cluster.worker.id .. " " .. cluster.worker.generation .. "\n"
  end):listen()
end
]]):format(tag, extra_master or "", extra_worker or "")
end

-- starts src (H.prelude is added) with --control in the app's folder and -p a free port;
-- returns an app record once it answers HTTP (unless opts.no_http)
local function start(src, options, opts)
  opts = opts or {}
  local port = opts.port or H.free_port()
  local dir = H.tmpdir()
  local app = { port = port, dir = dir, path = dir .. "/app.lua", ctl = dir .. "/ctl.sock" }
  H.write_file(app.path, H.prelude .. src)
  for name, s in pairs(opts.files or {}) do
    H.write_file(dir .. "/" .. name, s)
  end
  local argv = { "-p", port }
  if not opts.default_control then
    argv[#argv + 1] = "--control"
    argv[#argv + 1] = app.ctl
  end
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = o
  end
  app.p = H.start(app.path, argv, { env = opts.env, default_control = opts.default_control })
  if not opts.no_http then
    local ok = H.wait_for(function()
      local _, status = H.curl("http://127.0.0.1:" .. port .. "/")
      return status == 200
    end, 8000, 50)
    assert(ok, "the app did not start serving:\n" .. app.p:output())
  end
  return app
end

-- replaces the app's code (a new save of app.lua)
local function rewrite(app, src)
  H.write_file(app.path .. ".new", H.prelude .. src)
  os.rename(app.path .. ".new", app.path)
end

-- luacluster CMD --control CTL [args]: -> stdout+stderr, exit code
local function ctl(app, cmd, extra)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. app.ctl .. " " .. (extra or ""))
end

-- the body of one request on a new connection
local function get(app, port)
  local body, status = H.curl("http://127.0.0.1:" .. (port or app.port) .. "/")
  return status == 200 and body or nil
end

-- load(app, { shape = "keepalive" | "close", conns =, think =, ports = }) -> handle; :finish() -> result
local load = L.background -- (spec/load.lua: a load client process, counting every response)

local function summary(r)
  local tags = {}
  for tag, n in pairs(r.bodies) do
    tags[#tags + 1] = tag .. "=" .. n
  end
  table.sort(tags)
  return string.format("ok %d, fail %d, idle closed %d, %s; errors: %s", r.ok, r.fail, r.idle_closed,
    table.concat(tags, " "), table.concat(r.errors, "; "))
end

-- runs loads of both shapes (plus keep-alive connections with pauses, idle while a drain
-- starts) during fn(); asserts that not one request failed; returns the results
local function under_load(app, fn, o)
  o = o or {}
  local port = o.ports and o.ports[1] or app.port
  local loads = {
    load(port, { shape = "keepalive", conns = 4, ports = o.ports }),
    load(port, { shape = "close", conns = 4, ports = o.ports }),
    load(port, { shape = "keepalive", conns = 4, think = 30, ports = o.ports }),
  }
  H.sleep(300)
  fn()
  H.sleep(300)
  local results = {}
  for i, h in ipairs(loads) do
    results[i] = h.finish()
  end
  for i, r in ipairs(results) do
    assert(r.fail == 0 and r.ok > 0, "load " .. i .. ": " .. summary(r) .. "\n" .. app.p:output())
    assert.equal(0, r.idle_closed, "load " .. i .. ": " .. summary(r))
  end
  return results
end

-- a small JSON decoder for `status --json`
local function json_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == '"' then pos = pos + 1 return table.concat(out) end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if e == "u" then
          out[#out + 1] = string.char(tonumber(s:sub(pos + 2, pos + 5), 16) % 256)
          pos = pos + 6
        else
          out[#out + 1] = ({ n = "\n", t = "\t", r = "\r", b = "\b", f = "\f" })[e] or e
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
      assert(pos <= #s, "unterminated string")
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        local k = str()
        ws()
        assert(s:sub(pos, pos) == ":", "expected : at " .. pos)
        pos = pos + 1
        t[k] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        assert(d == ",", "expected , at " .. pos)
      end
    elseif c == "[" then
      local t = { _array = true }
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        assert(d == ",", "expected , at " .. pos)
      end
    elseif c == '"' then
      return str()
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4 return nil
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    assert(num and #num > 0, "bad JSON at " .. pos .. ": " .. s:sub(pos, pos + 20))
    pos = pos + #num
    return tonumber(num)
  end
  local v = value()
  ws()
  assert(pos > #s, "trailing bytes in JSON")
  return v
end


describe("reload", function()
  after_each(function()
    H.cleanup()
  end)

  it("swaps in the new code under keep-alive and new-connection load with no failed request", function()
    local app = start(http_app("v1"), { "-w", 2 })
    local results = under_load(app, function()
      for gen = 2, 4 do
        rewrite(app, http_app("v" .. gen))
        local out, rc = ctl(app, "reload")
        assert.equal(0, rc, out)
        assert.matches("generation " .. gen, out, 1, true)
        -- served by the new code as soon as reload has returned
        assert.matches("^v" .. gen .. " %d " .. gen .. "\n$", (get(app)))
      end
    end)
    for _, r in ipairs(results) do
      assert.truthy(r.bodies.v1, summary(r))
      assert.truthy(r.bodies.v4, summary(r))
    end
    -- keep-alive connections of a draining generation were closed after an answer, each time
    assert.is_true(results[1].reconnects >= 3, summary(results[1]))
    -- the old generations drained and exited: two workers, generation 4
    assert.truthy(H.wait_for(function()
      return #H.children(app.p.pid) == 2
    end, 5000), app.p:output())
    local out = ctl(app, "status")
    assert.equal(2, select(2, out:gsub("\n%d+ +%d+ +4 +listening", "")), out)
  end)

  it("refuses a script that does not compile, or fails at the master's top level, and keeps serving", function()
    local app = start(http_app("v1"), { "-w", 2 })
    local src = http_app("v2") .. "\nlocal x = = 1\n"
    rewrite(app, src)
    local out, rc = ctl(app, "reload")
    assert.not_equal(0, rc)
    assert.matches("app%.lua:%d+:", out)
    assert.matches("^v1 ", get(app))
    -- an error raised by the master's top level: file:line and the message
    rewrite(app, http_app("v3", 'error("master says no")'))
    out, rc = ctl(app, "reload")
    assert.not_equal(0, rc)
    assert.matches("app%.lua:%d+: master says no", out)
    assert.matches("^v1 %d 1\n$", get(app))
    -- nothing changed: the same generation, the same two workers
    local st = ctl(app, "status")
    assert.matches("generation 1", st, 1, true)
    assert.equal(2, select(2, st:gsub("\n%d+ +%d+ +1 +listening", "")), st)
    -- a fixed save reloads as the next generation
    rewrite(app, http_app("v4"))
    out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.matches("generation 2", out, 1, true)
    assert.matches("^v4 %d 2\n$", get(app))
  end)

  it("rolls back a new generation whose workers fail to start, and says why", function()
    local app = start(http_app("v1"), { "-w", 2 })
    under_load(app, function()
      -- an error at a worker's top level only (the master's top level runs fine)
      rewrite(app, http_app("v2", nil, 'error("worker cannot start")'))
      local out, rc = ctl(app, "reload")
      assert.not_equal(0, rc, out)
      assert.matches("new worker %d exited with code 1 before it was ready: [^\n]*app%.lua:%d+: worker cannot start", out)
      assert.matches("^v1 %d 1\n$", get(app))
      -- a worker that exits at its top level
      rewrite(app, http_app("v3", nil, "process.exit(7)"))
      out, rc = ctl(app, "reload")
      assert.not_equal(0, rc, out)
      assert.matches("code 7", out, 1, true)
      assert.matches("^v1 %d 1\n$", get(app))
    end)
    -- a worker that does not become ready in time
    rewrite(app, http_app("v5", "cluster.setup({ workers = 2, reload_timeout = 300 })",
      "local t0 = os.clock() while os.clock() - t0 < 3 do end"))
    local out, rc = ctl(app, "reload")
    assert.not_equal(0, rc, out)
    assert.matches("not ready within 300 ms", out, 1, true)
    assert.matches("^v1 %d 1\n$", get(app))
    -- none of the failed workers is left; the old ones were never touched
    assert.truthy(H.wait_for(function()
      return #H.children(app.p.pid) == 2
    end, 3000))
    local st = ctl(app, "status")
    assert.matches("generation 1", st, 1, true)
    assert.equal(0, select(2, st:gsub("\n%d+ +%d+ +[2-9] ", "")), st)
    assert.equal(2, select(2, st:gsub("\n%d+ +%d+ +1 +listening +%S+ +%d+ +%d+ +%S+ +0", "")), st)
    -- and a good save still reloads
    rewrite(app, http_app("v6"))
    out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.matches("^v6 ", get(app))
  end)

  it("starts the new generation one worker at a time with start = \"sequential\"", function()
    -- each worker of the new code takes 0.3 s to get ready: started one after the other,
    -- their kernel start times are at least that far apart
    local src = http_app("v1", 'cluster.setup({ workers = 3, start = "sequential" })', "os.execute('sleep 0.3')")
    local app = start(src)
    rewrite(app, (src:gsub('"v1"', '"v2"')))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out .. app.p:output())
    assert.matches("starting 3 workers of generation 2, one at a time", app.p:output(), 1, true)
    -- (the old generation's workers may still be draining a moment after the switch)
    local raw, st
    H.wait_for(function()
      raw = ctl(app, "status", "--json")
      st = json_decode(raw)
      for _, w in ipairs(st.workers) do
        if w.generation ~= 2 then return false end
      end
      return true
    end, 5000)
    local hz = tonumber((H.sh("getconf CLK_TCK"))) or 100
    local starts = {}
    for _, w in ipairs(st.workers) do
      assert.equal(2, w.generation, raw .. app.p:output())
      local stat = H.read_file("/proc/" .. w.pid .. "/stat"):gsub("^.-%) ", "")
      local fields = {}
      for f in stat:gmatch("%S+") do fields[#fields + 1] = f end
      starts[w.id] = tonumber(fields[20]) / hz
    end
    assert.is_true(starts[2] - starts[1] >= 0.25, "start times " .. starts[1] .. " " .. starts[2])
    assert.is_true(starts[3] - starts[2] >= 0.25, "start times " .. starts[2] .. " " .. starts[3])
    assert.matches("^v2 %d 2\n$", get(app))
  end)

  it("applies a scheduling policy set by the new code", function()
    local function spread(app, n)
      local seen = {}
      for _ = 1, n do
        local body = get(app)
        local id = body and body:match("^%S+ (%d+)")
        seen[id or "fail"] = (seen[id or "fail"] or 0) + 1
      end
      return seen
    end
    local app = start(http_app("v1", "cluster.setup({ workers = 3 })"), {})
    -- every worker answers before the spread is counted (one still starting is not in the rotation)
    local seen = {}
    assert.truthy(H.wait_for(function()
      local body = get(app)
      local id = body and body:match("^%S+ (%d+)")
      if id then seen[id] = true end
      return seen["1"] and seen["2"] and seen["3"]
    end, 10000), app.p:output())
    local s = spread(app, 9)
    assert.same({ ["1"] = 3, ["2"] = 3, ["3"] = 3 }, s)
    rewrite(app, http_app("v2", [[cluster.setup({ workers = 3, scheduler = function(workers, conn)
      for _, w in ipairs(workers) do if w.id == 2 then return w end end
    end })]]))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.same({ ["2"] = 8 }, spread(app, 8))
    rewrite(app, http_app("v3", 'cluster.setup({ workers = 3, scheduler = "round_robin" })'))
    out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.same({ ["1"] = 3, ["2"] = 3, ["3"] = 3 }, spread(app, 9))
  end)

  it("replaces the master's handlers with the new code's and fires reload(generation)", function()
    local function src(answer)
      return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.on("request", function(w, msg) return %q .. " to " .. msg end)
  cluster.on("reload", function(gen) say("reload event", gen, "seen by", %q) end)
else
  http.create_server(function(req, res)
    return 200, cluster.worker:request("w" .. cluster.worker.id) .. "\n"
  end):listen()
end
]]):format(answer, answer)
    end
    local app = start(src("old"), { "-w", 2 })
    assert.matches("^old to w%d\n$", get(app))
    rewrite(app, src("new"))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    for _ = 1, 4 do
      assert.matches("^new to w%d\n$", get(app))
    end
    assert.truthy(app.p:wait_output("reload event 2 seen by new", 3000, true), app.p:output())
    assert.equal(0, app.p:count("seen by old", true))
  end)

  it("lets the old generation finish its in-flight requests, and kills it after drain_timeout", function()
    local function src(tag)
      return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 1, drain_timeout = 1500 })
else
  http.create_server(function(req, res)
    if req.path == "/slow" then timer.sleep(400) end
    if req.path == "/hang" then timer.sleep(60000) end
    return 200, %q .. "\n"
  end):listen()
end
]]):format(tag)
    end
    local app = start(src("v1"), {})
    local slow = assert(H.connect(app.port))
    slow:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    local hang = assert(H.connect(app.port))
    hang:send("GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    H.sleep(100)
    rewrite(app, src("v2"))
    local t0 = H.now()
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.is_true(H.now() - t0 < 1000, "reload waited for the old generation's drain")
    assert.equal("v2\n", get(app))
    -- the old worker drains: it shows so in status
    local st = ctl(app, "status")
    assert.matches("\n1 +%d+ +1 +draining", st)
    assert.matches("\n1 +%d+ +2 +listening", st)
    -- its in-flight request is answered by the old code, and its connection closed after it
    local data = slow:read_all(3000)
    assert.matches("^HTTP/1.1 200", data)
    assert.matches("\r\nconnection: close\r\n", data:lower(), 1, true)
    assert.matches("\r\n\r\nv1\n$", data)
    slow:close()
    -- the hanging one is cut when drain_timeout ends: the old worker is killed
    local _, how = hang:read_all(4000)
    assert.equal("eof", how)
    hang:close()
    assert.truthy(H.wait_for(function()
      return not ctl(app, "status"):match("\n%d+ +%d+ +1 ")
    end, 3000))
    assert.matches("did not drain within 1500 ms", app.p:output(), 1, true)
  end)

  it("hands the master's own servers' sockets to the new code, and stops the old code's timers", function()
    local function src(tag)
      return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 0 })
  http.create_server(function(req, res) return 200, %q .. "\n" end):listen()
  timer.every(50, function() say("tick", %q) end)
end
]]):format(tag, tag)
    end
    local app = start(src("v1"), {})
    under_load(app, function()
      for gen = 2, 3 do
        rewrite(app, src("v" .. gen))
        local out, rc = ctl(app, "reload")
        assert.equal(0, rc, out)
        assert.equal("v" .. gen .. "\n", get(app))
      end
    end)
    local n = app.p:count("tick v2", true)
    H.sleep(300)
    assert.equal(n, app.p:count("tick v2", true))
    assert.is_true(app.p:count("tick v3", true) > 2)
  end)

  it("reloads on SIGHUP", function()
    local app = start(http_app("v1"), { "-w", 2 })
    under_load(app, function()
      rewrite(app, http_app("v2"))
      app.p:kill("SIGHUP")
      assert.truthy(H.wait_for(function()
        local b = get(app)
        return b and b:match("^v2 %d 2")
      end, 5000), app.p:output())
    end)
    assert.truthy(app.p:wait_output("generation 2 serves", 2000, true))
  end)

  it("--watch reloads on a .lua change, debounced, and ignores a broken save", function()
    local app = start(http_app("v1"), { "-w", 2, "--watch" }, { files = { ["lib.lua"] = 'return "a"\n' } })
    -- a burst of saves is one reload
    for i = 1, 3 do
      rewrite(app, http_app("v2." .. i))
      H.sleep(30)
    end
    assert.truthy(H.wait_for(function()
      local b = get(app)
      return b and b:match("^v2%.3 %d 2")
    end, 5000), app.p:output())
    H.sleep(500)
    assert.equal(1, app.p:count("reload: loading", true), app.p:output())
    -- a broken save: reported, and the old code keeps serving
    rewrite(app, http_app("v3") .. "\nend end\n")
    assert.truthy(app.p:wait_output("app%.lua:%d+:", 3000), app.p:output())
    H.sleep(200)
    assert.matches("^v2%.3 %d 2\n$", get(app))
    -- a module beside the app changes: the new generation reads it again
    rewrite(app, http_app("v4", nil, 'TAG = TAG .. require("lib")'))
    assert.truthy(H.wait_for(function()
      local b = get(app)
      return b and b:match("^v4a ")
    end, 5000), app.p:output())
    H.write_file(app.dir .. "/lib.lua", 'return "b"\n')
    assert.truthy(H.wait_for(function()
      local b = get(app)
      return b and b:match("^v4b ")
    end, 5000), app.p:output())
    -- a file that is not Lua changes nothing
    local before = app.p:count("reload: loading", true)
    H.write_file(app.dir .. "/notes.txt", "hello")
    H.sleep(600)
    assert.equal(before, app.p:count("reload: loading", true))
  end)

  it("runs one reload at a time: a second one at once is refused, never mixed", function()
    -- the new code's workers take a moment to start, so the two reloads overlap
    local app = start(http_app("v1"), { "-w", 2 })
    rewrite(app, http_app("v2", nil, "local t0 = os.clock() while os.clock() - t0 < 0.4 do end"))
    local cmd = H.bin .. " reload --control " .. app.ctl
    local out = H.sh("(" .. cmd .. "; echo rc=$?) > " .. app.dir .. "/r1 2>&1 & sleep 0.1; (" .. cmd
      .. "; echo rc=$?) > " .. app.dir .. "/r2 2>&1; wait")
    local r1, r2 = H.read_file(app.dir .. "/r1"), H.read_file(app.dir .. "/r2")
    assert.matches("generation 2", r1, 1, true)
    assert.matches("rc=0", r1, 1, true)
    assert.matches("already in progress", r2, 1, true)
    assert.matches("rc=[1-9]", r2)
    assert.equal("", out)
    local st = ctl(app, "status")
    assert.matches("generation 2", st, 1, true)
    assert.truthy(H.wait_for(function()
      st = ctl(app, "status")
      return select(2, st:gsub("\n%d+ +%d+ +%d+ ", "")) == 2
    end, 5000), st)
    assert.equal(2, select(2, st:gsub("\n%d+ +%d+ +2 +listening", "")), st)
  end)

  it("closes what the new code no longer listens on: fewer reuseport workers, another port", function()
    local app = start(http_app("v1"), { "-w", 3, "-m", "reuseport" })
    under_load(app, function()
      rewrite(app, http_app("v2", "cluster.setup({ workers = 2 })"))
      local out, rc = ctl(app, "reload")
      assert.equal(0, rc, out)
    end)
    -- every connection is answered, none is left in the third slot's socket; both workers
    -- serve (the kernel hashes connections over the three sockets: worker 1 has two of them)
    local seen = {}
    for _ = 1, 30 do
      local b = get(app)
      assert.truthy(b, "a connection was not answered")
      seen[b:match("^v2 (%d)")] = true
    end
    assert.same({ ["1"] = true, ["2"] = true }, seen)
    -- the worker that took over the third slot's socket crashes: its replacement takes it too
    local st = ctl(app, "status")
    local pid1 = st:match("\n1 +(%d+) +2 ")
    assert.truthy(pid1, st)
    H.sh("kill -9 " .. pid1)
    assert.truthy(H.wait_for(function()
      local p = ctl(app, "status"):match("\n1 +(%d+) +2 +listening")
      return p and p ~= pid1
    end, 5000))
    for _ = 1, 12 do
      assert.truthy(get(app), "a connection was not answered")
    end
    -- the new code listens on another port: the old one is closed, not left queueing
    local other = H.free_port()
    rewrite(app, http_app("v3", nil, "TAG = TAG local s = require('luacluster.http').create_server(function() return 200, 'other' end) s:listen(" .. other .. ")")
      :gsub("\n  end%):listen%(%)", "\n  end)"))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.equal("other", get(app, other))
    assert.truthy(H.wait_for(function()
      local _, status = H.curl("http://127.0.0.1:" .. app.port .. "/", "-m 1")
      return status == 0 or status == nil
    end, 3000))
  end)

  for _, mode in ipairs({ "shared", "reuseport", "ports" }) do
    it("keeps serving through a reload in " .. mode .. " mode", function()
      local app = start(http_app("v1"), { "-w", 2, "-m", mode }, { port = mode == "ports" and H.free_port_range(2) or nil })
      local ports = mode == "ports" and { app.port, app.port + 1 } or nil
      local results = under_load(app, function()
        for gen = 2, 3 do
          rewrite(app, http_app("v" .. gen))
          local out, rc = ctl(app, "reload")
          assert.equal(0, rc, out .. app.p:output())
          assert.matches("generation " .. gen, out, 1, true)
          -- the new generation serves on the same sockets
          for _, port in ipairs(ports or { app.port }) do
            assert.truthy(H.wait_for(function()
              local b = get(app, port)
              return b and b:match("^v" .. gen .. " ")
            end, 3000), app.p:output())
          end
        end
      end, { ports = ports })
      for _, r in ipairs(results) do
        assert.truthy(r.bodies.v3, summary(r))
      end
    end)
  end
end)


describe("control", function()
  after_each(function()
    H.cleanup()
  end)

  it("shows status as a table and as JSON", function()
    local app = start(http_app("v1"), { "-w", 2 })
    for _ = 1, 5 do
      assert.truthy(get(app))
    end
    -- a restarted worker, and an open connection
    local out = ctl(app, "status")
    local pid1 = tonumber(out:match("\n1 +(%d+)"))
    assert.truthy(pid1, out)
    H.sh("kill -9 " .. pid1)
    assert.truthy(H.wait_for(function()
      local o = ctl(app, "status")
      local p = tonumber(o:match("\n1 +(%d+) +%d+ +listening"))
      return p and p ~= pid1
    end, 5000))
    local s = assert(H.connect(app.port))
    s:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.truthy(s:recv(2000))
    out = ctl(app, "status")
    assert.matches("master pid " .. app.p.pid .. ", mode dispatch, generation 1", out, 1, true)
    assert.matches("\nid +pid +gen +state +uptime +requests +conns +rss +restarts\n", out)
    local rows = {}
    for id, pid, gen, state, up, req, conns, rss, restarts in
      out:gmatch("\n(%d+) +(%d+) +(%d+) +(%a+) +(%S+) +(%d+) +(%d+) +(%S+) +(%d+)") do
      rows[tonumber(id)] = { pid = tonumber(pid), gen = tonumber(gen), state = state, up = up,
        requests = tonumber(req), conns = tonumber(conns), rss = rss, restarts = tonumber(restarts) }
    end
    assert.truthy(rows[1] and rows[2], out)
    assert.equal(1, rows[1].restarts)
    assert.equal(0, rows[2].restarts)
    assert.matches("^%d+s$", rows[2].up)
    assert.matches("^[%d.]+[KM]$", rows[2].rss)
    -- the JSON: an object with the master's fields and an array of workers
    local jout, rc = ctl(app, "status", "--json")
    assert.equal(0, rc, jout)
    local st = json_decode(jout)
    assert.equal(app.p.pid, st.pid)
    assert.equal("dispatch", st.mode)
    assert.equal(1, st.generation)
    assert.equal("number", type(st.uptime))
    assert.is_true(st.workers._array)
    assert.equal(2, #st.workers)
    local requests, conns = 0, 0
    for _, w in ipairs(st.workers) do
      for _, k in ipairs({ "id", "pid", "generation", "uptime", "requests", "connections", "rss", "restarts" }) do
        assert.equal("number", type(w[k]), k .. " in " .. jout)
      end
      assert.equal("string", type(w.state))
      assert.is_true(w.rss > 100000)
      requests, conns = requests + w.requests, conns + w.connections
    end
    -- the worker killed above took some of the counts with it; its replacement's start at 0
    assert.is_true(requests >= 1, jout)
    assert.equal(1, conns, jout)
    s:close()
  end)

  it("counts requests per worker", function()
    local app = start(http_app("v1"), { "-w", 1 })
    for _ = 1, 6 do
      assert.truthy(get(app))
    end
    local st = json_decode((ctl(app, "status", "--json")))
    -- the start's own probe requests are counted too
    assert.is_true(st.workers[1].requests >= 6, tostring(st.workers[1].requests))
    local n = st.workers[1].requests
    assert.truthy(get(app))
    st = json_decode((ctl(app, "status", "--json")))
    assert.equal(n + 1, st.workers[1].requests)
  end)

  it("keeps its socket in a per-user 0700 folder with mode 0600, at a path derived from the app", function()
    local app = start(http_app("v1"), { "-w", 1 }, { default_control = true, env = { XDG_RUNTIME_DIR = false } })
    -- the default path is found from the app alone
    local out, rc = H.sh("env -u XDG_RUNTIME_DIR " .. H.bin .. " status " .. app.path)
    assert.equal(0, rc, out)
    assert.matches("generation 1", out, 1, true)
    local uid = H.sh("id -u"):match("%d+")
    local dir = "/tmp/luacluster-" .. uid
    -- the name: the app's file name and an FNV-1a hash of its absolute path
    local abs = H.sh("realpath " .. app.path):gsub("%s+$", "")
    local found = dir .. "/app-" .. bit.tohex(require("luacluster.sched.ip_hash").hash(abs)) .. ".sock"
    assert.equal("700 " .. uid, (H.sh("stat -c '%a %u' " .. dir):gsub("%s+$", "")))
    assert.equal("600 " .. uid .. " socket", (H.sh("stat -c '%a %u %F' " .. found):gsub("%s+$", "")))
    -- under XDG_RUNTIME_DIR when there is one
    local xdg = H.tmpdir()
    local app2 = start(http_app("v1"), { "-w", 1 }, { default_control = true, env = { XDG_RUNTIME_DIR = xdg } })
    assert.equal("700", (H.sh("stat -c '%a' " .. xdg .. "/luacluster"):gsub("%s+$", "")))
    local socks = H.sh("ls " .. xdg .. "/luacluster/")
    assert.matches("^app%-%x+%.sock\n$", socks)
    assert.equal("600", (H.sh("stat -c '%a' " .. xdg .. "/luacluster/" .. socks:gsub("%s+$", "")):gsub("%s+$", "")))
    out, rc = H.sh("XDG_RUNTIME_DIR=" .. xdg .. " " .. H.bin .. " stop " .. app2.path)
    assert.equal(0, rc, out)
    assert.equal(0, (app2.p:wait(5000)))
    -- the socket is removed when the master exits
    assert.equal("", H.sh("ls " .. xdg .. "/luacluster/"))
    -- the control socket is refused to another user
    if H.sh("command -v setpriv"):match("setpriv") and uid == "0" then
      -- the other user runs a copy installed in a folder it can read: the checkout may live
      -- where it cannot (root's 0700 home), which is not what this test is about
      local prefix = H.tmpdir()
      out, rc = H.sh("chmod 755 " .. prefix .. " && cmake --install " .. H.build_dir .. " --prefix " .. prefix)
      assert.equal(0, rc, out)
      out, rc = H.sh("env -u LUACLUSTER_LUA_DIR setpriv --reuid=65534 --regid=65534 --clear-groups "
        .. prefix .. "/bin/luacluster status --control " .. found)
      assert.not_equal(0, rc, out)
      assert.matches("cannot reach", out, 1, true)
    end
  end)

  it("stops gracefully with luacluster stop, exit 0, finishing a request in flight", function()
    local app = start([[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/slow" then timer.sleep(500) end
    return 200, "done\n"
  end):listen()
end
]], { "-w", 2 })
    local s = assert(H.connect(app.port))
    s:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    H.sleep(100)
    local out, rc = ctl(app, "stop")
    assert.equal(0, rc, out)
    assert.matches("stopped", out, 1, true)
    assert.matches("done\n", (s:read_all(3000)), 1, true)
    s:close()
    assert.equal(0, (app.p:wait(5000)))
    -- the control socket is gone with the master
    assert.equal(1, select(2, H.sh("test -e " .. app.ctl)))
  end)

  it("says in one line that no app is running, with a non-zero exit", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/app.lua", "return\n")
    for _, cmd in ipairs({ "reload", "status", "stop" }) do
      local out, rc = H.sh(H.bin .. " " .. cmd .. " --control " .. dir .. "/none.sock")
      assert.not_equal(0, rc)
      assert.matches("^luacluster: [^\n]+\n$", out)
      assert.matches("cannot reach a running master", out, 1, true)
      out, rc = H.sh(H.bin .. " " .. cmd .. " " .. dir .. "/app.lua")
      assert.not_equal(0, rc)
      assert.matches("^luacluster: [^\n]+\n$", out)
      out, rc = H.sh(H.bin .. " " .. cmd .. " " .. dir .. "/missing.lua")
      assert.not_equal(0, rc)
      assert.matches("^luacluster: [^\n]+\n$", out)
    end
    -- a master killed at once leaves its socket behind: the commands say none runs, and a new start takes it over
    local app = start(http_app("v1"), { "-w", 1 })
    app.p:kill_group("SIGKILL")
    app.p:wait(3000)
    local out, rc = ctl(app, "status")
    assert.not_equal(0, rc)
    assert.matches("^luacluster: [^\n]+\n$", out)
    local p2 = H.start(app.path, { "-p", app.port, "--control", app.ctl, "-w", 1 })
    assert.truthy(H.wait_for(function() return get(app) end, 5000), p2:output())
    out, rc = ctl(app, "status")
    assert.equal(0, rc, out)
    -- and a second master for the same control socket is refused
    local p3 = H.start(app.path, { "-p", H.free_port(), "--control", app.ctl, "-w", 1 })
    assert.not_equal(0, (p3:wait(5000)))
    assert.matches("another luacluster master is running", p3:output(), 1, true)
  end)
end)


-- issue 13: what a reload keeps, when a new worker counts as ready, who hears broadcasts
describe("reload lifecycle", function()
  after_each(function()
    H.cleanup()
  end)

  -- a worker that fetches its configuration from the master, then listens
  local ASYNC = [[
local http = require("luacluster.http")
local TAG = %q
if cluster.is_master then
  cluster.on("request", function(w, msg) timer.sleep(200) return { tag = TAG } end)
else
  timer.after(0, function()
    local conf = assert(cluster.worker:request("config"))
    http.create_server(function()
      return 200, TAG .. " " .. cluster.worker.id .. " " .. conf.tag .. "\n"
    end):listen()
  end)
end
]]

  it("waits for a new worker that listens after an asynchronous step: no request refused over two reloads", function()
    local app = start(ASYNC:format("v1"), { "-w", 2 })
    local results = under_load(app, function()
      for gen = 2, 3 do
        rewrite(app, ASYNC:format("v" .. gen))
        local out, rc = ctl(app, "reload")
        assert.equal(0, rc, out .. app.p:output())
      end
    end)
    for _, r in ipairs(results) do
      assert.truthy(r.bodies.v3, summary(r))
    end
  end)

  it("with ready = \"manual\" a reload waits for cluster.worker:ready(), and fails at reload_timeout without it", function()
    local MANUAL = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 2, ready = "manual", reload_timeout = %d })
else
  http.create_server(function() return 200, "%s " .. cluster.worker.generation .. "\n" end):listen()
  %s
end
]]
    local app = start(MANUAL:format(30000, "v1", "cluster.worker:ready()"), {})
    rewrite(app, MANUAL:format(30000, "v2", "timer.after(1200, function() say('ready', cluster.worker.id) cluster.worker:ready() end)"))
    local t0 = H.now()
    local out, rc = ctl(app, "reload")
    local took = H.now() - t0
    assert.equal(0, rc, out)
    assert.truthy(took >= 1000, "the reload did not wait for ready(): " .. took .. " ms\n" .. app.p:output())
    -- both said ready before the reload ended; their lines come through the master's forwarder,
    -- which a loaded machine may run after the reload's answer: wait for the second line
    H.wait_for(function() return app.p:count("ready %d") >= 2 end, 5000)
    assert.equal(2, app.p:count("ready %d"))
    assert.matches("^v2 2\n$", get(app))
    -- a worker that never says it is ready is a stuck one: reload_timeout ends the reload
    rewrite(app, MANUAL:format(1500, "v3", ""))
    out, rc = ctl(app, "reload")
    assert.not_equal(0, rc, out)
    assert.matches("not ready within 1500 ms", out, 1, true)
    assert.matches("^v2 2\n$", get(app))
  end)

  it("starts a sequential first start by the same rule: the next worker once the last said ready()", function()
    local p = H.start_app([[
      local core = require("luacluster.core")
      if cluster.is_master then
        cluster.setup({ workers = 2, start = "sequential", ready = "manual" })
        cluster.on("fork", function(w) say("fork", w.id, core.now()) end)
      else
        timer.after(600, function() say("ready", cluster.worker.id) cluster.worker:ready() end)
      end
    ]], {})
    assert.truthy(p:wait_output("fork 2 %d+", 8000), p:output())
    local t1 = tonumber(p:output():match("fork 1 (%d+)"))
    local t2 = tonumber(p:output():match("fork 2 (%d+)"))
    assert.truthy(t2 - t1 >= 500, "worker 2 started " .. (t2 - t1) .. " ms after worker 1\n" .. p:output())
    assert.equal(0, (p:stop()))
  end)

  it("carries cluster.keep() into the new code: ids continue after a reload", function()
    local STORE = [[
local http = require("luacluster.http")
if cluster.is_master then
  local store = cluster.keep("ids", { next = 1 })
  local plain = { next = 1 } -- a local: starts afresh with the new code
  cluster.on("request", function(w, msg)
    local id = store.next
    store.next = id + 1
    plain.next = plain.next + 1
    return "%s " .. id .. " " .. (plain.next - 1)
  end)
  %s
else
  http.create_server(function() return 200, cluster.worker:request("id") .. "\n" end):listen()
end
]]
    local app = start(STORE:format("v1", ""), { "-w", 1 })
    local last
    for _ = 1, 3 do
      last = get(app)
    end
    assert.matches("^v1 %d+ %d+\n$", last)
    local n = tonumber(last:match("^v1 (%d+)"))
    rewrite(app, STORE:format("v2", ""))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.equal("v2 " .. (n + 1) .. " 1\n", get(app))
    assert.equal("v2 " .. (n + 2) .. " 2\n", get(app))
    -- data that cannot cross as a message refuses the reload, with the reason, and
    -- changes nothing
    rewrite(app, STORE:format("v3", "store.fn = print"))
    out, rc = ctl(app, "reload")
    assert.not_equal(0, rc, out)
    assert.matches("cluster.keep('ids') cannot be carried into the new code", out, 1, true)
    assert.equal("v2 " .. (n + 3) .. " 3\n", get(app))
    -- a key the new top level sets is its own; the others continue
    rewrite(app, STORE:format("v4", "store.version = 4"))
    out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.equal("v4 " .. (n + 4) .. " 1\n", get(app))
  end)

  it("keeps broadcasting to the old generation's draining workers until they exit", function()
    local port = H.free_port()
    local CHAT = [[
local net = require("luacluster.net")
local TAG = %q
if cluster.is_master then
  cluster.setup({ workers = 1, drain_timeout = 20000 })
  cluster.on("message", function(w, msg)
    if msg == "say" then cluster.broadcast("from the master") end
  end)
else
  local clients = {}
  cluster.worker:on("message", function(msg)
    for s in pairs(clients) do s:write(TAG .. " got: " .. tostring(msg) .. "\n") end
  end)
  cluster.worker:on("disconnect", function() for s in pairs(clients) do s:write(TAG .. " draining\n") end end)
  net.create_server(function(sock)
    clients[sock] = true
    sock:write(TAG .. " hello\n")
    sock:on("data", function(data)
      if data:find("say") then
        cluster.worker:broadcast(TAG .. " says hi")
        cluster.worker:send("say")
      end
    end)
    sock:on("close", function() clients[sock] = nil end)
  end):listen(PORT)
end
]]
    CHAT = CHAT:gsub("PORT", tostring(port))
    local app = start(CHAT:format("v1"), {}, { no_http = true })
    local old
    assert.truthy(H.wait_for(function()
      old = H.connect(port)
      return old
    end, 8000), app.p:output())
    local seen = old:read_until(function(d) return d:find("v1 hello", 1, true) end, 5000)
    assert.matches("v1 hello", seen, 1, true)
    rewrite(app, CHAT:format("v2"))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    seen = old:read_until(function(d) return d:find("v1 draining", 1, true) end, 5000)
    assert.matches("v1 draining", seen, 1, true)
    -- a client of the new generation speaks: the old worker's client hears the new worker's
    -- broadcast and the master's
    local new = H.connect(port)
    new:read_until(function(d) return d:find("v2 hello", 1, true) end, 5000)
    new:send("say\n")
    seen = old:read_until(function(d)
      return d:find("v1 got: v2 says hi", 1, true) and d:find("v1 got: from the master", 1, true)
    end, 5000)
    assert.matches("v1 got: v2 says hi", seen, 1, true)
    assert.matches("v1 got: from the master", seen, 1, true)
    old:close()
    new:close()
  end)

  it("returns a worker from cluster.fork() in the new code's top level", function()
    local FORKS = [[
local http = require("luacluster.http")
if cluster.is_master then
  local w = cluster.fork()
  say("%s fork returned", type(w), type(w) == "table" and w.id, type(w) == "table" and w.generation)
  if type(w) == "table" then
    w:on("online", function() say("%s online", w.id, w.pid) end)
  end
else
  http.create_server(function() return 200, "%s " .. cluster.worker.generation .. "\n" end):listen()
end
]]
    local app = start(FORKS:format("v1", "v1", "v1"), {})
    assert.truthy(app.p:wait_output("v1 fork returned table 1 1", 5000, true), app.p:output())
    rewrite(app, FORKS:format("v2", "v2", "v2"))
    local out, rc = ctl(app, "reload")
    assert.equal(0, rc, out)
    assert.truthy(app.p:wait_output("v2 fork returned table 1 2", 5000, true), app.p:output())
    assert.truthy(app.p:wait_output("v2 online 1 %d+", 5000), app.p:output())
    assert.matches("^v2 2\n$", get(app))
  end)
end)
