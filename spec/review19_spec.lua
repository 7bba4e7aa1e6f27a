-- Review of issue 19's later changes (new19's crossings, rev18's TLS slicing): defects found by
-- a maintainer's review (doc/issue19/rev19b.md), each with a real process, a real socket and a
-- real client (curl, python3).
local H = require("helper")
local U = require("upgrade_util")
local stop = U.stop
local ctl, status_pid, get = U.ctl, U.status_pid, U.get


-- src written as app.lua, started with its own port and control socket
local function start(src, options)
  local dir = H.tmpdir()
  local path = dir .. "/app.lua"
  H.write_file(path, H.prelude .. src)
  local app = { port = H.free_port(), dir = dir, path = path, ctl = dir .. "/ctl.sock" }
  local argv = { H.bin, "-p", tostring(app.port), "--control", app.ctl }
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = tostring(o)
  end
  argv[#argv + 1] = path
  app.p = H.spawn(argv, { dir = dir })
  assert(H.wait_for(function() return get(app) ~= nil end, 8000, 50), "the app did not start:\n" .. app.p:output())
  return app
end



describe("review 19: cluster.job across two upgrades in a row", function()
  after_each(H.cleanup)

  -- The run in flight in the first master's worker was counted as running by the second master
  -- (adopted at the switch), but the second master's jobs.running() listed only its own runs:
  -- a second upgrade right after the first handed the third master nothing, and the third
  -- master started a run while the first master's worker still ran one (two runs at once).
  it("a run still going in the first master's worker is not overlapped by the third master", function()
    local app = start(U.job_app(200, 4000), { "-w", 2 })
    -- right after a run started: it has about 4 s to go in the first master's worker
    assert.truthy(H.wait_for(function() return (get(app) or ""):find("^running 1 ") end, 5000), get(app))
    local out, code = ctl(app, "upgrade")
    assert.equal(0, code, out .. app.p:output())
    out, code = ctl(app, "upgrade")
    assert.equal(0, code, out .. app.p:output())
    H.sleep(1500) -- (the third master's schedule fires every 200 ms meanwhile)
    local body = get(app) or ""
    assert.truthy(body:find(" overlaps 0\n$"), body .. "\n" .. app.p:output())
    stop(app)
  end)
end)


describe("review 19: http.create_server's header_timeout", function()
  after_each(H.cleanup)

  -- 0 was refused (rev18), but the runtime counts whole ms: 0.5 became 0 and every connection,
  -- plain or TLS, was reset at once with no word why
  it("refuses a header_timeout under 1 ms, as it refuses 0", function()
    local port = H.free_port()
    local app = H.start_app([[
local cluster = require("luacluster.cluster")
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function() return 200, "ok\n" end, { header_timeout = 0.5 }):listen(tonumber(os.getenv("PORT")))
end
]], { "-w", "1" }, { env = { PORT = tostring(port) } })
    -- refused: the start fails naming the option (before: it ran on, resetting every client)
    local rc = app:wait(10000)
    assert.are_not.equal(0, rc, app:output())
    assert.matches("app%.lua:%d+: http%.create_server: header_timeout must be a number of ms > 0", app:output())
  end)
end)
