-- Runs the messaging examples (rate_limiter, on a shared dictionary, and its request/reply
-- version kept in bench/apps; parallel_checksum) with the real binary and checks what they show.
local H = require("helper")


describe("messaging examples", function()
  after_each(function()
    H.cleanup()
  end)

  -- starts a rate limiter app with 2 workers, limit 5 per window_ms; -> process, url, control
  local function limiter(app, window_ms)
    local port = H.free_port()
    local control = H.tmpdir() .. "/control.sock"
    local p = H.start(app, { "-w", 2, "-p", port, "--control", control },
      { args = { 5, window_ms }, dir = H.tmpdir() })
    local url = "http://127.0.0.1:" .. port .. "/"
    -- until each worker has answered (a client of its own each time, under its limit): a
    -- worker not ready yet leaves every request to the other one
    local seen, i = {}, 0
    assert.truthy(H.wait_for(function()
      i = i + 1
      local body, status = H.curl(url, "-H 'X-Client: probe" .. i .. "'")
      local w = status == 200 and body:match("from worker (%d+)")
      if w then seen[w] = true end
      return seen["1"] and seen["2"]
    end, 10000), p:output())
    return p, url, control
  end

  -- n requests as client; -> "200,200,...", the set of workers that answered
  local function take(url, client, n)
    local codes, workers = {}, {}
    for i = 1, n do
      local body, status = H.curl(url, "-H 'X-Client: " .. client .. "'")
      codes[i] = status
      local w = body:match("from worker (%d+)")
      if w then workers[w] = true end
    end
    return table.concat(codes, ","), workers
  end

  -- the example (on a shared dictionary) and its request/reply version (bench/apps) answer alike
  for _, case in ipairs({
    { "rate_limiter", "/examples/rate_limiter/app.lua" },
    { "rate_limiter's request/reply version (bench/apps)", "/bench/apps/rate_limiter_rr.lua" },
  }) do
    it(case[1] .. ": the limit holds across workers, per client", function()
      local p, url = limiter(H.root .. case[2], 60000)
      local codes, workers = take(url, "alice", 8)
      assert.equal("200,200,200,200,200,429,429,429", codes)
      assert.truthy(workers["1"] and workers["2"], "both workers served alice")
      local out = H.sh("curl -s -i -m 5 -H 'X-Client: alice' " .. url)
      assert.matches("HTTP/1.1 429", out, 1, true)
      assert.matches("[Rr]etry%-[Aa]fter: %d+", out)
      local body, status = H.curl(url, "-H 'X-Client: bob'")
      assert.equal(200, status)
      assert.matches("hello bob from worker %d", body)
      out = H.sh("curl -s -i -m 5 -H 'X-Client: bob' " .. url)
      assert.matches("[Xx]%-[Rr]ate[Ll]imit%-[Rr]emaining: 3", out)
      assert.equal(0, (p:stop(10000)))
    end)
  end

  it("rate_limiter: a client's window ends window_ms after its first request", function()
    local p, url = limiter(H.root .. "/examples/rate_limiter/app.lua", 1500)
    local t0 = H.now()
    local codes = take(url, "carol", 6)
    if H.now() - t0 < 1200 then -- (a loaded machine may take longer: then the window may be over)
      assert.equal("200,200,200,200,200,429", codes)
      local out = H.sh("curl -s -i -m 5 -H 'X-Client: carol' " .. url)
      local reset = tonumber(out:match("[Xx]%-[Rr]ate[Ll]imit%-[Rr]eset%-[Mm]s: (%d+)"))
      assert.truthy(reset and reset > 0 and reset <= 1500, out)
    end
    assert.truthy(H.wait_for(function()
      return take(url, "carol", 1) == "200"
    end, 5000, 100), "carol is let in again once the window is over")
    assert.equal(0, (p:stop(10000)))
  end)

  it("rate_limiter: refuses a window of 0 (its counts would never expire: a client over the limit stayed out)", function()
    local out, rc = H.sh("timeout 10 " .. H.bin .. " -w 1 -p " .. H.free_port() .. " " .. H.root .. "/examples/rate_limiter/app.lua 5 0 2>&1")
    assert.not_equal(0, rc, out)
    assert.matches("limit and window_ms must be >= 1", out, 1, true)
  end)

  it("rate_limiter: the counts live in a shared dictionary: a reload keeps them", function()
    local p, url, control = limiter(H.root .. "/examples/rate_limiter/app.lua", 60000)
    assert.equal("200,200,200,200,200,429", (take(url, "dave", 6)))
    local out, rc = H.sh(H.bin .. " reload --control " .. control)
    assert.equal(0, rc, out .. p:output())
    assert.equal("429,429", (take(url, "dave", 2)), p:output())
    assert.equal("200", (take(url, "erin", 1)))
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
