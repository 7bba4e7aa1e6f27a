-- Operations against the real binary: metrics read back by a real Prometheus parser (Debian's
-- python3-prometheus-client) with values that match the requests sent, access-log lines parsed
-- back and counted, their reopen on SIGUSR1, log lines as text and as JSON, systemd's notify
-- protocol (this spec plays the notify socket's side) and the installed tree.
local H = require("helper")
local json = require("dkjson")

local PYTHON = "/usr/bin/python3"

-- Parses a Prometheus text exposition with prometheus_client's parser; prints one line per
-- family ("F name type") and per sample ("S name {k=v,...} value").
local PARSER = [[
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    print("F", fam.name, fam.type)
    for s in fam.samples:
        labels = ",".join("%s=%s" % (k, v) for k, v in sorted(s.labels.items()))
        print("S", s.name, "{" + labels + "}", repr(float(s.value)))
]]


-- -> { families = { name = type }, samples = { { name, labels = {k = v}, value } } } | nil, err
local function prom_parse(text)
  local dir = H.tmpdir()
  H.write_file(dir .. "/parse.py", PARSER)
  H.write_file(dir .. "/metrics.txt", text)
  local out, rc = H.sh(PYTHON .. " " .. dir .. "/parse.py " .. dir .. "/metrics.txt")
  if rc ~= 0 then
    return nil, out
  end
  local r = { families = {}, samples = {}, family_list = {} }
  for line in out:gmatch("[^\n]+") do
    local fname, ftype = line:match("^F (%S+) (%S+)$")
    if fname then
      assert(r.families[fname] == nil, "family " .. fname .. " twice")
      r.families[fname] = ftype
      r.family_list[#r.family_list + 1] = fname
    else
      local name, lbl, value = line:match("^S (%S+) {(.-)} (%S+)$")
      assert(name, "unexpected parser output: " .. line)
      local labels = {}
      for k, v in lbl:gmatch("([%w_]+)=([^,]*)") do
        labels[k] = v
      end
      r.samples[#r.samples + 1] = { name = name, labels = labels, value = tonumber(value) }
    end
  end
  return r
end


-- the sum of a metric's samples whose labels include `match`
local function sum(parsed, name, match)
  local total, n = 0, 0
  for _, s in ipairs(parsed.samples) do
    if s.name == name then
      local ok = true
      for k, v in pairs(match or {}) do
        if s.labels[k] ~= v then ok = false end
      end
      if ok then
        total, n = total + s.value, n + 1
      end
    end
  end
  return total, n
end


local function control_path(dir)
  return dir .. "/control.sock"
end


local function ctl(dir, cmd)
  return H.sh(H.bin .. " " .. cmd .. " --control " .. control_path(dir))
end


local HTTP_APP = [[
local http = require("luacluster.http")
local PORT, METRICS, ALOG = %d, %s, %s
if cluster.is_master then
  cluster.setup{ workers = 2, metrics = METRICS }
  cluster.on("message", function() end)
else
  http.create_server(function(req, res)
    if req.path == "/fail" then error("failing on purpose") end
    if req.path == "/missing" then return 404, "no such thing\n" end
    if req.path == "/msg" then
      for i = 1, 3 do cluster.worker:send({ n = i }) end
      return 200, "sent\n"
    end
    if req.path == "/slow" then timer.sleep(120) end
    if req.path == "/slower" then timer.sleep(1500) end
    return 200, "ok " .. req.path .. "\n"
  end, { access_log = ALOG }):listen(PORT)
end
]]


local function http_app(port, metrics, alog)
  return string.format(HTTP_APP, port, metrics and string.format("%q", metrics) or "nil",
    alog and string.format("%q", alog) or "false")
end


local function start(src, options, opts)
  local p, dir = H.start_app(src, options, opts)
  return p, dir
end


local function wait_serving(port)
  return H.wait_for(function()
    local _, status = H.curl("http://127.0.0.1:" .. port .. "/ready")
    return status == 200
  end, 8000)
end


describe("operations", function()
  after_each(function()
    H.cleanup()
  end)

  describe("metrics", function()
    it("serves the Prometheus text format that a real parser reads, with the counts of the requests sent", function()
      local port, mport = unpack(H.free_ports(2))
      local cdir = H.tmpdir()
      local p, dir = start(http_app(port, "127.0.0.1:" .. mport), { "--control", control_path(cdir) })
      assert.truthy(wait_serving(port), p:output())
      -- 1 (ready) + 6 ok, 3 not found, 2 failures, 2 slow, 1 that sends 3 messages to the master
      for i = 1, 6 do H.curl("http://127.0.0.1:" .. port .. "/ok" .. i) end
      for _ = 1, 3 do H.curl("http://127.0.0.1:" .. port .. "/missing") end
      for _ = 1, 2 do H.curl("http://127.0.0.1:" .. port .. "/fail") end
      for _ = 1, 2 do H.curl("http://127.0.0.1:" .. port .. "/slow") end
      H.curl("http://127.0.0.1:" .. port .. "/msg")
      local body, status = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
      assert.equal(200, status, body)
      local m = assert(prom_parse(body))
      assert.equal("counter", m.families.luacluster_http_requests)
      assert.equal("histogram", m.families.luacluster_http_request_duration_seconds)
      assert.equal("gauge", m.families.luacluster_generation)
      assert.equal(10, (sum(m, "luacluster_http_requests_total", { code = "2xx" })))
      assert.equal(3, (sum(m, "luacluster_http_requests_total", { code = "4xx" })))
      assert.equal(2, (sum(m, "luacluster_http_requests_total", { code = "5xx" })))
      assert.equal(0, (sum(m, "luacluster_http_requests_total", { code = "3xx" })))
      -- two workers, each with its own series
      local _, nworkers = sum(m, "luacluster_http_requests_total", { code = "2xx" })
      assert.equal(2, nworkers)
      -- the histogram: 15 responses, 2 of them slower than 0.1 s, buckets cumulative
      assert.equal(15, (sum(m, "luacluster_http_request_duration_seconds_count")))
      assert.equal(15, (sum(m, "luacluster_http_request_duration_seconds_bucket", { le = "+Inf" })))
      assert.equal(13, (sum(m, "luacluster_http_request_duration_seconds_bucket", { le = "0.1" })))
      assert.is_true(sum(m, "luacluster_http_request_duration_seconds_sum") >= 0.24)
      for _, w in ipairs({ "1", "2" }) do
        local prev = -1
        for _, s in ipairs(m.samples) do
          if s.name == "luacluster_http_request_duration_seconds_bucket" and s.labels.worker == w then
            assert.is_true(s.value >= prev)
            prev = s.value
          end
        end
      end
      -- messages: the worker that served /msg sent 3; the bytes moved both ways
      assert.is_true(sum(m, "luacluster_worker_messages_sent_total") >= 3)
      assert.is_true(sum(m, "luacluster_worker_ipc_bytes_sent_total") > 0)
      assert.is_true(sum(m, "luacluster_worker_ipc_bytes_received_total") > 0)
      -- the cluster
      assert.equal(1, (sum(m, "luacluster_generation")))
      assert.equal(2, (sum(m, "luacluster_workers", { state = "listening" })))
      assert.equal(0, (sum(m, "luacluster_reloads_total", { result = "done" })))
      assert.equal(0, (sum(m, "luacluster_worker_restarts_total")))
      assert.is_true(sum(m, "luacluster_worker_resident_memory_bytes") > 1000000)
      assert.equal(2, (sum(m, "luacluster_worker_up")))
      assert.equal(0, (sum(m, "luacluster_http_open_connections")))
      -- `luacluster metrics` prints the same, and a reload and a refused one are counted
      local out, rc = ctl(cdir, "metrics")
      assert.equal(0, rc, out)
      local m2 = assert(prom_parse(out))
      assert.equal(10, (sum(m2, "luacluster_http_requests_total", { code = "2xx" })))
      H.write_file(dir .. "/app.lua", H.prelude .. "this is not lua\n")
      out, rc = ctl(cdir, "reload")
      assert.not_equal(0, rc, out)
      H.write_file(dir .. "/app.lua", H.prelude .. http_app(port, "127.0.0.1:" .. mport))
      out, rc = ctl(cdir, "reload")
      assert.equal(0, rc, out)
      body = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
      local m3 = assert(prom_parse(body))
      assert.equal(2, (sum(m3, "luacluster_generation")))
      assert.equal(1, (sum(m3, "luacluster_reloads_total", { result = "done" })))
      assert.equal(1, (sum(m3, "luacluster_reloads_total", { result = "refused" })))
      local _, n2 = sum(m3, "luacluster_worker_info", { generation = "2" })
      assert.equal(2, n2)
      -- other paths
      local _, s404 = H.curl("http://127.0.0.1:" .. mport .. "/")
      assert.equal(404, s404)
    end)

    it("writes every family once, with HELP and TYPE before its samples", function()
      local port = H.free_port()
      local cdir = H.tmpdir()
      local p = start(http_app(port), { "--control", control_path(cdir) })
      assert.truthy(wait_serving(port), p:output())
      local out, rc = ctl(cdir, "metrics")
      assert.equal(0, rc, out)
      local seen, current = {}, nil
      for line in out:gmatch("[^\n]+") do
        local kind, name = line:match("^# (%u+) (%S+)")
        if kind == "TYPE" then
          assert.is_nil(seen[name], "TYPE of " .. name .. " twice")
          seen[name] = true
          current = name
        elseif not kind then
          local sname = line:match("^([%w_:]+)")
          assert.truthy(sname == current or sname:sub(1, #current + 1) == current .. "_", line)
          assert.matches("^[%w_:]+{?.-}? [-+%w.]+$", line)
        end
      end
      assert.truthy(seen.luacluster_http_request_duration_seconds)
      assert.matches("\n$", out)
    end)

    it("refuses a bad metrics address in cluster.setup and a port in use at start", function()
      local p = start('if cluster.is_master then cluster.setup{ metrics = "nowhere" } end\n', {})
      assert.not_equal(0, (p:wait(5000)))
      assert.matches("metrics must be", p:stderr(), 1, true)
      local port, mport = unpack(H.free_ports(2))
      local holder = start(http_app(port, "127.0.0.1:" .. mport), { "--control", control_path(H.tmpdir()) })
      assert.truthy(wait_serving(port), holder:output())
      local p2 = start(http_app(H.free_port(), "127.0.0.1:" .. mport), { "--control", control_path(H.tmpdir()) })
      assert.not_equal(0, (p2:wait(8000)))
      assert.matches("luacluster: metrics: listen EADDRINUSE 127.0.0.1:" .. mport, p2:stderr(), 1, true)
    end)

    it("takes metrics = false as no listener, at the start and in a reload", function()
      local port, mport = unpack(H.free_ports(2))
      local cdir = H.tmpdir()
      local function app(metrics)
        local src = http_app(port, metrics)
        if not metrics then
          src = src:gsub("METRICS, ALOG = (%d+), nil,", "METRICS, ALOG = %1, false,")
          assert(src:find("METRICS, ALOG = %d+, false,"))
        end
        return src
      end
      local p, dir = start(app(false), { "--control", control_path(cdir) })
      assert.truthy(wait_serving(port), p:output())
      assert.is_true(p:alive(), p:output())
      local _, status = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
      assert.equal(0, status or 0)
      -- a reload turns it on, the next one off again
      H.write_file(dir .. "/app.lua", H.prelude .. app("127.0.0.1:" .. mport))
      local out, rc = ctl(cdir, "reload")
      assert.equal(0, rc, out)
      _, status = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
      assert.equal(200, status)
      H.write_file(dir .. "/app.lua", H.prelude .. app(false))
      out, rc = ctl(cdir, "reload")
      assert.equal(0, rc, out)
      _, status = H.curl("http://127.0.0.1:" .. mport .. "/metrics")
      assert.equal(0, status or 0)
      assert.not_matches("concatenate", p:output(), 1, true)
    end)
  end)

  describe("access log", function()
    local LINE = '^(%S+) %- %- %[(%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d [+-]%d%d%d%d)%] "([^"]*)" (%d+) (%d+) "([^"]*)" "([^"]*)" (%d+%.%d%d%d)$'

    local function parse(path)
      local list = {}
      for line in H.read_file(path):gmatch("[^\n]+") do
        local addr, time, request, status, bytes, referer, agent, secs = line:match(LINE)
        assert.truthy(addr, "not a combined log line: " .. line)
        list[#list + 1] = { addr = addr, time = time, request = request, status = tonumber(status),
          bytes = tonumber(bytes), referer = referer, agent = agent, secs = tonumber(secs) }
      end
      return list
    end

    it("writes one combined-format line per request, and reopens the file on SIGUSR1", function()
      local port = H.free_port()
      local logdir = H.tmpdir()
      local path = logdir .. "/access.log"
      local p = start(http_app(port, nil, path), { "--control", control_path(H.tmpdir()) })
      assert.truthy(wait_serving(port), p:output())
      for i = 1, 20 do
        H.curl("http://127.0.0.1:" .. port .. "/page" .. i .. "?q=" .. i, "-A 'spec \"agent\"' -e http://example.com/from")
      end
      H.curl("http://127.0.0.1:" .. port .. "/missing")
      H.curl("http://127.0.0.1:" .. port .. "/fail")
      -- written off the loop, at least once a second
      local lines = H.wait_for(function()
        local l = parse(path)
        return #l >= 23 and l
      end, 5000)
      assert.truthy(lines, H.read_file(path))
      assert.equal(23, #lines)
      local pages, by_status = 0, {}
      for _, l in ipairs(lines) do
        assert.equal("127.0.0.1", l.addr)
        by_status[l.status] = (by_status[l.status] or 0) + 1
        local n = l.request:match("^GET /page(%d+)%?q=%d+ HTTP/1%.1$")
        if n then
          pages = pages + 1
          assert.equal("http://example.com/from", l.referer)
          assert.equal('spec \\x22agent\\x22', l.agent)
          assert.equal(#("ok /page" .. n .. "\n"), l.bytes)
        end
        assert.is_true(l.secs >= 0 and l.secs < 5)
      end
      assert.equal(20, pages)
      assert.same({ [200] = 21, [404] = 1, [500] = 1 }, by_status)
      -- logrotate: move the file, SIGUSR1 to the master, new lines go to a new file
      assert.is_true(os.rename(path, path .. ".1"))
      assert.is_true(p:kill("SIGUSR1"))
      assert.truthy(p:wait_output("SIGUSR1: reopening the access logs", 3000, true))
      H.sleep(300) -- the workers' reopen happens in the thread pool, before their next write
      for i = 1, 5 do
        H.curl("http://127.0.0.1:" .. port .. "/after" .. i)
      end
      local after = H.wait_for(function()
        local l = parse(path)
        return #l >= 5 and l
      end, 5000)
      assert.truthy(after, p:output())
      assert.equal(5, #after)
      for _, l in ipairs(after) do
        assert.matches("^GET /after%d HTTP/1%.1$", l.request)
      end
      assert.equal(23, #parse(path .. ".1"))
      assert.truthy(p:alive(), "SIGUSR1 must not stop anything")
      -- a graceful stop writes out what is buffered
      for i = 1, 3 do
        H.curl("http://127.0.0.1:" .. port .. "/last" .. i)
      end
      assert.equal(0, (p:stop(8000)))
      assert.equal(8, #parse(path))
    end)

    it("logs a request whose client went away before the answer as 499", function()
      local ffi = require("ffi")
      local port = H.free_port()
      local path = H.tmpdir() .. "/access.log"
      local p = start(http_app(port, nil, path), {})
      assert.truthy(wait_serving(port), p:output())
      local s = assert(H.connect(port))
      s:send("GET /slower HTTP/1.1\r\nHost: a\r\nUser-Agent: impatient\r\n\r\n")
      H.sleep(300) -- the request is read and its handler waits: the reset comes before the answer
      local linger = ffi.new("int[2]", 1, 0) -- a reset, as a client that gives up
      ffi.C.setsockopt(s.fd, 1, 13, linger, 8)
      s:close()
      -- the line of /slower (the readiness probes' lines, from either worker, may come after it)
      local line = H.wait_for(function()
        for _, l in ipairs(parse(path)) do
          if l.request == "GET /slower HTTP/1.1" then
            return l
          end
        end
      end, 5000)
      assert.truthy(line, H.read_file(path))
      assert.equal(499, line.status)
      assert.equal("127.0.0.1", line.addr)
      assert.equal("impatient", line.agent)
    end)

    it("can write to stderr, where the worker's lines get its prefix", function()
      local port = H.free_port()
      local p = start(http_app(port, nil, "stderr"), {})
      assert.truthy(wait_serving(port), p:output())
      H.curl("http://127.0.0.1:" .. port .. "/to-stderr", "-A agent-x")
      assert.truthy(p:wait_output('%[worker %d%] 127%.0%.0%.1 %- %- %[[^%]]+%] "GET /to%-stderr HTTP/1%.1" 200 %d+ "%-" "agent%-x" %d+%.%d+', 5000), p:output())
    end)

    it("refuses an access_log that is not a path", function()
      local p = start([[
        local http = require("luacluster.http")
        for _, v in ipairs({ 42, "", true }) do
          local ok, err = pcall(http.create_server, function() end, { access_log = v })
          say("refused", tostring(not ok), err)
        end
        local ok, err = pcall(http.create_server, function() end, { access_log = "/nonexistent/dir/a.log" })
        say("unopenable", tostring(not ok), err)
        cluster.setup{ workers = 0 }
      ]], {})
      assert.equal(0, (p:wait(5000)), p:output())
      assert.equal(3, p:count("refused true [^\n]*access_log must be a file path", false))
      assert.matches("unopenable true [^\n]*cannot open /nonexistent/dir/a.log", p:output())
    end)
  end)

  describe("logs", function()
    local CRASHY = [[
      local log = require("luacluster.lib.log")
      if cluster.is_master then
        cluster.setup{ workers = 1 }
        cluster.on("exit", function(w, code) if code == 3 then say("saw exit 3") end end)
        timer.after(1500, function() cluster.stop() end)
      else
        say("hello from a worker")
        log.error("a worker's own error line")
        local f = io.open(arg[0] .. ".ran", "r") -- the first worker exits with code 3 once ready
        if not f then
          io.open(arg[0] .. ".ran", "w"):close()
          timer.after(100, function() process.exit(3) end) -- (at its top level it would stop the start)
        else
          f:close()
        end
      end
    ]]

    it("writes the runtime's lines with a time, the level and [master] / [worker N]", function()
      local p = start(CRASHY, {})
      assert.equal(0, (p:wait(10000)), p:output())
      local err = p:stderr()
      local T = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ"
      assert.matches("%[master%] " .. T .. " info: worker 1 %(pid %d+%) started, generation 1\n", err)
      assert.matches("%[master%] " .. T .. " warn: worker 1 %(pid %d+%) exited with code 3 after %d+ ms\n", err)
      assert.matches("%[master%] " .. T .. " warn: restarting worker 1 in %d+ ms", err)
      assert.matches("%[worker 1%] " .. T .. " error: a worker's own error line\n", err)
      assert.matches("%[master%] " .. T .. " info: worker 1 %(pid %d+%) finished %(exit code 0%)\n", err)
      assert.matches("[worker 1] hello from a worker", p:stdout(), 1, true)
    end)

    it("writes JSON lines with --log-format json, a worker's included", function()
      local p = start(CRASHY, { "--log-format", "json" })
      assert.equal(0, (p:wait(10000)), p:output())
      local records = {}
      for line in p:stderr():gmatch("[^\n]+") do
        local r = json.decode(line)
        assert.is_table(r, "not a JSON line: " .. line)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", r.time)
        records[#records + 1] = r
      end
      local function find(pred)
        for _, r in ipairs(records) do
          if pred(r) then return r end
        end
      end
      local started = find(function(r) return r.process == "master" and tostring(r.msg):match("^worker 1 %(pid %d+%) started") end)
      assert.truthy(started, p:stderr())
      assert.equal("info", started.level)
      assert.is_number(started.pid)
      local crash = find(function(r) return r.process == "master" and tostring(r.msg):match("exited with code 3") end)
      assert.truthy(crash)
      assert.equal("warn", crash.level)
      assert.truthy(find(function(r) return r.level == "warn" and tostring(r.msg):match("^restarting worker 1") end))
      local own = find(function(r) return r.msg == "a worker's own error line" end)
      assert.truthy(own, p:stderr())
      assert.equal("worker", own.process)
      assert.equal(1, own.worker)
      assert.equal("error", own.level)
      -- a worker's print goes to stdout, wrapped the same way
      local printed
      for line in p:stdout():gmatch("[^\n]+") do
        local r = json.decode(line)
        if r and r.msg == "hello from a worker" then printed = r end
      end
      assert.truthy(printed, p:stdout())
      assert.equal(1, printed.worker)
      assert.equal("stdout", printed.stream)
      -- the master's own prints stay its own
      assert.matches("\nsaw exit 3\n", "\n" .. p:stdout(), 1, true)
    end)

    it("takes the format from LUACLUSTER_LOG_FORMAT and refuses a bad one", function()
      local p = start("if cluster.is_master then cluster.setup{ workers = 1 } timer.after(300, function() cluster.stop() end) end\n", {},
        { env = { LUACLUSTER_LOG_FORMAT = "json" } })
      assert.equal(0, (p:wait(5000)), p:output())
      assert.truthy(json.decode(p:stderr():match("^[^\n]+")), p:stderr())
      local p2 = start("cluster.setup{ workers = 0 }\n", { "--log-format", "xml" })
      assert.not_equal(0, (p2:wait(5000)))
      assert.matches("--log-format must be text or json", p2:stderr(), 1, true)
    end)
  end)

  describe("systemd", function()
    local function notify_app(port)
      return string.format([[
        local http = require("luacluster.http")
        if cluster.is_master then
          cluster.setup{ workers = 2 }
        else
          say("worker sees NOTIFY_SOCKET=" .. tostring(os.getenv("NOTIFY_SOCKET")))
          http.create_server(function() return 200, "up\n" end):listen(%d)
        end
      ]], port)
    end

    for _, kind in ipairs({ "abstract", "path" }) do
      it("reports READY=1, RELOADING=1 then READY=1, and STOPPING=1 (" .. kind .. " socket)", function()
        local addr = kind == "abstract" and ("@lcspec-notify-" .. H.free_port())
          or (H.tmpdir() .. "/notify.sock")
        local sock = H.notify_socket(addr)
        local port = H.free_port()
        local cdir = H.tmpdir()
        local p = start(notify_app(port), { "--control", control_path(cdir) }, { env = { NOTIFY_SOCKET = addr } })
        local ready, seen = sock:wait_for("READY=1", 8000)
        assert.truthy(ready, table.concat(seen, "|") .. p:output())
        assert.matches("MAINPID=" .. p.pid, ready, 1, true)
        assert.matches("STATUS=generation 1 serving with 2 workers", ready, 1, true)
        -- ready means serving: no wait before the first request
        local body, status = H.curl("http://127.0.0.1:" .. port .. "/")
        assert.equal(200, status, body)
        -- a reload
        local out, rc = ctl(cdir, "reload")
        assert.equal(0, rc, out)
        local reloading = sock:wait_for("RELOADING=1", 3000)
        assert.truthy(reloading)
        assert.matches("MONOTONIC_USEC=%d+", reloading)
        local again = sock:wait_for("READY=1", 3000)
        assert.truthy(again)
        assert.matches("STATUS=generation 2 serving", again, 1, true)
        -- a stop
        assert.is_true(p:kill("SIGTERM"))
        assert.truthy(sock:wait_for("STOPPING=1", 3000))
        assert.equal(0, (p:wait(8000)))
        sock:close()
        -- the workers do not see the notify socket
        assert.equal(4, p:count("worker sees NOTIFY_SOCKET=nil", true))
      end)
    end

    it("sends READY=1 again after a refused reload, and nothing without NOTIFY_SOCKET", function()
      local addr = "@lcspec-notify-refused-" .. H.free_port()
      local sock = H.notify_socket(addr)
      local port = H.free_port()
      local cdir = H.tmpdir()
      local p, dir = start(notify_app(port), { "--control", control_path(cdir) }, { env = { NOTIFY_SOCKET = addr } })
      assert.truthy(sock:wait_for("READY=1", 8000), p:output())
      H.write_file(dir .. "/app.lua", "syntax error here\n")
      local out, rc = ctl(cdir, "reload")
      assert.not_equal(0, rc, out)
      assert.truthy(sock:wait_for("RELOADING=1", 3000))
      local again = sock:wait_for("READY=1", 3000)
      assert.truthy(again)
      assert.matches("STATUS=generation 1 serving", again, 1, true)
      sock:close()
      -- without NOTIFY_SOCKET nothing is sent and nothing complains
      local port2 = H.free_port()
      local p2 = start(notify_app(port2), {})
      assert.truthy(wait_serving(port2))
      assert.equal(0, (p2:stop(8000)))
      assert.not_matches("sd_notify", p2:output(), 1, true)
    end)

    it("ships a unit file for Type=notify with ExecReload", function()
      local unit = H.read_file(H.root .. "/examples/systemd/luacluster@.service")
      assert.matches("\nType=notify\n", unit, 1, true)
      assert.matches("\nExecReload=[^\n]* reload %-%-control ", unit)
      assert.matches("\nKillMode=mixed\n", unit, 1, true)
      if os.execute("command -v systemd-analyze >/dev/null 2>&1") == 0 then
        local out = H.sh("systemd-analyze verify " .. H.root .. "/examples/systemd/luacluster@.service 2>&1")
        assert.not_matches("Unknown key", out, 1, true)
      end
    end)
  end)

  describe("install", function()
    it("installs the binary, the library, the examples and the man page under a prefix, and runs from there", function()
      local prefix = H.tmpdir() .. "/prefix"
      local out, rc = H.sh("cmake --install " .. H.build_dir .. " --prefix " .. prefix)
      assert.equal(0, rc, out)
      local bin = prefix .. "/bin/luacluster"
      for _, f in ipairs({ bin, prefix .. "/share/luacluster/lua/luacluster/boot.lua",
        prefix .. "/share/man/man1/luacluster.1", prefix .. "/share/doc/luacluster/examples/hello/app.lua" }) do
        assert.truthy(io.open(f), f .. " is not installed")
      end
      -- proof that the installed library is the one used: a module that only it has
      H.write_file(prefix .. "/share/luacluster/lua/luacluster/installed_marker.lua", "return 'from the prefix'\n")
      local copy = H.tmpdir()
      H.sh("cp -r " .. prefix .. "/share/doc/luacluster/examples/hello " .. copy .. "/")
      local app = copy .. "/hello/app.lua"
      H.write_file(app, 'print("library: " .. require("luacluster.installed_marker"))\n' .. H.read_file(app))
      local port = H.free_port()
      local p = H.spawn({ bin, "-w", "1", "-p", tostring(port), app },
        { dir = copy, cwd = "/", env = { LUACLUSTER_LUA_DIR = false, LUA_PATH = false } })
      local served = H.wait_for(function()
        local body, status = H.curl("http://127.0.0.1:" .. port .. "/")
        return status == 200 and body
      end, 8000)
      assert.equal("Hello, World!\n", served, p:output())
      assert.matches("library: from the prefix", p:output(), 1, true)
      assert.equal(0, (p:stop(8000)))
      out, rc = H.sh(bin .. " --version")
      assert.equal(0, rc)
      assert.matches("^luacluster %d", out)
      -- the man page renders
      if os.execute("command -v man >/dev/null 2>&1") == 0 then
        out, rc = H.sh("MANWIDTH=80 man -l " .. prefix .. "/share/man/man1/luacluster.1 2>&1 | cat")
        assert.equal(0, rc, out)
        assert.matches("luacluster%s+%-%s+a%s+clustered%s+application%s+server", out)
        assert.matches("luacluster metrics", out, 1, true)
        assert.not_matches("warning", out, 1, true)
      end
    end)
  end)
end)
