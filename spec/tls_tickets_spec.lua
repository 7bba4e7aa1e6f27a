-- TLS sessions resume on any worker, across a reload and after a crashed worker's restart,
-- because the master makes the session ticket keys and hands them to every worker of every
-- generation (lua/luacluster/master/tls_tickets.lua); and the keys rotate on the schedule of
-- cluster.setup{ tls_ticket_rotate = ms }, the previous key still accepted for one period.
-- Real processes: the luacluster binary with 2 workers (shared and dispatch modes), a
-- certificate made now with the openssl CLI, and `openssl s_client` as the client, whose
-- -sess_out / -sess_in files carry a session from one client process to the next. Without the
-- cluster's ring each worker's OpenSSL makes its own keys: a ticket from one worker does not
-- resume on another, nor on any worker after a reload or a restart.
local H = require("helper")

local REQUEST = [[printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n']]


local function make_cert(dir)
  local out, rc = H.sh("cd " .. dir .. " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    .. " -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost")
  assert(rc == 0, out)
end


-- the app: each answer says which worker process (and generation) served it
local function app_source(dir, setup)
  return ([[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup(%s)
else
  http.create_server(function(req)
    return 200, string.format("worker=%%d pid=%%d gen=%%d reused=%%s\n", cluster.worker.id, process.pid,
      cluster.worker.generation, tostring(req.tls and req.tls.session_reused))
  end, { tls = { cert = %q, key = %q } }):listen()
end
]]):format(setup, dir .. "/cert.pem", dir .. "/key.pem")
end


local function start(setup)
  local dir = H.tmpdir()
  make_cert(dir)
  local port = H.free_port()
  local app = { port = port, dir = dir, ctl = dir .. "/ctl.sock", path = dir .. "/app.lua" }
  H.write_file(app.path, H.prelude .. app_source(dir, setup))
  app.p = H.start(app.path, { "-p", port, "--control", app.ctl })
  local ok = H.wait_for(function()
    local _, status = H.curl("https://127.0.0.1:" .. port .. "/", "-k")
    return status == 200
  end, 10000, 50)
  assert(ok, "the app did not start serving HTTPS:\n" .. app.p:output())
  return app
end


-- the app of a describe block: started before its tests, stopped after them
local function app_for_block(setup_source)
  local app = {}
  setup(function()
    for k, v in pairs(start(setup_source)) do
      app[k] = v
    end
  end)
  teardown(function()
    if app.p then
      app.p:stop()
    end
  end)
  return app
end


-- one connection by s_client: -> { reused = bool, version =, worker =, pid =, gen = } and
-- its whole output; sess_in / sess_out: session files
local function connect(app, version, sess_in, sess_out)
  local cmd = REQUEST .. " | timeout 10 openssl s_client -connect 127.0.0.1:" .. app.port
    .. " -servername localhost -ign_eof " .. (version == "1.2" and "-tls1_2" or "-tls1_3")
    .. (sess_in and (" -sess_in " .. sess_in) or "") .. (sess_out and (" -sess_out " .. sess_out) or "")
  local out = H.sh(cmd)
  local how, proto = out:match("\n(%a+), (TLSv1%.%d), Cipher is")
  local r = {
    reused = how == "Reused", version = proto,
    worker = tonumber(out:match("worker=(%d+)")), pid = tonumber(out:match("pid=(%d+)")),
    gen = tonumber(out:match("gen=(%d+)")), server_says_reused = out:match("reused=(%a+)"),
  }
  assert(how and r.pid, "no TLS session and answer in s_client's output:\n" .. out)
  assert.equals("TLSv" .. version, r.version)
  -- what the server saw (req.tls.session_reused) is what the client saw
  assert.equals(tostring(r.reused), r.server_says_reused)
  return r, out
end


-- the session file's ticket: its key name (the first 16 bytes, hex) and lifetime hint
local function ticket(file)
  local out, rc = H.sh("openssl sess_id -in " .. file .. " -noout -text")
  assert(rc == 0, out)
  local first = out:match("TLS session ticket:%s*\n%s*0000 %- ([%x %-]+)")
  assert(first, "no ticket in the session:\n" .. out)
  local hex = first:gsub("[^%x]", ""):sub(1, 32)
  return hex, tonumber(out:match("lifetime hint: (%d+)"))
end


local function ctl(app, cmd)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. app.ctl)
end


for _, mode in ipairs({ "shared", "dispatch" }) do
  describe("TLS session tickets (" .. mode .. " mode, 2 workers)", function()
    local app = app_for_block(("{ workers = 2, mode = %q }"):format(mode))
    local sessions = {}

    for _, version in ipairs({ "1.2", "1.3" }) do
      it("a session made on one worker resumes on the other (TLS " .. version .. ")", function()
        local file = app.dir .. "/sess" .. version
        local first = connect(app, version, nil, file)
        assert.is_false(first.reused)
        sessions[version] = file
        local other
        for _ = 1, 100 do
          local r = connect(app, version, file)
          assert.is_true(r.reused, "a resumption on worker " .. r.worker .. " was a full handshake")
          if r.pid ~= first.pid then
            other = r
            break
          end
        end
        assert.truthy(other, "no other worker answered in 100 connections")
        assert.are_not.equal(first.worker, other.worker)
      end)
    end

    it("a resumed TLS 1.3 connection gets a fresh ticket, which resumes in turn (single-use tickets)", function()
      local file = sessions["1.3"]
      for i = 1, 3 do
        local next_file = file .. ".next" .. i
        local r = connect(app, "1.3", file, next_file)
        assert.is_true(r.reused, "resumption " .. i .. " was a full handshake")
        assert.truthy(ticket(next_file), "no new ticket after resumption " .. i)
        file = next_file
      end
    end)

    it("a session made before a reload resumes on the new generation's workers", function()
      local out, rc = ctl(app, "reload")
      assert.equals(0, rc, out)
      for _, version in ipairs({ "1.2", "1.3" }) do
        local r = connect(app, version, sessions[version])
        assert.equals(2, r.gen)
        assert.is_true(r.reused)
      end
    end)

    it("a session made before a binary upgrade resumes on the new master's workers", function()
      local out, rc = ctl(app, "upgrade")
      assert.equals(0, rc, out)
      for _, version in ipairs({ "1.2", "1.3" }) do
        for _ = 1, 4 do -- both workers of the new master
          local r = connect(app, version, sessions[version])
          assert.equals(3, r.gen)
          assert.is_true(r.reused, "TLS " .. version .. ": a full handshake after the upgrade")
        end
      end
    end)

    it("a session resumes on the worker started in place of a crashed one", function()
      local victim = connect(app, "1.2")
      local old = { [victim.pid] = true }
      assert(H.sh("kill -9 " .. victim.pid))
      local fresh = {}
      H.wait_for(function()
        -- three connections a turn: dispatch's round robin gives each version to both workers
        for _, version in ipairs({ "1.2", "1.3", "1.3" }) do
          local r = connect(app, version, sessions[version])
          assert.is_true(r.reused)
          if r.worker == victim.worker and not old[r.pid] then
            fresh[version] = r
          end
        end
        return fresh["1.2"] and fresh["1.3"]
      end, 10000, 20)
      assert.truthy(fresh["1.2"] and fresh["1.3"], "the restarted worker did not answer:\n" .. app.p:output())
      assert.equals(fresh["1.2"].pid, fresh["1.3"].pid)
    end)
  end)
end


describe("TLS session ticket keys rotate (tls_ticket_rotate = 2000 ms)", function()
  local app = app_for_block("{ workers = 2, mode = \"dispatch\", tls_ticket_rotate = 2000 }")
  local ROTATED = "TLS session ticket keys rotated"

  local function next_rotation()
    local n = app.p:count(ROTATED, true)
    assert(H.wait_for(function() return app.p:count(ROTATED, true) > n end, 5000, 10),
      "no rotation within 5 s:\n" .. app.p:output())
  end

  it("keeps the previous key for one period: a ticket resumes after one rotation, not after two", function()
    local files, names = {}, {}
    for _ = 1, 3 do -- (again if a slow machine made a ticket after the rotation it was to precede)
      next_rotation()
      H.sleep(1300) -- late in a period: the ticket is made with the key about to become the previous one
      local n = app.p:count(ROTATED, true)
      for _, version in ipairs({ "1.2", "1.3" }) do
        files[version] = app.dir .. "/rot" .. version
        assert.is_false(connect(app, version, nil, files[version]).reused)
      end
      if app.p:count(ROTATED, true) == n then
        break
      end
    end
    for _, version in ipairs({ "1.2", "1.3" }) do
      local name, hint = ticket(files[version])
      names[version] = name
      assert.equals(2, hint) -- OpenSSL's lifetime hint is one period
    end
    assert.equals(names["1.2"], names["1.3"]) -- one key encrypts for every version
    next_rotation()
    for _, version in ipairs({ "1.2", "1.3" }) do
      assert.is_true(connect(app, version, files[version]).reused, "TLS " .. version .. " after one rotation")
      -- a new ticket is made with the new key
      local f = files[version] .. ".new"
      connect(app, version, nil, f)
      assert.are_not.equal(names[version], (ticket(f)))
    end
    next_rotation()
    for _, version in ipairs({ "1.2", "1.3" }) do
      assert.is_false(connect(app, version, files[version]).reused, "TLS " .. version .. " after two rotations")
    end
    -- the metrics show how many keys and how old, never a key; nor does the log
    local out, rc = ctl(app, "metrics")
    assert.equals(0, rc, out)
    assert.matches("\nluacluster_tls_ticket_keys 2\n", out)
    assert.matches('luacluster_tls_ticket_key_age_seconds{key="newest"} %d', out)
    local all = out .. app.p:output() .. (ctl(app, "status"))
    for _, name in pairs(names) do
      assert.is_nil(all:lower():find(name, 1, true))
      assert.is_nil(all:find(name:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end), 1, true))
    end
  end)
end)
