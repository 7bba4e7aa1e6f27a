-- Runs the messaging examples (rate_limiter, parallel_checksum) with the real binary and
-- checks what they show.
local H = require("helper")


describe("messaging examples", function()
  after_each(function()
    H.cleanup()
  end)

  it("rate_limiter: the master's limit holds across workers, per client", function()
    local port = H.free_port()
    local p = H.start(H.root .. "/examples/rate_limiter/app.lua", { "-w", 2, "-p", port },
      { args = { 5, 60000 }, dir = H.tmpdir() })
    assert.truthy(H.wait_for(function()
      local _, status = H.curl("http://127.0.0.1:" .. port .. "/", "-H 'X-Client: probe'")
      return status == 200
    end, 10000), p:output())
    local codes, workers = {}, {}
    for i = 1, 8 do
      local body, status = H.curl("http://127.0.0.1:" .. port .. "/", "-H 'X-Client: alice'")
      codes[i] = status
      local w = body:match("from worker (%d+)")
      if w then workers[w] = true end
    end
    assert.equal("200,200,200,200,200,429,429,429", table.concat(codes, ","))
    assert.truthy(workers["1"] and workers["2"], "both workers served alice")
    local out = H.sh("curl -s -i -m 5 -H 'X-Client: alice' http://127.0.0.1:" .. port .. "/")
    assert.matches("HTTP/1.1 429", out, 1, true)
    assert.matches("[Rr]etry%-[Aa]fter: %d+", out)
    local body, status = H.curl("http://127.0.0.1:" .. port .. "/", "-H 'X-Client: bob'")
    assert.equal(200, status)
    assert.matches("hello bob from worker %d", body)
    out = H.sh("curl -s -i -m 5 -H 'X-Client: bob' http://127.0.0.1:" .. port .. "/")
    assert.matches("[Xx]%-[Rr]ate[Ll]imit%-[Rr]emaining: 3", out)
    assert.equal(0, (p:stop(10000)))
  end)

  it("parallel_checksum: CRC-32 of files over the workers, in order, errors per file", function()
    local dir = H.app({
      ["a/check.txt"] = "123456789",
      ["a/empty"] = "",
      ["a/fox.txt"] = "The quick brown fox jumps over the lazy dog",
      ["b/big1"] = string.rep("luacluster ", 100000),
      ["b/big2"] = string.rep("luacluster ", 100000),
    })
    local p = H.start(H.root .. "/examples/parallel_checksum/app.lua", { "-w", 3 },
      { args = { dir .. "/a", dir .. "/missing", dir .. "/b" }, dir = H.tmpdir() })
    assert.equal(0, (p:wait(20000)), p:output())
    local out = p:stdout()
    local rows = {}
    for line in out:gmatch("[^\n]+") do
      rows[#rows + 1] = line
    end
    assert.matches("^cbf43926 +9 " .. dir .. "/a/check%.txt$", rows[1])
    assert.matches("^00000000 +0 " .. dir .. "/a/empty$", rows[2])
    assert.matches("^414fa339 +43 " .. dir .. "/a/fox%.txt$", rows[3])
    assert.matches("^error +" .. dir .. "/missing: No such file", rows[4])
    local big1 = rows[5]:match("^(%x+) +1100000 " .. dir .. "/b/big1$")
    local big2 = rows[6]:match("^(%x+) +1100000 " .. dir .. "/b/big2$")
    assert.truthy(big1 and big1 == big2, out)
    assert.matches("^6 files, 2200052 bytes %(worker %d: %d", rows[7])
  end)
end)
