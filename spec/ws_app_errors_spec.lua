-- What a WebSocket app's mistakes do, seen by a real client (spec/ws_app_errors_client.py,
-- python3-websockets) and in the log: a handler that raises after the upgrade (1011), a socket
-- kept only by a subscription that the client keeps writing to (its messages are dropped, it
-- still answers pings and closes), bad or unknown req:websocket options (an error at the app's
-- line), ws:subscribe in the master (an error), idle_timeout on a push-only socket.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
local pubsub = require("luacluster.pubsub")
if cluster.is_master then
  cluster.setup{ drain_timeout = 3000 }
  timer.every(300, function() pubsub.publish("t", "tick") end)
  http.create_server(function(req) -- the master serves WebSockets too, but they cannot subscribe
    local ws = req:websocket()
    if not ws then return end
    local ok, err = pcall(ws.subscribe, ws, "t")
    local ok2, err2 = pcall(ws.unsubscribe, ws, "t")
    ws:send(tostring(ok) .. " " .. tostring(err) .. " | " .. tostring(ok2) .. " " .. tostring(err2))
  end):listen(tonumber(os.getenv("WS_MPORT")), "127.0.0.1")
  return
end
http.create_server(function(req)
  local p = req.path
  if p == "/opt" then
    req:websocket{ idle_timeout = "5000" } -- LINE_OPT
  elseif p == "/compress" then
    local ws = req:websocket{ compress = { client_max_window_bits = 20 } } -- LINE_COMPRESS
    return ws
  elseif p == "/typo" then
    req:websocket{ compres = true } -- LINE_TYPO
  elseif p == "/notable" then
    req:websocket("yes") -- LINE_NOTABLE
  end
  local ws = req:websocket{ idle_timeout = p == "/push" and 1000 or nil }
  if not ws then return end
  ws:on("close", function(code) say("closed", p, code) end)
  if p == "/sub" then -- lives on by its subscription alone
    ws:subscribe("t")
    ws:send("subscribed")
  elseif p == "/sub_late" then -- the client writes while the handler still runs, then it returns
    ws:subscribe("t")
    ws:send("subscribed")
    timer.sleep(1500)
  elseif p == "/raise" then -- the receive() style
    local d = ws:receive()
    while d do
      ws:send("echo " .. d)
      if d == "boom" then undefined_function() end
      d = ws:receive()
    end
  elseif p == "/raise_on" then -- raises after it has set a message handler
    ws:on("message", function(d) ws:send("echo " .. d) end)
    ws:send("ready")
    error("the handler failed after ws:on")
  elseif p == "/raise_sub" then -- raises after it has subscribed
    ws:subscribe("t")
    error("the handler failed after ws:subscribe")
  elseif p == "/push" then -- sends every 250 ms until the close, never reads
    while ws:send("push") do
      timer.sleep(250)
    end
  end
end):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
]]

-- the line of APP (as written, after H.prelude) that has `marker`
local function line_of(marker)
  local n = 0
  for l in (H.prelude .. APP):gmatch("([^\n]*)\n") do
    n = n + 1
    if l:find(marker, 1, true) then
      return n
    end
  end
  error("no line " .. marker)
end

local function client(mode, port, path, ...)
  local out, rc = H.sh("timeout 90 /usr/bin/python3 " .. H.root .. "/spec/ws_app_errors_client.py " .. mode .. " "
    .. port .. " " .. path .. " " .. table.concat({ ... }, " "))
  assert.equals(0, rc, out)
  return out
end

describe("websocket app errors", function()
  local p, port, mport
  setup(function()
    port, mport = H.free_port(), H.free_port()
    p = H.start_app(APP, { "-w", "1" }, { env = { WS_PORT = tostring(port), WS_MPORT = tostring(mport) } })
    assert.truthy(H.wait_listening(port, 10000), p:output())
    assert.truthy(H.wait_listening(mport, 10000), p:output())
  end)
  teardown(function()
    if p then p:stop() end
  end)

  it("drops the messages of a socket kept only by a subscription: it still answers pings, gets publishes and echoes the close", function()
    local out = client("chatty", port, "/sub", 3000)
    assert.matches("first subscribed\nsent 3000\npong ok\ntick ok\nclosed 1000 echoed\n", out, 1, true)
    -- messages that waited while the handler ran are dropped when it returns
    out = client("chatty", port, "/sub_late", 1500)
    assert.matches("first subscribed\nsent 1500\npong ok\ntick ok\nclosed 1000 echoed\n", out, 1, true)
    assert.truthy(H.wait_for(function() return p:stdout():find("closed /sub_late 1000", 1, true) end, 5000), p:output())
    local _, warns = p:stderr():gsub("a WebSocket's message was dropped", "")
    assert.equals(1, warns, p:stderr()) -- once per process
  end)

  it("closes with 1011 the WebSocket of a handler that raised, and logs the error with the app's line", function()
    local out = client("boom", port, "/raise")
    assert.matches("got echo boom\nclosed 1011 ", out, 1, true)
    assert.matches("app.lua:%d+: attempt to call global 'undefined_function'", p:stderr())
    -- with a message handler or a subscription too: the handler that set them up did not finish
    assert.matches("got ready\nclosed 1011 ", client("boom", port, "/raise_on", "-"), 1, true)
    assert.matches("closed 1011 ", client("boom", port, "/raise_sub", "-"), 1, true)
    assert.matches("the handler failed after ws:subscribe", p:stderr(), 1, true)
  end)

  it("raises req:websocket's option errors at the app's line, an unknown option by its name", function()
    for _, c in ipairs({ { "/opt", "LINE_OPT", "req:websocket: idle_timeout must be a number of ms >= 0" },
                         { "/compress", "LINE_COMPRESS", "req:websocket: " },
                         { "/typo", "LINE_TYPO", "req:websocket: unknown option 'compres'" },
                         { "/notable", "LINE_NOTABLE", "req:websocket: opts must be a table" } }) do
      local _, status = H.curl("http://127.0.0.1:" .. port .. c[1])
      assert.equals(500, status)
      local want = "app.lua:" .. line_of(c[2]) .. ": " .. c[3]
      assert.truthy(H.wait_for(function() return p:stderr():find(want, 1, true) end, 5000), want .. "\n" .. p:stderr())
    end
  end)

  it("raises ws:subscribe and ws:unsubscribe in the master, saying that WebSockets subscribe in workers", function()
    local out = client("boom", mport, "/", "-")
    assert.matches("got false [^\n]*ws:subscribe: [^\n]*workers only[^\n]* | false [^\n]*ws:unsubscribe: [^\n]*workers only", out)
  end)

  it("counts only the client's frames for idle_timeout: a socket the server pushes to is closed with 1001", function()
    local out = client("silent", port, "/push")
    local n, secs = out:match("got (%d+) closed 1001 idle timeout after ([%d.]+)")
    assert.truthy(n and tonumber(n) >= 2 and tonumber(secs) >= 0.8, out)
  end)
end)
