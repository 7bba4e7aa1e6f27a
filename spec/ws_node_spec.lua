-- WebSocket with Node's `ws` as the client (spec/ws_node_client.js) against a real luacluster:
-- echo of text, binary, fragmented and large messages, ping/pong, the subprotocol, close codes
-- from either side, 1009, and the answer to ws's permessage-deflate offer. `ws` (major 8) is
-- installed from npm into spec/.node (git-ignored) on the first run and reused after.
local H = require("helper")
local has_compress = require("ws_raw_client").has_compress

local WS_MAJOR = "8"
local NODE_DIR = H.root .. "/spec/.node"

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req)
    local opts = { protocols = { "chat", "superchat" } }
    if req.path == "/max" then opts.max_message_size = 100 end
    if req.path == "/compress" then opts.compress = true end
    local ws = req:websocket(opts)
    if not ws then return end
    ws:on("close", function(code, reason) say("closed", code, reason) end)
    ws:on("message", function(data, kind)
      if req.path == "/close" then ws:close(4001, "server bye") return end
      ws:send(data, kind)
    end)
  end):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

-- npm install ws@8 into spec/.node once
local function install_ws()
  local pkg = NODE_DIR .. "/node_modules/ws/package.json"
  local have = io.open(pkg)
  if have then
    local v = have:read("*a"):match('"version"%s*:%s*"(%d+)%.')
    have:close()
    if v == WS_MAJOR then return end
  end
  local out, rc = H.sh("mkdir -p '" .. NODE_DIR .. "' && cd '" .. NODE_DIR .. "' && timeout 300 npm install --prefix '" .. NODE_DIR
    .. "' --no-save --no-package-lock --no-audit --no-fund ws@" .. WS_MAJOR .. " 2>&1")
  assert(rc == 0, "npm install ws@" .. WS_MAJOR .. " failed: " .. out)
end

local function node(mode, url)
  local out, rc = H.sh("timeout 30 node " .. H.root .. "/spec/ws_node_client.js " .. mode .. " " .. url .. " 2>&1")
  assert.equals(0, rc, out)
  return out
end

-- every line of `lines` is a whole line of the client's output
local function has_lines(out, lines)
  for _, l in ipairs(lines) do
    assert.matches("\n" .. l .. "\n", "\n" .. out, 1, true)
  end
end

describe("websocket server with Node's ws client", function()
  local p, port, base
  setup(function()
    install_ws()
    port = H.free_port()
    base = "ws://127.0.0.1:" .. port
    p = H.start_app(APP, { "-w", "1" }, { env = { WS_PORT = tostring(port) } })
    assert.truthy(H.wait_listening(port, 10000), p and p:output())
  end)
  teardown(function()
    if p then p:stop() end
  end)

  it("echoes text, binary, fragmented (text and binary), 1 MiB and 200 KB messages; answers a ping; chooses the server's preferred subprotocol", function()
    has_lines(node("echo", base .. "/"), { "protocol chat", "text hello \xce\xba", "binary 0001ff",
      "fragments text frag1frag2frag3", "fragments binary abcd", "pong p1", "big text 1048560 true",
      "bigbinary binary 200000 true", "close 1000" })
  end)

  it("echoes the client's close code (4000 with a UTF-8 reason, 1001), and tells ws:on(\"close\") the code and reason", function()
    assert.matches("close 4000 \"\"", node("client_close", base .. "/"), 1, true)
    assert.truthy(H.wait_for(function() return p:stdout():find("closed 4000 bye \xce\xba", 1, true) end, 5000), p:output())
    assert.matches("close 1001 \"\"", node("client_close_1001", base .. "/"), 1, true)
  end)

  it("delivers the server's ws:close(4001, reason) to the client", function()
    assert.matches("close 4001 \"server bye\"", node("server_close", base .. "/close"), 1, true)
  end)

  it("closes with 1009 when the client's message is over max_message_size", function()
    assert.matches("close 1009 ", node("too_big", base .. "/max"), 1, true)
    assert.matches("text hello", node("echo", base .. "/"), 1, true)
  end)

  it("declines ws's permessage-deflate offer when the app did not ask for compress, and messages still pass", function()
    has_lines(node("deflate", base .. "/"), { 'extensions-header ""', 'extensions ""', "text text 120000 true",
      "binary binary 70000 true", "sequence true", "close 1000" })
  end)

  local compress_it = has_compress() and it or pending
  compress_it("accepts permessage-deflate with opts.compress: compressed text, binary and a sequence come back intact", function()
    local out = node("deflate", base .. "/compress")
    assert.matches('extensions-header "permessage-deflate', out, 1, true)
    assert.matches('extensions "permessage-deflate"', out, 1, true)
    has_lines(out, { "text text 120000 true", "binary binary 70000 true", "sequence true", "close 1000" })
  end)
end)
