-- Reading resumes after a handler that waits: a burst of pipelined requests larger than the
-- input kept behind a running handler (64 KiB) is answered in full, whether or not the
-- waiting handler writes meanwhile (the input's pause and the output's pause are separate).
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/slow" then timer.sleep(300) return 200, "slow" end
    if req.path == "/slow-write" then
      timer.sleep(300)
      res:write("x")          -- a write that completes while reading is paused for input
      timer.sleep(300)
      res:finish("y")
      return
    end
    return 200, "ok"
  end, { header_timeout = 3000, keepalive_timeout = 3000 }):listen()
  say("ready")
end
]]

describe("http: pipelined input behind a handler that waits", function()
  local p, port
  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(p:wait_output("ready", 5000), p:output())
  end)
  lazy_teardown(function() if p then p:stop() end H.cleanup() end)

  local one = "GET /f HTTP/1.1\r\nHost: a\r\n\r\n"
  local function burst(first)
    local n = math.floor(200000 / #one)
    local t = first
    for _ = 1, n do t[#t + 1] = one end
    return table.concat(t), #t
  end
  local function check(list, want, how)
    assert.equal(want, #list, ("got %d of %d answers, how=%s, last status %s"):format(
      #list, want, tostring(how), tostring(list[#list] and list[#list].status)))
    for i, r in ipairs(list) do assert.equal(200, r.status, "answer " .. i) end
  end

  it("answers fast, slow (a timer), then 200 KB of fast requests sent in one burst", function()
    local s = assert(H.connect(port))
    local req, want = burst({ one, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" })
    local list, _, how = U.exchange(s, req, want, 15000)
    s:close()
    check(list, want, how)
    assert.equal("slow", list[2].body)
  end)

  it("answers them when the waiting handler streams its answer meanwhile", function()
    local s = assert(H.connect(port))
    local req, want = burst({ "GET /slow-write HTTP/1.1\r\nHost: a\r\n\r\n" })
    local list, _, how = U.exchange(s, req, want, 15000)
    s:close()
    check(list, want, how)
    assert.equal("xy", list[1].body)
  end)
end)
