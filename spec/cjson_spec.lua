-- lua-cjson is a dependency (vendor/install-deps.sh): `require("cjson")` works in every app with
-- no set-up. The real binary, 2 workers, a handler that decodes the request body with cjson and
-- answers with cjson.encode; checked from a real client (curl) and with a raw socket.
local H = require("helper")

local APP = [[
local http = require("luacluster.http")
local cjson = require("cjson")
local master_has = type(cjson.encode) == "function"
if cluster.is_worker then
  http.create_server(function(req, res)
    if req.path == "/json" then
      return 200, { ["Content-Type"] = "application/json" }, cjson.encode({ message = "Hello, World!" })
    end
    if req.path == "/echo" then
      local doc = cjson.decode(req:body())
      doc.n = doc.n + 1
      doc.seen = { worker = cluster.worker.id, master_had_cjson = master_has }
      return 200, { ["Content-Type"] = "application/json" }, cjson.encode(doc)
    end
    if req.path == "/bad" then
      local ok, err = pcall(cjson.decode, req:body())
      return 200, tostring(ok) .. " " .. tostring(err)
    end
    return 404, "no\n"
  end):listen()
end
]]

describe("lua-cjson in an app", function()
  local p, port

  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 2, "-p", port })
    local up = H.wait_for(function()
      local _, st = H.curl("http://127.0.0.1:" .. port .. "/json")
      return st == 200
    end, 10000)
    assert.truthy(up, p:output())
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  it("encodes TechEmpower's JSON message per request", function()
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/json")
    assert.are.equal(200, status, p:output())
    assert.are.equal('{"message":"Hello, World!"}', body)
    local raw = H.http_raw(port, "GET /json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("\r\nContent%-Type: application/json\r\n", raw)
    assert.matches("\r\nContent%-Length: 27\r\n", raw)
  end)

  it("decodes a request body and encodes the answer; the master loads it too", function()
    for _ = 1, 4 do
      local body, status = H.curl("http://127.0.0.1:" .. port .. "/echo",
        "-H 'Content-Type: application/json' --data-binary '{\"n\":41,\"list\":[1,2,\"three\"],\"s\":\"caf\\u00e9\"}'")
      assert.are.equal(200, status, p:output())
      local n = tonumber(body:match('"n":(%d+)'))
      assert.are.equal(42, n, body)
      assert.truthy(body:find('"list":[1,2,"three"]', 1, true), body)
      assert.truthy(body:find('"s":"café"', 1, true), body)
      assert.truthy(body:find('"master_had_cjson":true', 1, true), body)
      assert.matches('"worker":[12]', body)
    end
  end)

  it("raises on malformed JSON, which the handler catches with pcall", function()
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/bad", "--data-binary '{\"n\":'")
    assert.are.equal(200, status, p:output())
    assert.matches("^false .*Expected value but found", body)
  end)
end)
