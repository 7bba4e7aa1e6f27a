-- WebSocket timeouts, backpressure, drain and counts in a real luacluster (runtime/ws_conn.c,
-- luacluster.ws.socket), with spec/ws_core_client.py: python3-websockets as a real client,
-- raw sockets for clients that misbehave (send before the 101, never answer, flood, never read).
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
if cluster.is_master then
  cluster.setup{ drain_timeout = 3000, metrics = os.getenv("WS_METRICS") }
end
if cluster.is_worker then
  http.create_server(function(req)
    local p = req.path
    local ws = req:websocket({ idle_timeout = p == "/idle" and 1000 or nil, ping_interval = p == "/ping" and 500 or nil })
    if not ws then return end
    ws:on("close", function(code, reason) say("closed", p, code, reason) end)
    if p == "/on" then
      ws:on("message", function(data, kind) ws:send(data, kind) end)
      return
    elseif p == "/once" then
      ws:send(ws:receive())
      return
    elseif p == "/close" then
      ws:receive()
      ws:close(1000, "bye")
    elseif p == "/slow" then -- takes no message for 5 s, then all of them
      timer.sleep(5000)
      local n, bytes = 0, 0
      while true do
        local data, kind = ws:receive()
        if not data or kind == "text" then break end
        n, bytes = n + 1, bytes + #data
      end
      ws:send(n .. " " .. bytes)
    elseif p == "/slowon" then -- message handlers that wait until 5 s after the accept
      local release, n, bytes = timer.now() + 5000, 0, 0
      ws:on("message", function(data, kind)
        local wait = release - timer.now()
        if wait > 0 then timer.sleep(wait) end
        if kind == "text" then ws:send(n .. " " .. bytes) else n, bytes = n + 1, bytes + #data end
      end)
      return
    elseif p == "/send" then -- sends N messages of 64 KB; how many had gone within 2 s
      local n = tonumber((ws:receive()))
      local blob, t0, early = string.rep("z", 65536), timer.now(), 0
      for i = 1, n do
        local ok, err = ws:send(blob, "binary")
        if not ok then say("send failed", i, err) return end
        if timer.now() - t0 < 2000 then early = i end
      end
      say("early", early)
    elseif p == "/gen" then
      ws:on("message", function(data) ws:send(cluster.worker.generation .. ":" .. data) end)
      return
    end
    local data, kind = ws:receive() -- an echo until the close
    while data do
      ws:send(data, kind)
      data, kind = ws:receive()
    end
  end, { send_timeout = 4000 }):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

local function client(mode, port, ...)
  local out, rc = H.sh("timeout 60 /usr/bin/python3 " .. H.root .. "/spec/ws_core_client.py " .. mode .. " " .. port
    .. " " .. table.concat({ ... }, " "))
  assert.equals(0, rc, out)
  return out
end

local function start(env, options)
  local port = H.free_port()
  env = env or {}
  env.WS_PORT = tostring(port)
  local argv = { "-w", "1" }
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = o
  end
  local p = H.start_app(APP, argv, { env = env })
  assert.truthy(H.wait_listening(port, 10000), p:output())
  return p, port
end

describe("websocket core", function()
  local p, port
  setup(function()
    p, port = start()
  end)
  teardown(function()
    if p then p:stop() end
  end)

  it("reads frames a client sent before it read the 101 (receive and message-handler styles)", function()
    assert.matches("echo early1 early2\n", client("pipelined", port, "/"), 1, true)
    assert.matches("echo early1 early2\n", client("pipelined", port, "/on"), 1, true)
  end)

  it("closes a WebSocket with no frame for idle_timeout with 1001, and not one that sends", function()
    local secs = tonumber(client("idle", port):match("closed 1001 idle timeout after ([%d.]+)"))
    assert.truthy(secs and secs >= 0.8 and secs < 10)
    local out = client("busy", port)
    assert.matches("echo m7\nclose 1000\n", out, 1, true)
  end)

  it("pings every ping_interval: a client that answers stays, one that does not is closed with 1001", function()
    assert.matches("echo still\nclose 1000\n", client("pinged", port), 1, true)
    local pings, secs = client("no_pong", port):match("pings (%d+) close 1001 ping timeout after ([%d.]+)")
    assert.equals("1", pings)
    assert.truthy(tonumber(secs) >= 0.8 and tonumber(secs) < 10)
  end)

  it("ends the connection when the client never answers the server's close", function()
    local out = client("close_wait", port)
    assert.matches("got 8 1000\n", out, 1, true)
    local secs = tonumber(out:match("eof after ([%d.]+)"))
    assert.truthy(secs and secs >= 3 and secs < 15, out)
  end)

  it("stops reading from a client that floods a handler that takes no message, then reads it all", function()
    local n = 4000 -- 64 MB
    local out = client("flood", port, n)
    local off = tonumber(out:match("stalled_at (%d+)"))
    assert.truthy(off and off < 40 * 1048576, out)   -- the Lua queue is 1 MiB; the rest is kernel buffers
    assert.matches("server " .. n .. " " .. (n * 16384) .. "\n", out, 1, true)
  end)

  it("stops reading from a client that floods message handlers that wait, then reads it all", function()
    local n = 4000
    local out = client("flood", port, n, "/slowon")
    local off = tonumber(out:match("stalled_at (%d+)"))
    assert.truthy(off and off < 40 * 1048576, out)
    assert.matches("server " .. n .. " " .. (n * 16384) .. "\n", out, 1, true)
  end)

  it("makes ws:send wait while a client that does not read has 1 MiB queued", function()
    assert.matches("got 600\n", client("no_read", port, 600), 1, true)
    local early = tonumber(H.wait_for(function() return p:stdout():match("early (%d+)") end, 10000))
    assert.truthy(early and early < 300, p:stdout())
  end)

  it("closes a client that never reads after send_timeout", function()
    H.sh("timeout 30 /usr/bin/python3 " .. H.root .. "/spec/ws_core_client.py never_read " .. port .. " 15 >/dev/null 2>&1 &")
    assert.truthy(H.wait_for(function() return p:stdout():find("send failed %d+ closed") end, 14000), p:stdout())
    assert.truthy(H.wait_for(function() return p:stdout():find("closed /send 1006", 1, true) end, 5000), p:stdout())
  end)
end)

describe("websocket core, counts and handlers that return", function()
  it("counts open WebSockets and messages in the metrics, and closes (1000) a WebSocket whose handler returned without a message handler", function()
    local mport = H.free_port()
    local ctl = H.tmpdir() .. "/control.sock"
    local p, port = start({ WS_METRICS = "127.0.0.1:" .. mport }, { "--control", ctl })
    local out = client("counts", port, mport, "'" .. H.bin .. " status --control " .. ctl .. "'")
    assert.matches("status [^\n]*| 1 +%d+ +1 +%a+ [^|]* 2 +%S+ +%d+  %(2 websockets%) |", out) -- conns 2, of them 2 WebSockets
    assert.matches('open luacluster_websockets_open{worker="1",generation="1"} 2 '
      .. 'luacluster_websocket_messages_received_total{worker="1",generation="1"} 3 '
      .. 'luacluster_websocket_messages_sent_total{worker="1",generation="1"} 3\n', out, 1, true)
    assert.matches('closed luacluster_websockets_open{worker="1",generation="1"} 0 ', out, 1, true)
    out = client("abandon", port, 100)
    assert.matches("codes [(1000, 100)]\n", out, 1, true)
    assert.matches('closed luacluster_websockets_open{worker="1",generation="1"} 0 ', client("counts", port, mport), 1, true)
    p:stop()
  end)
end)

describe("websocket core, drain", function()
  it("keeps a draining worker's WebSockets until drain_timeout, then closes them with 1001", function()
    local p, port = start()
    local out = client("drain", port, p.pid)
    p:stop()
    assert.matches("before 1:a\n", out, 1, true)
    assert.matches("during 1:b0\n", out, 1, true)
    local n, secs = out:match("echoes (%d+) closed 1001 going away after ([%d.]+)")
    assert.truthy(n and tonumber(n) >= 5 and tonumber(secs) >= 1.5, out)
    assert.matches("after 2:c\n", out, 1, true)
  end)
end)
