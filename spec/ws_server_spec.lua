-- WebSocket in a real luacluster process (req:websocket, runtime/ws_conn.c), with real clients:
-- python3-websockets (spec/ws_client.py) for what a client does, a raw socket in the same
-- script for the frames RFC 6455 says a server must refuse, each with its close code.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req)
    local ws = req:websocket({ protocols = { "chat", "superchat" }, max_message_size = tonumber(os.getenv("WS_MAX")) })
    if not ws then return end
    ws:on("close", function(code, reason) say("closed", code, reason) end)
    if req.path == "/on" then
      ws:on("message", function(data, kind) ws:send(data, kind) end)
      return
    end
    while true do
      local data, kind = ws:receive()
      if not data then return end
      ws:send(data, kind)
    end
  end):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

local function client(mode, port)
  local out, rc = H.sh("timeout 30 /usr/bin/python3 " .. H.root .. "/spec/ws_client.py " .. mode .. " " .. port)
  assert.equals(0, rc, out)
  return out
end

describe("websocket server", function()
  local p, port
  setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", "1" }, { env = { WS_PORT = tostring(port), WS_MAX = "100000" } })
    assert.truthy(H.wait_listening(port, 10000), p and p:output())
  end)
  teardown(function()
    if p then p:stop() end
  end)

  it("echoes text, binary, a fragmented message, a 50 KB message; answers pings; chooses the server's preferred subprotocol; closes with 1000", function()
    local out = client("echo", port)
    assert.matches("protocol chat\n", out, 1, true)
    assert.matches("text hello \xce\xba\n", out, 1, true)
    assert.matches("binary b'\\x00\\x01\\xff'\n", out, 1, true)
    assert.matches("fragments frag1frag2\n", out, 1, true)
    assert.matches("pong\n", out, 1, true)
    assert.matches("big 50000\n", out, 1, true)
    assert.matches("close 1000\n", out, 1, true)
  end)

  it("echoes a client's close code, and tells ws:on(\"close\") its code and reason", function()
    local out = client("client_close", port)
    assert.matches("close 4000 \n", out, 1, true)   -- the code echoed (5.5.1)
    assert.truthy(H.wait_for(function() return p:stdout():find("closed 4000 bye", 1, true) end, 5000), p:output())
    assert.equals("3001", tostring(client("close_echo", port):match("close (%d+)")))
  end)

  it("closes a connection whose client went away without a close frame, and tells ws:on(\"close\") 1006", function()
    assert.matches("vanished", client("vanish", port), 1, true)
    assert.truthy(H.wait_for(function() return p:stdout():find("closed 1006", 1, true) end, 5000), p:output())
  end)

  it("refuses a bad upgrade with 400 and another version with 426 and Sec-WebSocket-Version: 13", function()
    local out = H.http_raw(port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    assert.matches("^HTTP/1.1 426 ", out)
    assert.matches("Sec%-WebSocket%-Version: 13\r\n", out)
    out = H.http_raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.matches("^HTTP/1.1 400 ", out)
  end)

  for _, c in ipairs({
    { "unmasked", 1002, "an unmasked client frame" },
    { "bad_utf8", 1007, "invalid UTF-8 in a text frame" },
    { "bad_utf8_fragments", 1007, "invalid UTF-8 across fragments" },
    { "too_big", 1009, "a message over max_message_size" },
    { "huge_length", 1009, "a frame announcing 2^63 - 1 bytes (at its header)" },
    { "reserved_opcode", 1002, "a reserved opcode" },
    { "rsv", 1002, "an RSV bit without an extension" },
    { "bad_close_code", 1002, "a close code a peer may not send" },
    { "long_ping", 1002, "a ping over 125 bytes" },
  }) do
    it("closes with " .. c[2] .. " on " .. c[3] .. ", and the worker goes on", function()
      assert.equals(tostring(c[2]), client(c[1], port):match("close (%S+)"))
      assert.matches("text hello", client("echo", port), 1, true)
    end)
  end
end)

describe("websocket server, ws:on(\"message\")", function()
  it("echoes with a message handler after the handler returned", function()
    local port = H.free_port()
    local p = H.start_app((APP:gsub([["/on"]], [["/"]])), { "-w", "1" }, { env = { WS_PORT = tostring(port) } })
    assert.truthy(H.wait_listening(port, 10000), p:output())
    local out = client("echo", port)
    p:stop()
    assert.matches("fragments frag1frag2\n", out, 1, true)
    assert.matches("big 50000\n", out, 1, true)
  end)
end)
