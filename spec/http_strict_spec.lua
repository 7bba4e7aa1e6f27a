-- Strict HTTP/1.1 parsing: every request vector in spec/data/http_vectors.lua (RFC 9112 and the
-- published request-smuggling research) against the real server, each with its expected
-- status; a refused request must also close its connection. The same table runs against nginx
-- with bench/http_vectors_nginx.lua.
local H = require("helper")
local U = require("http_util")
local vectors = dofile(H.root .. "/spec/data/http_vectors.lua")

local APP = [[
local http = require("luacluster.http")
if cluster.is_worker then
  -- the defaults, but a short header_timeout so that incomplete vectors end in 408 quickly
  http.create_server(function(req, res)
    local body = req:body()
    return 200, { ["Content-Type"] = "text/plain" }, "path=" .. tostring(req.path) .. "\nbody=" .. body
  end, { header_timeout = 400 }):listen()
  say("ready")
end
]]


describe("strict HTTP/1.1 parsing", function()
  local p, port

  lazy_setup(function()
    port = H.free_port()
    p = H.start_app(APP, { "-w", 1, "-p", port })
    assert(p:wait_output("ready", 5000), p:output())
    assert(H.wait_for(function() return U.once(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") end, 3000))
  end)

  lazy_teardown(function()
    if p then p:stop() end
    H.cleanup()
  end)

  it("has a table of well-formed vectors", function()
    assert.is_true(#vectors >= 100, "only " .. #vectors .. " vectors")
    for _, v in ipairs(vectors) do
      assert.is_string(v.id)
      assert.is_string(v.group, v.id)
      assert.is_string(v.request, v.id)
      assert.is_number(v.expect, v.id)
      assert.is_string(v.ref, v.id)
    end
  end)

  for _, v in ipairs(vectors) do
    it(v.group .. ": " .. v.id .. " -> " .. v.expect, function()
      local res = U.run_vector(port, v, 3000)
      assert.equal(v.expect, res.status, v.id .. ": " .. U.describe_result(res) .. " " .. ("%q"):format(res.data or ""))
      if v.expect >= 400 then
        assert.is_true(res.closed, v.id .. ": the connection stayed open after " .. v.expect)
        assert.equal("close", res.response.headers.connection)
      else
        local body = res.response.body
        if v.body then
          assert.equal("body=" .. v.body, body:match("\n(body=.*)$"), v.id)
        end
        if v.path then
          assert.equal("path=" .. v.path, body:match("^(path=[^\n]*)"), v.id)
        end
      end
    end)
  end

  it("still serves after every vector, from the same worker", function()
    local r = U.once(port, "GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert.equal(200, r.status)
    assert.equal("path=/after\nbody=", r.body)
    assert.equal(0, p:count("worker %d+ %(pid %d+%) exited"), p:output())
    assert.equal(1, p:count("worker %d+ %(pid %d+%) started"), p:output())
  end)

  it("refuses a smuggled request hidden in a pipeline (CL.TE) without answering it", function()
    local s = assert(H.connect(port))
    local list, data, how = U.exchange(s, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 2, 2000)
    assert.equal(1, #list, data)
    assert.equal(400, list[1].status)
    assert.not_matches("smuggled", data, 1, true)
    assert.equal("eof", how)
    s:close()
  end)

  it("refuses a chunk whose terminator hides a second request (TERM.SPILL)", function()
    local s = assert(H.connect(port))
    local list, data = U.exchange(s, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "2\r\nabXX0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 2, 2000)
    assert.equal(1, #list, data)
    assert.equal(400, list[1].status)
    assert.not_matches("smuggled", data, 1, true)
    s:close()
  end)
end)
