-- The access log names the request of an answer the runtime refuses once the head is read:
-- a 413 for a Content-Length over the limit is refused before any body, and still logged
-- with its request line (not "-").
local H = require("helper")
local U = require("http_util")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  http.create_server(function(req, res) return 200, "ok" end, { access_log = arg[1] }):listen()
  say("ready")
end
]]

describe("http: access log of a refused request", function()
  it("names the request refused for its Content-Length (413)", function()
    local port, dir = H.free_port(), H.tmpdir()
    local p = H.start_app(APP, { "-w", 1, "-p", port }, { args = { dir .. "/a.log" } })
    assert(p:wait_output("ready", 5000), p:output())
    assert(H.wait_listening(port, 10000), p:output())
    local r, data, how = U.once(port, "POST /upload-too-big HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 10000)
    assert.equal(413, r and r.status, tostring(data) .. " " .. tostring(how) .. "\n" .. p:output())
    local log = ""
    for _ = 1, 50 do
      log = H.read_file(dir .. "/a.log") or ""
      if log:find(" 413 ", 1, true) then break end
      H.sleep(100)
    end
    p:stop() H.cleanup()
    assert.is_truthy(log:find(" 413 ", 1, true), log)
    assert.is_truthy(log:find('"POST /upload-too-big HTTP/1.1" 413', 1, true), log)
  end)
end)
