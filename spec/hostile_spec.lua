-- Hostile clients against a real cluster: idle and slow connections, the per-worker connection
-- limit, request smuggling shapes (spec/data/http_vectors.lua), long URLs and header floods,
-- and a client that never reads its answers. Each must cost bounded memory and time and must
-- not stop the other clients from being served.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ workers = 1 }
  cluster.on("listening", function(w) say("listening", w.pid) end)
else
  local big = string.rep("x", 1048576)
  http.create_server(function(req, res)
    if req.path == "/big" then return 200, big end
    if req.path == "/smuggled" then return 200, "SMUGGLED" end
    if req.path == "/stream" then -- 200 MB, streamed; says how it ended
      for i = 1, 200 do
        local ok, err = res:write(big)
        if not ok then say("stream stopped at", i, err) return end
      end
      res:finish()
      say("stream finished")
      return
    end
    return 200, "ok " .. req.path
  end, OPTS):listen(PORT)
end
]]

local function start(port, opts)
  local src = APP:gsub("OPTS", opts or "{}"):gsub("PORT", tostring(port))
  local p = H.start_app(src, {})
  local pid = tonumber(p:wait_output("listening (%d+)", 10000))
  assert(pid, p:output())
  return p, pid
end

local function rss_kb(pid)
  return tonumber(H.read_file("/proc/" .. pid .. "/status"):match("VmRSS:%s*(%d+)"))
end

local function fds(pid)
  local out = H.sh("ls /proc/" .. pid .. "/fd | wc -l")
  return tonumber(out:match("%d+"))
end

-- a normal request on a new connection: -> status, ms it took
local function timed_get(port, path)
  local t0 = H.now()
  local data = H.http_raw(port, "GET " .. (path or "/") .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 3000)
  return tonumber(data and data:match("^HTTP/1%.1 (%d+)")), H.now() - t0
end


describe("hostile clients", function()
  after_each(H.cleanup)

  it("hundreds of idle and slow connections do not stop others; the header timeout ends them", function()
    local port = H.free_port()
    local p, pid = start(port, "{ header_timeout = 2500 }")
    local idle, slow = {}, {}
    for i = 1, 300 do
      idle[i] = assert(H.connect(port))
    end
    for i = 1, 100 do
      slow[i] = assert(H.connect(port))
      slow[i]:send("GET / HTTP/1.1\r\nHost: x\r\n")
    end
    -- the slow ones keep dribbling header bytes; meanwhile others are served at once
    local t0 = H.now()
    for round = 1, 5 do
      for i = 1, #slow do
        slow[i]:send("X-" .. round .. ": y\r\n")
      end
      local status, ms = timed_get(port)
      assert.equals(200, status)
      assert(ms < 1000, "a normal request took " .. ms .. " ms") -- well below header_timeout
      H.sleep(100)
    end
    assert.is_true(H.now() - t0 < 2500)
    -- after header_timeout: idle connections closed without an answer, slow ones got a 408
    H.sleep(math.max(0, 2600 - (H.now() - t0)))
    local closed = 0
    for _, s in ipairs(idle) do
      local data, how = s:read_all(1000)
      if how == "eof" and data == "" then
        closed = closed + 1
      end
      s:close()
    end
    assert.equals(300, closed)
    local timeouts = 0
    for _, s in ipairs(slow) do
      local data = s:read_all(1000)
      if data:match("^HTTP/1%.1 408 ") then
        timeouts = timeouts + 1
      end
      s:close()
    end
    assert.equals(100, timeouts)
    H.sleep(200)
    assert(fds(pid) < 40, "worker fds after the storm: " .. fds(pid))
    assert.equals(200, (timed_get(port)))
    p:stop()
  end)

  it("max_connections refuses the excess, says so once per burst, and serves again after", function()
    local port = H.free_port()
    local p = start(port, "{ max_connections = 20 }")
    local function burst()
      local held = {}
      for i = 1, 20 do
        held[i] = assert(H.connect(port))
        held[i]:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n") -- served, then kept alive
        assert.truthy(held[i]:read_until(function(d) return d:find("ok /", 1, true) end, 2000):find("ok /", 1, true))
      end
      local refused = 0
      for _ = 1, 30 do
        local s = H.connect(port)
        if s then
          s:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
          local data = s:read_all(1000)
          if data == "" then
            refused = refused + 1
          end
          s:close()
        end
      end
      assert.equals(30, refused)
      for _, s in ipairs(held) do
        s:close()
      end
    end
    burst()
    assert(p:wait_output("connections were refused", 3000, true), p:output())
    assert.equals(1, p:count("connection limit reached: 20 connections open (max_connections 20)", true))
    assert.equals(1, p:count("30 connections were refused", true))
    assert.equals(200, (timed_get(port)))
    burst()
    assert(H.wait_for(function() return p:count("30 connections were refused", true) == 2 end, 3000), p:output())
    assert.equals(2, p:count("connection limit reached", true))
  end)

  it("refuses every smuggling shape of spec/data/http_vectors.lua and serves nothing after it", function()
    local ok, vectors = pcall(dofile, H.root .. "/spec/data/http_vectors.lua")
    if not ok then
      pending("spec/data/http_vectors.lua is not there")
      return
    end
    local port = H.free_port()
    start(port, "{ header_timeout = 1000 }")
    local checked = 0
    for _, v in ipairs(vectors) do
      if type(v.expect) == "number" and v.expect >= 400 and v.expect ~= 408 then
        -- the refused request, then a request that must never reach the handler
        local data = H.http_raw(port, v.request .. "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 3000) or ""
        local status = tonumber(data:match("^HTTP/1%.[01] (%d+)"))
        assert(status and status >= 400, v.id .. ": " .. ("%q"):format(data:sub(1, 200)))
        assert(not data:find("SMUGGLED", 1, true), v.id .. " let a second request through: " .. data)
        assert.equals(1, select(2, data:gsub("HTTP/1%.[01] %d%d%d ", "")), v.id .. ": " .. data)
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 50, "only " .. checked .. " refused vectors")
  end)

  it("bounds long URLs, header floods and endless heads", function()
    local port = H.free_port()
    local p, pid = start(port, "{ max_header_size = 8192 }")
    local before = rss_kb(pid)
    local long_url = H.http_raw(port, "GET /" .. string.rep("a", 20000) .. " HTTP/1.1\r\nHost: x\r\n\r\n", 3000)
    assert.matches("^HTTP/1%.1 431 ", long_url)
    local fields = {}
    for i = 1, 150 do
      fields[i] = "X-" .. i .. ": v\r\n"
    end
    local many = H.http_raw(port, "GET / HTTP/1.1\r\nHost: x\r\n" .. table.concat(fields) .. "\r\n", 3000)
    assert.matches("^HTTP/1%.1 431 ", many)
    -- 4 MB of header that never ends: answered and closed long before the end
    local s = H.connect(port)
    s:send("GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
    local sent, chunk = 0, string.rep("z", 65536)
    for _ = 1, 64 do
      if not s:send(chunk) then
        break
      end
      sent = sent + #chunk
    end
    local data = s:read_all(2000)
    s:close()
    assert.matches("^HTTP/1%.1 431 ", data)
    assert.equals(200, (timed_get(port)))
    assert(rss_kb(pid) - before < 8 * 1024, "worker grew by " .. (rss_kb(pid) - before) .. " kB")
    p:stop()
  end)

  it("a client that pipelines requests for big answers and reads none does not grow the worker", function()
    local port = H.free_port()
    local p, pid = start(port, "{ keepalive_timeout = 1000, send_timeout = 1500 }")
    timed_get(port, "/big") -- warm up: the first answer's buffers
    H.sleep(200)
    local before, fds_before = rss_kb(pid), fds(pid)
    local s = H.connect(port)
    -- 2000 requests for 1 MB each: 2 GB of answers if they were all made at once
    s:send(string.rep("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 2000))
    local peak = 0
    for _ = 1, 10 do
      H.sleep(150)
      peak = math.max(peak, rss_kb(pid))
      assert.equals(200, (timed_get(port))) -- others are still served
    end
    assert(peak - before < 16 * 1024, "worker grew from " .. before .. " to " .. peak .. " kB")
    -- the stalled client is dropped once it has taken nothing for send_timeout
    assert(H.wait_for(function() return fds(pid) == fds_before end, 5000), "the stalled connection is still open")
    -- (the client then reads what its kernel had buffered and a reset: unread requests remained)
    s:close()
    assert(rss_kb(pid) - before < 16 * 1024)
    p:stop()
  end)

  it("a handler streaming to a client that does not read waits instead of queueing", function()
    local port = H.free_port()
    local p, pid = start(port, "{ send_timeout = 1500 }")
    timed_get(port, "/big")
    local before = rss_kb(pid)
    local s = H.connect(port)
    s:send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    local peak = 0
    for _ = 1, 6 do
      H.sleep(150)
      peak = math.max(peak, rss_kb(pid))
      assert.equals(200, (timed_get(port)))
    end
    assert(peak - before < 16 * 1024, "worker grew from " .. before .. " to " .. peak .. " kB")
    -- no progress for send_timeout: the connection is closed and the waiting handler told so
    assert(p:wait_output("stream stopped at %d+", 5000), p:output())
    s:close()
    -- a reader that keeps up gets all 200 MB
    local r = H.connect(port)
    r:send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    local got = 0
    while got < 200 * 1048576 do
      local d = r:recv(3000)
      if not d or d == "" then break end
      got = got + #d
    end
    r:close()
    assert.is_true(got > 200 * 1048576)
    assert(p:wait_output("stream finished", 3000, true), p:output())
    p:stop()
  end)

  it("a slow reader still gets a whole large answer (the keep-alive timer counts stalls, not the download)", function()
    local port = H.free_port()
    local p = start(port, "{ keepalive_timeout = 500 }")
    local s = H.connect(port)
    -- 8 answers of 1 MB, read at about 2 MB/s: four times longer than keepalive_timeout
    s:send(string.rep("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 8))
    local got, t0 = 0, H.now()
    local want = 8 * (1048576 + 50) -- 8 bodies and their heads (about 75 bytes each)
    while got < want do
      local d = s:recv(2000)
      if not d or d == "" then
        break
      end
      got = got + #d
      H.sleep(30)
    end
    s:close()
    assert(got >= want, "got " .. got .. " bytes in " .. (H.now() - t0) .. " ms")
    assert.is_true(H.now() - t0 > 1000)
    p:stop()
  end)
end)
