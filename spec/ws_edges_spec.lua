-- The edges of a WebSocket's connection path a review found (runtime/ws_conn.c, http_conn.c's
-- deadlines, luacluster.ws.socket), against a real luacluster with spec/ws_edges_client.py
-- (raw sockets): deadlines that fall due in the same timer run while a "close" handler changes
-- another's, pings from a client that never reads, a handler that raises after the 101, text
-- and close reasons that are not UTF-8.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
local together = {}
if cluster.is_worker then
  http.create_server(function(req, res)
    local p = req.path
    if p == "/busy" then -- the loop is kept busy past the WebSockets' idle_timeout
      local t0 = os.clock()
      while os.clock() - t0 < 1.5 do end
      return 200, {}, "ok\n"
    end
    if p == "/wait" then timer.sleep(200) end -- the client's EOF comes before the 101
    local ws
    if p == "/max" then -- max_message_size: a whole number of bytes, math.huge or 0 for none
      local ok, w = pcall(req.websocket, req, { max_message_size = tonumber(req.query) })
      say("max", req.query, ok and "accepted" or w)
      if not ok then return 400, {}, "refused\n" end
      ws = w
    else
      ws = req:websocket({ idle_timeout = p == "/together" and 1000 or nil, max_message_size = 2 * 1048576 })
    end
    if not ws then return end
    ws:on("close", function(code, reason) say("closed", p, code, reason) end)
    if p == "/together" then
      local i = tonumber(req.query)
      together[i] = ws
      if i == 1 then ws:on("close", function() together[2]:close(1000, "by 1") end) end
      ws:on("message", function() end)
      return
    elseif p == "/res_after" then -- res:write / res:finish after the 101: refused, the frames stay whole
      local r = {}
      for _, f in ipairs({ function() return res:write("x") end, function() return res:write("y") end,
                           function() return res:finish("z") end }) do
        local ok, err = f()
        r[#r + 1] = tostring(ok) .. " " .. tostring(err)
      end
      ws:send(table.concat(r, "; "))
      ws:close(1000, "done")
      return
    elseif p == "/wrapped" then -- sends from a coroutine luacluster does not run: it cannot wait
      ws:receive()
      coroutine.wrap(function()
        local blob = string.rep("w", 65536)
        for i = 1, 400 do
          local ok, err = ws:send(blob, "binary")
          if not ok then say("wrapped send failed", i, err) return end
        end
        say("wrapped sends all queued")
      end)()
      return
    elseif p == "/raise" then
      ws:on("message", function(data) ws:send(data) end)
      error("raised after the 101")
    elseif p == "/not_utf8" then
      ws:receive()
      local ok, err = pcall(function() ws:send("caf\233", "text") end)
      ws:send(ok and "sent" or err)
      ok, err = pcall(function() ws:close(1000, "caf\233") end)
      ws:send(ok and "closed" or err)
      ws:send("caf\233", "binary")
      ws:close(1000, "caf\195\169")
      return
    end
    local data, kind = ws:receive() -- an echo until the close
    while data do
      ws:send(data, kind)
      data, kind = ws:receive()
    end
  end, { send_timeout = 1000, header_timeout = 2000 }):listen(tonumber(os.getenv("WS_PORT")), "127.0.0.1")
end
]]

local ASAN = os.getenv("ASAN_OPTIONS") ~= nil -- its quarantine keeps freed memory

local function client(mode, port, ...)
  local out, rc = H.sh("timeout 60 /usr/bin/python3 " .. H.root .. "/spec/ws_edges_client.py " .. mode .. " " .. port
    .. " " .. table.concat({ ... }, " "))
  assert.equals(0, rc, out)
  return out
end

describe("websocket edges", function()
  local p, port
  setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", "1" }, { env = { WS_PORT = tostring(port) } })
    assert.truthy(H.wait_listening(port, 10000), p:output())
  end)
  teardown(function()
    if p then p:stop() end
  end)

  it("expires every deadline due in one timer run when a close handler closes another due WebSocket", function()
    -- the third was lost: the timer's chain of due connections ran through dl_next, which the
    -- second's ws:close relinked into the live list
    local out = client("together", port)
    assert.matches("1 close 1001 idle timeout\n", out, 1, true)
    assert.matches("2 close 1000 by 1\n", out, 1, true)
    assert.matches("3 close 1001 idle timeout\n", out, 1, true)
  end)

  it("closes a client that pings and never reads after the send timeout (its pongs count)", function()
    local out = client("ping_flood", port, 20)
    local secs = tonumber(out:match("^reset after ([%d.]+)"))
    assert.truthy(secs and secs < 15, out)
    assert.truthy(H.wait_for(function() return p:stdout():find("closed /echo 1006", 1, true) end, 5000), p:stdout())
  end)

  it("keeps no big buffer for an idle WebSocket that sent and received a big message", function()
    -- each kept its 1 MiB input buffer (until a next read) and its write queue's 1 MiB buffer
    local pid = H.children(p.pid)[1]
    local kb = tonumber(client("big_then_idle", port, 100, pid):match("grew_kb (%-?%d+)"))
    assert.truthy(kb and kb < (ASAN and 300 or 40) * 1024, "the worker grew by " .. tostring(kb) .. " kB")
  end)

  it("refuses res:write and res:finish after the 101 (they wrote HTTP bytes into the frames)", function()
    local out = client("one_message", port, "/res_after")
    assert.matches("^message 1 nil [^;]+; nil [^;]+; nil [^\n]+\nclose 1000 done\n$", out)
  end)

  it("ends a WebSocket whose client closed its side before the 101, once its frames are read (1006)", function()
    assert.matches("^eof after [%d.]+, frames: none\n$", client("half_close", port, "/wait"))
    assert.truthy(H.wait_for(function() return p:stdout():find("closed /wait 1006", 1, true) end, 5000), p:stdout())
    assert.matches("^eof after [%d.]+, frames: 1:early\n$", client("half_close", port, "/wait", "early"))
  end)

  it("bounds sends from a coroutine luacluster does not run (they cannot wait) like those of the main thread", function()
    -- they neither waited nor met the 8 MiB bound: 25 MiB queued for a client that reads nothing
    client("never_read", port, "/wrapped", 3)
    local n = tonumber(H.wait_for(function() return p:stdout():match("wrapped send failed (%d+) closed") end, 5000))
    assert.truthy(n and n < 300, p:stdout())
  end)

  it("takes max_message_size as a whole number of bytes (0.5 meant no limit; math.huge is none, not a cast out of range)", function()
    assert.matches("^close 1009 message over max_message_size\n$", client("one_message", port, "/max?3"))
    assert.matches("^message 1 hello\n", client("one_message", port, "/max?1e999"))
    assert.matches("^message 1 hello\n", client("one_message", port, "/max?0"))
    local out = H.http_raw(port, "GET /max?0.5 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 5000)
    assert.matches("^HTTP/1.1 400", out)
    -- (the worker's line reaches the master's stdout a little after the answer)
    assert.truthy(H.wait_for(function()
      return p:stdout():find("max 0.5 [^\n]*max_message_size must be a whole number of bytes")
    end, 5000), p:output())
  end)

  it("closes a client that stops in the middle of a frame or of a fragmented message after header_timeout, with no idle_timeout (and not one that pauses between messages)", function()
    for _, what in ipairs({ "frame", "fragment" }) do
      local out = client("stall", port, what)
      local secs = tonumber(out:match("^close 1001 frame timeout after ([%d.]+) s"))
      assert.truthy(secs, what .. ": " .. out)
      assert.truthy(secs >= 1.5 and secs < 10, what .. ": " .. out)
    end
    assert.equal("echo two\n", client("stall", port, "between"))
  end)

  it("closes a WebSocket with 1011 when its handler raises after the 101", function()
    assert.matches("close 1011 the handler failed\n", client("one_message", port, "/raise"), 1, true)
    assert.truthy(H.wait_for(function() return p:stdout():find("closed /raise %d") end, 5000), p:stdout())
    assert.matches("request handler failed: [^\n]*raised after the 101", p:stderr())
  end)

  it("refuses text and close reasons that are not UTF-8 (a raise at the caller), sends the same bytes as binary", function()
    local out = client("one_message", port, "/not_utf8")
    assert.matches("^message 1 [^\n]*app%.lua:%d+: ws:send: text is not valid UTF%-8 %(send bytes as \"binary\"%)\n"
      .. "message 1 [^\n]*app%.lua:%d+: ws:close: the reason is not valid UTF%-8\n"
      .. "message 2 caf\239\191\189\nclose 1000 café\n$", out)
  end)
end)
