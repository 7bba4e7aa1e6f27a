-- luacluster.ngx inside real workers (what waits or needs a worker): ngx.sleep, ngx.timer.at
-- (its arguments, a callback that waits, premature runs when the worker drains, "process
-- exiting" after), ngx.worker.id/count/pid, and ngx.log lines reaching stderr.
local H = require("helper")

local APP = [[
local ngx = require("luacluster.ngx")
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup({ workers = 3 }) -- not this machine's CPU count (2 in CI): count() must read the setup
else
  ngx.timer.at(60, function(premature, a, b)
    local ok, err = ngx.timer.at(1, function() end)
    local zero = ngx.timer.at(0, function(p)
      ngx.sleep(0.2) -- the drain waits for it
      say("zero-delay timer after the drain", tostring(p))
    end)
    say("premature", tostring(premature), a, b, tostring(ok), err, tostring(zero), tostring(ngx.worker.exiting()))
  end, "x", "y")
  local function check_log()
    ngx.log(ngx.ERR, "marker-", 42, nil, true, ngx.null)
    ngx.log(ngx.WARN, "warn-marker")
    ngx.log(ngx.DEBUG, "debug-marker")
  end
  http.create_server(function(req)
    if req.path == "/worker" then
      return 200, ngx.worker.id() .. " " .. ngx.worker.count() .. " " .. ngx.worker.pid()
    elseif req.path == "/sleep" then
      ngx.update_time()
      local t0 = ngx.now()
      ngx.sleep(0.2)
      ngx.sleep(0)
      return 200, tostring(ngx.now() - t0)
    elseif req.path == "/timer" then
      local got
      local ok, err = ngx.timer.at(0.05, function(premature, a, b, c)
        ngx.sleep(0.05) -- a timer callback may wait
        got = table.concat({ tostring(premature), a, tostring(b), tostring(c) }, ",")
      end, "a", nil, 3)
      ngx.sleep(0.5)
      return 200, tostring(ok) .. " " .. tostring(err) .. " " .. tostring(got) .. " " .. ngx.timer.pending_count()
    elseif req.path == "/log" then
      check_log()
      return 200, "logged"
    end
    return 404, "no"
  end):listen()
end
]]


describe("luacluster.ngx in workers", function()
  local p, port

  setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-p", port })
    assert(H.wait_for(function()
      local _, status = H.curl("http://127.0.0.1:" .. port .. "/worker")
      return status == 200
    end, 10000), p:output())
  end)

  teardown(function()
    H.cleanup()
  end)

  it("ngx.worker: a 0-based id, the worker count, the worker's pid", function()
    local ids = {}
    for _ = 1, 9 do
      local body, status = H.curl("http://127.0.0.1:" .. port .. "/worker")
      assert.equal(200, status)
      local id, count, pid = body:match("^(%d+) (%d+) (%d+)$")
      assert.equal("3", count)
      assert.is_true(id == "0" or id == "1" or id == "2", body)
      assert.not_equal(p.pid, tonumber(pid))
      assert.is_true(H.pid_alive(tonumber(pid)))
      ids[id] = true
    end
    assert.is_true(ids["0"] and ids["1"] and ids["2"], "every worker answered")
  end)

  it("ngx.sleep waits without blocking the worker", function()
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/sleep")
    assert.equal(200, status)
    local dt = tonumber(body)
    assert.is_true(dt >= 0.19 and dt < 5, body)
  end)

  it("ngx.timer.at runs fn(false, ...) later, in a coroutine that may wait; it returns 1", function()
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/timer")
    assert.equal(200, status)
    -- the 60 s timer of the top level is still pending
    assert.equal("1 nil false,a,nil,3 1", body)
  end)

  it("ngx.log writes luacluster log lines at the matching level, with the caller's file:line", function()
    local _, status = H.curl("http://127.0.0.1:" .. port .. "/log")
    assert.equal(200, status)
    local err = p:wait_output("debug%-marker", 5000) and p:stderr() or p:stderr()
    assert.matches("%[worker %d%] [^\n]* error: %[lua%] app%.lua:%d+: check_log%(%): marker%-42niltruenull\n", err)
    assert.matches("%[worker %d%] [^\n]* warn: %[lua%] app%.lua:%d+: check_log%(%): warn%-marker\n", err)
    assert.matches("%[worker %d%] [^\n]* debug: %[lua%] app%.lua:%d+: check_log%(%): debug%-marker\n", err)
  end)

  it("a drain runs the waiting timers at once with premature = true and refuses new delayed ones", function()
    p:stop(10000)
    local out = p:stdout()
    assert.equal(3, select(2, out:gsub("premature true x y nil process exiting 1 true", "")), p:output())
    assert.equal(3, select(2, out:gsub("zero%-delay timer after the drain false", "")), p:output())
  end)
end)


describe("luacluster.ngx timers in a worker that serves nothing", function()
  after_each(function()
    H.cleanup()
  end)

  it("a drain waits for a zero-delay timer made while it drains; a failing callback is logged", function()
    local p = H.start_app([[
      local ngx = require("luacluster.ngx")
      if cluster.is_master then
        cluster.setup({ workers = 1 })
      else
        ngx.timer.at(60, function(premature)
          ngx.timer.at(0, function()
            ngx.sleep(0.5)
            say("cleanup done after", tostring(premature))
          end)
        end)
        ngx.timer.at(0, function() error("boom-in-a-timer") end)
        ngx.timer.at(0.05, function() say("worker up") end) -- after the failing one: it goes on
      end
    ]], {})
    assert(p:wait_output("worker up", 10000), p:output())
    p:stop(10000)
    assert.matches("cleanup done after true", p:stdout(), 1, true)
    assert.matches("error: ngx.timer.at callback failed: [^\n]*boom%-in%-a%-timer\n%[worker 1%] stack traceback", p:stderr())
  end)
end)
