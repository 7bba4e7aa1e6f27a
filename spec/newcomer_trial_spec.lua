-- Smoke checks of the apps a newcomer wrote from README alone (spec/newcomer17/): the live dashboard (a
-- master timer publishes, WebSocket clients and a worker's pubsub.subscribe get it) and the chat
-- rooms (two workers, receive() and on("message") styles, a compressed client).
local H = require("helper")
local cjson = require("cjson")

describe("newcomer trial apps", function()
  after_each(function()
    H.cleanup()
  end)

  it("dashboard: the master's publishes reach a worker's subscription (GET /last) and WebSocket clients", function()
    local port = H.free_port()
    local p = H.start(H.root .. "/spec/newcomer17/dashboard.lua", { "-w", 2, "-p", port }, { dir = H.tmpdir() })
    local last = H.wait_for(function()
      local body, st = H.curl("http://127.0.0.1:" .. port .. "/last")
      return st == 200 and cjson.decode(body)
    end, 20000)
    assert(last and last.n >= 1, p:output())
    local out = H.sh("timeout 30 /usr/bin/python3 " .. H.root .. "/spec/newcomer17/live_client.py ws://127.0.0.1:" .. port
      .. "/live 3 2>&1")
    assert.truthy(out:find("done", 1, true), out .. p:output())
    local ns = {}
    for n in out:gmatch('"n":(%d+)') do ns[#ns + 1] = tonumber(n) end
    assert.equal(3, #ns, out)
    assert.is_true(ns[2] > ns[1] and ns[3] > ns[2], out) -- the current value first, then new ones
    assert.equal(0, (p:stop()))
  end)

  it("chat: a line said in a room reaches its clients on both workers, in either handler style", function()
    local port = H.free_port()
    local p = H.start(H.root .. "/spec/newcomer17/chat.lua", { "-p", port }, { dir = H.tmpdir() })
    assert(H.wait_listening(port, 20000), p:output())
    local c = "/usr/bin/python3 " .. H.root .. "/spec/newcomer17/client.py ws://127.0.0.1:" .. port .. "/ws?room=a"
    local dir = H.tmpdir()
    H.sh("(" .. c .. "\\&style=on --name ON --secs 2 >" .. dir .. "/ON 2>&1 & "
      .. c .. "\\&style=receive --name RCV --secs 2 --delay 0.5 --send said-by-rcv >" .. dir .. "/RCV 2>&1 & "
      .. c .. "\\&style=on\\&compress=1 --compress --name Z --secs 2 --delay 1 --send said-by-z >" .. dir
      .. "/Z 2>&1 & wait)")
    local hellos = ""
    for _, who in ipairs({ "ON", "RCV", "Z" }) do
      local out = H.read_file(dir .. "/" .. who)
      assert.truthy(out:find("recv: %[w%d%] said%-by%-rcv"), out)
      assert.truthy(out:find("recv: %[w%d%] said%-by%-z"), out)
      hellos = hellos .. (out:match("recv: hello from worker %d") or "")
    end
    assert.truthy(H.read_file(dir .. "/Z"):find("ext: permessage%-deflate"))
    assert.truthy(hellos:find("worker 1", 1, true) and hellos:find("worker 2", 1, true), hellos) -- both workers
    assert.equal(0, (p:stop()))
  end)
end)
