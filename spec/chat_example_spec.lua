-- examples/chat/app.lua as README runs it: two luacluster instances ("two hosts", 2 workers
-- each) naming the same real redis-server (REDIS=host:port), real python3-websockets clients on
-- both. A line said in a room reaches every client of that room on either host, once, and no
-- client of another room.
local H = require("helper")

local function start_redis(port)
  local p = H.spawn({ "/usr/bin/redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no" }, { dir = H.tmpdir() })
  assert(H.wait_listening(port, 10000), "redis-server did not start:\n" .. p:output())
  return p
end

local function count(out, s)
  local n = 0
  for _ in out:gmatch(s:gsub("%p", "%%%0")) do n = n + 1 end
  return n
end

describe("examples/chat", function()
  after_each(function()
    H.cleanup()
  end)

  it("carries a room's lines to its clients on two hosts through Redis, once each, and to no other room", function()
    local rport = H.free_port()
    local redis = start_redis(rport)
    local a, b = H.free_port(), H.free_port()
    local app = H.root .. "/examples/chat/app.lua"
    local env = { REDIS = "127.0.0.1:" .. rport }
    local pa = H.start(app, { "-w", 2, "-p", a }, { dir = H.tmpdir(), env = env })
    local pb = H.start(app, { "-w", 2, "-p", b }, { dir = H.tmpdir(), env = env })
    for _, port in ipairs({ a, b }) do
      assert(H.wait_for(function()
        local body, st = H.curl("http://127.0.0.1:" .. port .. "/")
        return st == 200 and body:find("WebSocket", 1, true)
      end, 20000), pa:output() .. pb:output())
    end
    local out = H.sh("timeout 30 /usr/bin/python3 " .. H.root .. "/spec/chat_client.py " .. a .. " " .. b .. " 2>&1")
    assert.truthy(out:find("done", 1, true), out)
    assert.equal(0, count(out, "timeout"), out)
    -- ann (host a) and bob (host b) each got both lines of room r exactly once
    for _, who in ipairs({ "ann", "bob" }) do
      assert.equal(1, count(out, who .. " got ann hi"), out)
      assert.equal(1, count(out, who .. " got bob yo"), out)
      assert.equal(0, count(out, who .. " got cat"), out)
    end
    -- cat (room other) got its own line and nothing of room r
    assert.equal(1, count(out, "cat got cat meow"), out)
    assert.equal(0, count(out, "cat got ann"), out)
    assert.equal(0, count(out, "cat got bob"), out)
    assert.equal(0, (pa:stop()))
    assert.equal(0, (pb:stop()))
    redis:stop()
  end)

  it("serves one host without Redis", function()
    local a = H.free_port()
    local p = H.start(H.root .. "/examples/chat/app.lua", { "-w", 2, "-p", a }, { dir = H.tmpdir() })
    assert(H.wait_for(function()
      local _, st = H.curl("http://127.0.0.1:" .. a .. "/")
      return st == 200
    end, 20000), p:output())
    local out = H.sh("timeout 30 /usr/bin/python3 " .. H.root .. "/spec/chat_client.py " .. a .. " " .. a .. " 2>&1")
    assert.truthy(out:find("done", 1, true), out)
    assert.equal(1, count(out, "bob got ann hi"), out)
    assert.equal(1, count(out, "ann got bob yo"), out)
    assert.equal(0, count(out, "cat got ann"), out)
    assert.equal(0, (p:stop()))
  end)
end)
