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

  describe("permessage-deflate (RFC 7692)", function()
    local S = hs.deflate_settings(true)
    local function neg(offers, settings)
      return hs.negotiate_deflate(offers, settings or S)
    end

    it("parses Sec-WebSocket-Extensions (RFC 6455 9.1): several offers, parameters with and without values, quoted values", function()
      assert.same({
        { name = "permessage-deflate", params = { { "client_max_window_bits", true } } },
        { name = "permessage-deflate", params = { { "server_max_window_bits", "10" }, { "x", "a b,c\"" } } },
        { name = "foo", params = {} },
      }, hs.parse_extensions('permessage-deflate; client_max_window_bits, permessage-deflate ;server_max_window_bits = "10"; x="a b,c\\"" ,, foo'))
      assert.is_nil(hs.parse_extensions("permessage-deflate; x=\"unterminated"))
      assert.is_nil(hs.parse_extensions("permessage-deflate; ; x"))
      assert.is_nil(hs.parse_extensions("permessage deflate"))
    end)

    it("accepts a plain offer without server context takeover by default (one shared compressor, 7.1.1.1 allows it)", function()
      local resp, p = neg("permessage-deflate")
      assert.equal("permessage-deflate; server_no_context_takeover", resp)
      assert.same({ server_no_context_takeover = true, client_no_context_takeover = false, server_max_window_bits = 15,
        client_max_window_bits = 15, level = 1, mem_level = 8 }, p)
      -- and with context takeover when the server's settings say so
      resp, p = neg("permessage-deflate", hs.deflate_settings({ server_no_context_takeover = false }))
      assert.equal("permessage-deflate", resp)
      assert.is_false(p.server_no_context_takeover)
    end)

    it("honours server_no_context_takeover and client_no_context_takeover offered (7.1.1), which take no value", function()
      local keep = hs.deflate_settings({ server_no_context_takeover = false })
      local resp, p = neg("permessage-deflate; server_no_context_takeover", keep)
      assert.equal("permessage-deflate; server_no_context_takeover", resp)
      assert.is_true(p.server_no_context_takeover)
      resp, p = neg("permessage-deflate; client_no_context_takeover", keep)
      assert.equal("permessage-deflate; client_no_context_takeover", resp)
      assert.is_true(p.client_no_context_takeover)
      -- the server may ask the client not to keep its context (7.1.1.2) even unasked
      resp = neg("permessage-deflate", hs.deflate_settings({ client_no_context_takeover = true }))
      assert.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover", resp)
      assert.is_nil(neg("permessage-deflate; server_no_context_takeover=1"))
      assert.is_nil(neg('permessage-deflate; client_no_context_takeover=""'))
    end)

    it("answers server_max_window_bits with the same or a smaller value (7.1.2.1), 8 included", function()
      local resp, p = neg("permessage-deflate; server_max_window_bits=10")
      assert.equal("permessage-deflate; server_no_context_takeover; server_max_window_bits=10", resp)
      assert.equal(10, p.server_max_window_bits)
      resp, p = neg("permessage-deflate; server_max_window_bits=12", hs.deflate_settings({ server_max_window_bits = 11 }))
      assert.matches("server_max_window_bits=11$", resp)
      assert.equal(11, p.server_max_window_bits)
      -- unasked, the server may still name a smaller window of its own
      assert.matches("server_max_window_bits=9$", neg("permessage-deflate", hs.deflate_settings({ server_max_window_bits = 9 })))
      resp, p = neg("permessage-deflate; server_max_window_bits=8")
      assert.matches("server_max_window_bits=8$", resp)
      assert.equal(8, p.server_max_window_bits)
      -- the first acceptable offer is taken
      resp = neg("permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9")
      assert.matches("server_max_window_bits=9$", resp)
    end)

    it("names client_max_window_bits only when the offer has it (7.1.2.2), with or without a value", function()
      local resp, p = neg("permessage-deflate; client_max_window_bits")
      assert.equal("permessage-deflate; server_no_context_takeover", resp)
      assert.equal(15, p.client_max_window_bits)
      local small = hs.deflate_settings({ client_max_window_bits = 10 })
      resp, p = neg("permessage-deflate; client_max_window_bits", small)
      assert.matches("; client_max_window_bits=10$", resp)
      assert.equal(10, p.client_max_window_bits)
      -- a value is the client's own limit: the server answers it or less
      resp, p = neg("permessage-deflate; client_max_window_bits=9", small)
      assert.matches("; client_max_window_bits=9$", resp)
      assert.equal(9, p.client_max_window_bits)
      resp, p = neg('permessage-deflate; client_max_window_bits="12"')
      assert.matches("; client_max_window_bits=12$", resp)
      assert.equal(12, p.client_max_window_bits)
      -- without the parameter the client may use 15 bits: a server that wants fewer declines
      assert.is_nil(neg("permessage-deflate", small))
      assert.truthy(neg("permessage-deflate"))
    end)

    it("declines an offer with an unknown or repeated parameter or an invalid value, and takes the next (7.1)", function()
      for _, bad in ipairs({
        "permessage-deflate; foo", "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits", "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=1a", "permessage-deflate; client_max_window_bits=0",
        'permessage-deflate; client_max_window_bits="1 5"', "permessage-deflate; client_max_window_bits=-9",
      }) do
        assert.is_nil(neg(bad), bad)
        local resp, p = neg(bad .. ", permessage-deflate; client_no_context_takeover")
        assert.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover", resp, bad)
        assert.is_true(p.client_no_context_takeover)
      end
      -- other extensions are not ours; a malformed header, or none, is no offer
      assert.is_nil(neg("x-webkit-deflate-frame"))
      assert.is_nil(neg("permessage-deflate; x=\"open"))
      assert.is_nil(neg(nil))
    end)

    it("check answers with Sec-WebSocket-Extensions only when compress is on and an offer is accepted", function()
      local r = req({ ["sec-websocket-extensions"] = "permessage-deflate; client_max_window_bits" })
      local h, _, p = hs.check("GET", 1, r, nil, S)
      assert.equal("permessage-deflate; server_no_context_takeover", h["Sec-WebSocket-Extensions"])
      assert.is_table(p)
      h, _, p = hs.check("GET", 1, r)
      assert.is_nil(h["Sec-WebSocket-Extensions"])
      assert.is_nil(p)
      h, _, p = hs.check("GET", 1, req({ ["sec-websocket-extensions"] = "permessage-deflate; foo" }), nil, S)
      assert.is_nil(h["Sec-WebSocket-Extensions"])
      assert.is_nil(p)
    end)

    it("refuses bad compress settings", function()
      for _, bad in ipairs({ "yes", { level = 10 }, { server_max_window_bits = 7 }, { client_max_window_bits = 16 },
        { mem_level = 0 }, { window = 10 }, { server_no_context_takeover = 1 }, { level = 1.5 } }) do
        assert.has_error(function() hs.deflate_settings(bad) end)
      end
    end)
  end)
end)
