-- The HTTP hot path, watched from outside the worker: the answers to pipelined requests read
-- together leave in one write (not one writev each), the peer's address is looked up once per
-- connection (not once per request that reads req.remote_address), and an idle keep-alive
-- connection holds no buffers (its worker's RSS grows by far less than the 16 KiB read buffer
-- it used to keep). The system calls are counted with strace on the worker (pending where
-- strace is missing or may not attach).
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
local process = require("luacluster.process")
if cluster.is_worker then
  http.create_server(function(req)
    if req.path == "/lua_kb" then
      collectgarbage()
      collectgarbage()
      return 200, string.format("%.3f", collectgarbage("count"))
    elseif req.path == "/peer" then
      return 200, tostring(req.remote_address) .. " " .. tostring(req.remote_port)
    end
    return 200, "hello " .. req.path
  end, { keepalive_timeout = 60000 }):listen()
  say("ready", process.pid)
end
]]

local function rss_kb(pid)
  local s = H.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- runs fn while strace records the worker's calls of `calls`; -> the trace's lines, or nil, why
local function traced(pid, calls, fn)
  local _, rc = H.sh("command -v strace")
  if rc ~= 0 then return nil, "strace is not installed" end
  local dir = H.tmpdir()
  local out = dir .. "/trace"
  local spid = tonumber((H.sh("strace -f -qq -s 16 -e trace=" .. calls .. " -o " .. out .. " -p " .. pid
    .. " >" .. dir .. "/strace.log 2>&1 & echo $!")))
  H.sleep(700)   -- strace attaches
  if not H.pid_alive(spid) then return nil, "strace could not attach: " .. (H.read_file(dir .. "/strace.log") or "") end
  local ok, err = pcall(fn)
  H.sleep(200)
  H.sh("kill -INT " .. spid)
  H.wait_for(function() return not H.pid_alive(spid) end, 3000)
  assert(ok, err)
  local lines = {}
  for line in (H.read_file(out) or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

local function count(lines, pattern)
  local n = 0
  for _, l in ipairs(lines) do
    if l:find(pattern) then n = n + 1 end
  end
  return n
end


-- opens n keep-alive connections, each answered once, and holds them idle -> the sockets
local function hold_idle(port, n)
  local socks = {}
  for i = 1, n do
    local s = assert(H.connect(port))
    s:send("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    socks[i] = s
    if i % 100 == 0 then
      for k = i - 99, i do
        local list = U.exchange(socks[k], nil, 1, 3000)
        assert.equal(200, list[1] and list[1].status)
      end
    end
  end
  return socks
end


describe("the HTTP hot path", function()
  local p, port, pid

  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    local line = p:wait_output("ready %d+", 5000)
    assert(line, p:output())
    pid = tonumber(line:match("ready (%d+)"))
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  it("answers 16 pipelined requests read together in one write", function()
    local s = assert(H.connect(port))
    local lines, why = traced(pid, "write,writev,sendmsg,sendto", function()
      local req = {}
      for i = 1, 16 do req[i] = "GET /" .. i .. " HTTP/1.1\r\nHost: a\r\n\r\n" end
      local list = U.exchange(s, table.concat(req), 16, 3000)
      assert.equal(16, #list)
      for i = 1, 16 do assert.equal("hello /" .. i, list[i].body) end
    end)
    s:close()
    if not lines then pending(why) return end
    local writes = count(lines, "^%d+%s+write[v]?%(.*HTTP/1%.1 200") + count(lines, "^%d+%s+send[mt][so].*HTTP/1%.1 200")
    assert.is_true(writes >= 1, table.concat(lines, "\n"))
    -- one read brings the 16 requests, so one write answers them (a read split by the kernel
    -- could make it two); it was 16 writev calls
    assert.is_true(writes <= 2, writes .. " writes:\n" .. table.concat(lines, "\n"))
  end)

  it("looks the peer's address up once per connection, not once per request", function()
    local s = assert(H.connect(port))
    local lines, why = traced(pid, "getpeername", function()
      for _ = 1, 3 do
        local list = U.exchange(s, "GET /peer HTTP/1.1\r\nHost: a\r\n\r\n", 1, 3000)
        assert.matches("^127%.0%.0%.1 %d+$", list[1].body)
      end
    end)
    s:close()
    if not lines then pending(why) return end
    assert.equal(1, count(lines, "getpeername%("), table.concat(lines, "\n"))
  end)

  it("keeps no buffers for an idle keep-alive connection", function()
    local n = 2000
    -- warm: the first connections make what every connection shares (Lua's state, buffers)
    for _ = 1, 20 do
      local r = U.once(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      assert.equal(200, r.status)
    end
    local before = rss_kb(pid)
    local socks = hold_idle(port, n)
    H.sleep(300)
    local per_conn = (rss_kb(pid) - before) * 1024 / n
    for _, s in ipairs(socks) do s:close() end
    -- 0.45 KB measured (its http_conn, its uv_tcp_t); 7.7 KB when it kept its read buffer,
    -- its copy of the head and its timer
    assert.is_true(per_conn < 2500, ("%.0f bytes of worker RSS per idle connection"):format(per_conn))
  end)

  it("keeps nothing in Lua for an idle keep-alive connection", function()
    local function lua_kb()
      return tonumber(U.once(port, "GET /lua_kb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").body)
    end
    local n = 2000
    lua_kb()
    local before = lua_kb()
    local socks = hold_idle(port, n)
    local per_conn = (lua_kb() - before) * 1024 / n
    for _, s in ipairs(socks) do s:close() end
    -- none (under a byte of noise): Lua names a connection by its address; a userdata box
    -- and its registry reference per connection were 69 bytes
    assert.is_true(per_conn < 4, ("%.1f bytes of Lua memory per idle connection"):format(per_conn))
  end)
end)
