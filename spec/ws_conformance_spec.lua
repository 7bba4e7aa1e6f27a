-- WebSocket conformance: every vector of spec/ws_vectors.lua (RFC 6455, RFC 7692 and the Autobahn
-- test suite's case list: framing, pings, reserved bits and opcodes, fragmentation, UTF-8, close
-- codes, limits, timeouts, permessage-deflate) played by a raw client (spec/ws_raw_client.lua) against one real luacluster echo server,
-- a fresh connection per vector, each vector its own test so that a failure names it.
local H = require("helper")
local vectors = require("ws_vectors").vectors
local client = require("ws_raw_client")

-- /max/N: max_message_size N; /receive: the ws:receive() style; else ws:on("message"); the
-- paths of spec/ws_vectors.lua's last section set idle_timeout, ping_interval, a server's close
local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req)
    local opts = { max_message_size = tonumber(req.path:match("/max/(%d+)$")) or 16 * 1048576 }
    if req.path:find("^/compress") then opts.compress = true end
    if req.path == "/idle" then opts.idle_timeout = 300 end
    if req.path == "/ping" then opts.ping_interval = 200 end
    local ws = req:websocket(opts)
    if not ws then return end
    if req.path == "/close-on-message" or req.path == "/close-long" then
      local reason = req.path == "/close-long" and string.rep("\206\186", 100) or "bye"
      ws:on("message", function() ws:close(req.path == "/close-long" and 4003 or 4002, reason) end)
      return
    end
    if req.path == "/receive" then
      while true do
        local data, kind = ws:receive()
        if not data then return end
        ws:send(data, kind)
      end
    end
    ws:on("message", function(data, kind) ws:send(data, kind) end)
  end):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

-- one echo server (1 worker) for a whole describe: -> process, port
local function start_server()
  local port = H.free_port()
  local p = H.start_app(APP, { "-w", "1" }, { env = { WS_PORT = tostring(port) } })
  assert.truthy(H.wait_listening(port, 10000), p and p:output())
  return p, port
end

describe("websocket conformance vectors", function()
  local p, port
  local passed, failed = 0, {}
  setup(function()
    p, port = start_server()
  end)
  teardown(function()
    local pending_n = #vectors - passed - #failed
    print(("\nws conformance: %d vectors, %d passed, %d failed%s%s"):format(#vectors, passed, #failed,
      pending_n > 0 and (", " .. pending_n .. " pending (no permessage-deflate on this branch)") or "",
      #failed > 0 and (": " .. table.concat(failed, "; ")) or ""))
    if p then p:stop() end
  end)

  it("has a table of 150 or more vectors with unique ids", function()
    assert.is_true(#vectors >= 150, #vectors .. " vectors")
    local seen = {}
    for _, v in ipairs(vectors) do
      assert.is_nil(seen[v.id], "duplicate id " .. v.id)
      seen[v.id] = true
    end
  end)

  local compress = client.has_compress()
  for _, v in ipairs(vectors) do
    local test = (v.compress and not compress) and pending or it
    test(v.id .. ": " .. v.desc, function()
      local problems = client.run(port, v, 10000)
      if #problems > 0 then
        failed[#failed + 1] = v.id
      else
        passed = passed + 1
      end
      assert.are.same({}, problems)
    end)
  end

  it("the worker is still the one that started (no vector crashed it)", function()
    assert.is_true(p:alive(), p:output())
    local _, starts = p:output():gsub("worker %d+ %(pid %d+%) started", "")
    assert.equals(1, starts, p:output())
    local problems = client.run(port, { id = "after", send = {
      { op = 1, payload = "after", fin = true, rsv = 0, mask = true } }, expect = { { "text", "after" } } })
    assert.are.same({}, problems)
  end)
end)

-- Autobahn's sections 1, 2, 5 and 7 again (framing, pings, fragments, the close handshake and the
-- data around it) against the ws:receive() style: a coroutine woken per message
describe("websocket conformance vectors, ws:receive() style", function()
  local p, port
  setup(function()
    p, port = start_server()
  end)
  teardown(function()
    if p then p:stop() end
  end)
  for _, v in ipairs(vectors) do
    if not v.path and v.id:match("^autobahn [1257]%.") then
      it(v.id .. ": " .. v.desc, function()
        local w = setmetatable({ path = "/receive" }, { __index = v })
        assert.are.same({}, client.run(port, w, 10000))
      end)
    end
  end
end)
