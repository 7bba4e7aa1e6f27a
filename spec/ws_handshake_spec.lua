-- RFC 6455's opening handshake on the server's side (lua/luacluster/ws/handshake.lua), with the
-- RFC's own key (1.3, 4.2.2) and one request per refusal.
local hs = require("luacluster.ws.handshake")

local function req(over)
  local h = {
    host = "server.example.com", upgrade = "websocket", connection = "Upgrade",
    ["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ==", ["sec-websocket-version"] = "13",
  }
  for k, v in pairs(over or {}) do
    if v == false then h[k] = nil else h[k] = v end
  end
  return h
end

describe("ws.handshake", function()
  it("answers RFC 6455 1.3's key with its Sec-WebSocket-Accept", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", hs.accept("dGhlIHNhbXBsZSBub25jZQ=="))
    local h, protocol = hs.check("GET", 1, req())
    assert.same({ Upgrade = "websocket", Connection = "Upgrade", ["Sec-WebSocket-Accept"] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" }, h)
    assert.is_nil(protocol)
  end)

  it("takes the tokens in any case and among others (Connection: keep-alive, Upgrade)", function()
    assert.truthy(hs.check("GET", 1, req({ connection = "keep-alive, Upgrade", upgrade = "WebSocket" })))
  end)

  it("refuses a bad upgrade with 400", function()
    for _, c in ipairs({
      { "POST", 1, req() }, { "GET", 0, req() }, { "GET", 1, req({ host = false }) },
      { "GET", 1, req({ upgrade = false }) }, { "GET", 1, req({ upgrade = "h2c" }) },
      { "GET", 1, req({ connection = "keep-alive" }) }, { "GET", 1, req({ ["sec-websocket-key"] = false }) },
      { "GET", 1, req({ ["sec-websocket-key"] = "c2hvcnQ=" }) },            -- 5 bytes
      { "GET", 1, req({ ["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ" }) }, -- 16 bytes, padding left out
      { "GET", 1, req({ ["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ!!" }) },
      { "GET", 1, req({ ["sec-websocket-version"] = false }) },
    }) do
      local h, status, err = hs.check(c[1], c[2], c[3])
      assert.is_nil(h)
      assert.equal(400, status)
      assert.is_string(err)
    end
  end)

  it("refuses another version with 426 and Sec-WebSocket-Version: 13", function()
    local h, status, err, extra = hs.check("GET", 1, req({ ["sec-websocket-version"] = "8" }))
    assert.is_nil(h)
    assert.equal(426, status)
    assert.matches("13", err)
    assert.same({ ["Sec-WebSocket-Version"] = "13" }, extra)
  end)

  it("chooses the server's most preferred subprotocol the client offered, else none", function()
    local h, protocol = hs.check("GET", 1, req({ ["sec-websocket-protocol"] = "chat, superchat" }), { "superchat", "chat" })
    assert.equal("superchat", protocol)
    assert.equal("superchat", h["Sec-WebSocket-Protocol"])
    h, protocol = hs.check("GET", 1, req({ ["sec-websocket-protocol"] = "chat" }), { "mqtt" })
    assert.is_nil(protocol)
    assert.is_nil(h["Sec-WebSocket-Protocol"])
    h, protocol = hs.check("GET", 1, req({ ["sec-websocket-protocol"] = "chat" }))
    assert.is_nil(protocol)
    assert.is_nil(h["Sec-WebSocket-Protocol"])
    -- subprotocol names are case-sensitive tokens (RFC 6455 4.1)
    assert.is_nil(hs.choose_protocol("Chat", { "chat" }))
  end)
end)
