-- permessage-deflate (RFC 7692) in a real luacluster process: req:websocket{ compress = ... }
-- (luacluster.ws.handshake negotiates, runtime/ws_deflate.c compresses), with real clients:
-- python3-websockets, which offers permessage-deflate by default, and a raw socket with Python's
-- zlib for exact frames (spec/ws_deflate_client.py).
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
local COMPRESS = {
  ["/z"] = true,
  ["/keep"] = { server_no_context_takeover = false },
  ["/small"] = { server_no_context_takeover = false, server_max_window_bits = 9, client_max_window_bits = 9, mem_level = 1 },
  ["/reset"] = { client_no_context_takeover = true },
  ["/off"] = false,
}
if cluster.is_worker then
  http.create_server(function(req)
    local ws = req:websocket({ compress = COMPRESS[req.path], max_message_size = 1000000 })
    if not ws then return end
    while true do
      local data, kind = ws:receive()
      if not data then return end
      ws:send(data, kind)
    end
  end):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

describe("websocket permessage-deflate", function()
  local p, port
  setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", "1" }, { env = { WS_PORT = tostring(port) } })
    assert.truthy(H.wait_listening(port, 10000), p and p:output())
  end)
  teardown(function()
    if p then p:stop() end
  end)

  local function client(mode, path, opts)
    local out, rc = H.sh("timeout 60 /usr/bin/python3 " .. H.root .. "/spec/ws_deflate_client.py " .. mode .. " "
      .. port .. " " .. path .. " '" .. (opts or "") .. "'")
    assert.equals(0, rc, out)
    return out
  end

  local function echoes(out)
    assert.matches("text hello \xce\xba\n", out, 1, true)
    assert.matches("binary b'\\x00\\x01\\xff'\n", out, 1, true)
    assert.matches("fragments frag1frag2\n", out, 1, true)
    assert.matches("empty ''\n", out, 1, true)
    assert.matches("random True\n", out, 1, true)
    for i = 0, 2 do
      assert.matches("compressible " .. i .. " 728890 True\n", out, 1, true)
    end
    assert.matches("far True\n", out, 1, true)
    assert.matches("close 1000\n", out, 1, true)
  end

  -- path (the server's compress), the client's offer, the response's Sec-WebSocket-Extensions
  for _, c in ipairs({
    { "/z", "default", "permessage-deflate; server_no_context_takeover", "python3-websockets' default offer" },
    { "/keep", "", "permessage-deflate", "the server's context kept between messages (configured), and the client's" },
    { "/keep", "nct_client,nct_server", "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      "both contexts reset per message, as the client asks" },
    { "/reset", "", "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      "the client's context reset per message, as the server asks" },
    { "/small", "cbits=12", "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
      "the server's windows of 9 bits, smaller than the client's 12" },
    { "/z", "sbits=10,cbits=9", "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9",
      "the client's server_max_window_bits=10 and client_max_window_bits=9" },
    { "/keep", "sbits=8", "permessage-deflate; server_max_window_bits=8",
      "server_max_window_bits=8 (zlib deflates with 9 bits, reaching 250 bytes back at most)" },
  }) do
    it("echoes text, binary, fragments, empty, random, compressible and far-matching messages: " .. c[4], function()
      local out = client("echo", c[1], c[2])
      assert.matches("extensions " .. c[3] .. "\n", out, 1, true)
      assert.matches("negotiated 1\n", out, 1, true)
      echoes(out)
    end)
  end

  it("reads RFC 7692 7.2.3.1's \"Hello\" in one frame and in two, and compresses every message it sends (RSV1)", function()
    local out = client("raw_echo", "/z")
    assert.matches("extensions permessage-deflate; server_no_context_takeover\n", out, 1, true)
    -- the server without context takeover writes 7.2.3.1's bytes each time
    local n = 0
    for line in out:gmatch("echo rsv1=1 op=1 f248cdc9c90700 Hello\n") do n = n + 1 end
    assert.equal(2, n, out)
    assert.matches("echo rsv1=1 op=1 %x+ plain \xce\xba\n", out)
    assert.matches("close 1000\n", out, 1, true)
  end)

  it("ends a compressed WebSocket whose client vanished without a close (its zlib streams go with it), and goes on", function()
    local out = client("vanish", "/keep")
    assert.matches("echo rsv1=1 1000\nvanished\n", out, 1, true)
    assert.matches("text hello", client("echo", "/keep", "default"), 1, true)
  end)

  it("speaks uncompressed to a client that offers nothing, with compress on", function()
    local out = client("echo", "/z", "none")
    assert.matches("extensions None\n", out, 1, true)
    assert.matches("negotiated 0\n", out, 1, true)
    echoes(out)
  end)

  it("ignores the offer when compress is off: no extension, and RSV1 is a protocol error (1002)", function()
    local out = client("echo", "/off", "default")
    assert.matches("extensions None\n", out, 1, true)
    assert.matches("negotiated 0\n", out, 1, true)
    echoes(out)
    out = client("rsv1", "/off")
    assert.matches("extensions None\n", out, 1, true)
    assert.matches("close 1002\n", out, 1, true)
  end)

  for _, c in ipairs({
    { "bomb", 1009, "a message that inflates past max_message_size (10 MB of \"a\" in 10 KB)" },
    { "bomb_fragments", 1009, "the same in 1000-byte fragments" },
    { "bad_deflate", 1007, "data that is not deflate" },
    { "bad_utf8_deflate", 1007, "a compressed text message that is not UTF-8 once inflated" },
    { "bad_utf8_plain", 1007, "an uncompressed text message that is not UTF-8 on a compressed connection" },
    { "rsv1_continuation", 1002, "RSV1 on a continuation frame (RFC 7692 6.1)" },
    { "rsv1_ping", 1002, "RSV1 on a control frame" },
  }) do
    it("closes with " .. c[2] .. " on " .. c[3] .. ", and the worker goes on", function()
      assert.matches("close " .. c[2] .. "\n", client(c[1], "/z"), 1, true)
      assert.matches("text hello", client("echo", "/z", "default"), 1, true)
    end)
  end
end)
