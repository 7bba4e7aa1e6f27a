-- The ring of TLS session ticket keys (lua/luacluster/lib/ticket_ring.lua), without a process:
-- the schedule in whole periods from the origin, a rotation's new key first and the dropping of
-- what is beyond the kept ones (and of keys a late rotation finds too old), the 8-key cap of
-- core.tls_ticket_keys, and export/import, which an upgrade uses to carry the ring on.
local ticket_ring = require("luacluster.lib.ticket_ring")

-- a random source that gives distinct, recognisable keys: "A"*80, "B"*80, ...
local function counter()
  local n = 0
  return function(len)
    n = n + 1
    return string.rep(string.char(64 + n), len)
  end
end

local P = 1000 -- one period, ms


describe("ticket ring", function()
  it("starts with one key of 80 bytes made at its origin", function()
    local r = ticket_ring.new({ random = counter(), now = 5000 })
    assert.equals(1, r:count())
    assert.equals(80, #r:blob())
    assert.equals(string.rep("A", 80), r:blob())
    assert.equals(5000, r.origin)
    assert.same({ 0, 0 }, { r:ages(5000) })
  end)

  it("is due once a period has started since its newest key, counted from the origin", function()
    local r = ticket_ring.new({ random = counter(), now = 5000 })
    assert.is_false(r:due(5000, P))
    assert.is_false(r:due(5999, P))
    assert.is_true(r:due(6000, P))
    assert.equals(6000, r:next_at(5000, P))
    assert.equals(6000, r:next_at(5999, P))
    assert.equals(7000, r:next_at(6000, P))
    -- a rotation late within its period does not shift the schedule
    r:rotate(counter(), 6400, P)
    assert.is_false(r:due(6999, P))
    assert.is_true(r:due(7000, P))
    assert.equals(7000, r:next_at(6400, P))
  end)

  it("puts a rotation's key first and keeps one previous key by default", function()
    local rnd = counter()
    local r = ticket_ring.new({ random = rnd, now = 0 })
    r:rotate(rnd, 1000, P)
    assert.equals(2, r:count())
    assert.equals(string.rep("B", 80) .. string.rep("A", 80), r:blob())
    r:rotate(rnd, 2000, P)
    assert.equals(2, r:count())
    assert.equals(string.rep("C", 80) .. string.rep("B", 80), r:blob()) -- A is gone: two periods old
    assert.same({ 0, 1000 }, { r:ages(2000) })
  end)

  it("drops the keys a rotation that came periods late finds too old", function()
    local rnd = counter()
    local r = ticket_ring.new({ random = rnd, now = 0 })
    r:rotate(rnd, 1000, P)
    r:rotate(rnd, 5500, P) -- the master was stopped for periods: B (period 1) is too old for period 5
    assert.equals(1, r:count())
    assert.equals(string.rep("C", 80), r:blob())
  end)

  it("keeps up to keep previous keys, at most 8 keys in all", function()
    local rnd = counter()
    local r = ticket_ring.new({ random = rnd, now = 0, keep = 7 })
    for i = 1, 20 do
      r:rotate(rnd, i * P, P)
    end
    assert.equals(8, r:count())
    assert.equals(8 * 80, #r:blob())
    assert.equals(string.char(64 + 21), r:blob():sub(1, 1)) -- the newest first
    assert.equals(string.char(64 + 14), r:blob():sub(-1))
    assert.has_error(function() ticket_ring.new({ random = rnd, now = 0, keep = 8 }) end,
      "ticket_ring: keep must be a whole number from 0 to 7")
    local single = ticket_ring.new({ random = rnd, now = 0, keep = 0 })
    single:rotate(rnd, P, P)
    assert.equals(1, single:count())
  end)

  it("raises when the random source gives fewer than 80 bytes", function()
    assert.has_error(function()
      ticket_ring.new({ random = function() return "short" end, now = 0 })
    end, "ticket_ring: the random source gave no 80 bytes")
  end)

  it("exports and imports the keys, their times and the origin", function()
    local rnd = counter()
    local r = ticket_ring.new({ random = rnd, now = 5000 })
    r:rotate(rnd, 6100, P)
    local s = r:export()
    assert.equals("string", type(s))
    local r2 = assert(ticket_ring.import(s))
    assert.equals(r:blob(), r2:blob())
    assert.equals(5000, r2.origin)
    assert.same({ r:ages(9000) }, { r2:ages(9000) })
    assert.equals(r:next_at(6500, P), r2:next_at(6500, P))
    -- the new master's rotation goes on from there
    r2:rotate(rnd, 7000, P)
    assert.equals(string.rep("C", 80) .. string.rep("B", 80), r2:blob())
    -- a smaller keep drops what is beyond it
    local r3 = assert(ticket_ring.import(s, 0))
    assert.equals(string.rep("B", 80), r3:blob())
  end)

  it("refuses an import that is not an export", function()
    local function refused(s, pattern)
      local r, err = ticket_ring.import(s)
      assert.is_nil(r)
      assert.matches(pattern, err)
    end
    refused(nil, "expected the string export%(%) made")
    refused("garbage", "not an export of this version")
    local buffer = require("string.buffer")
    refused(buffer.encode({ v = 2, origin = 0, keys = {} }), "not an export of this version")
    refused(buffer.encode({ v = 1, origin = 0, keys = {} }), "not 1 to 8 keys")
    refused(buffer.encode({ v = 1, origin = 0, keep = 1, keys = { { bytes = "x", made = 0 } } }),
      "key 1 of the export is not 80 bytes")
    local nine = {}
    for i = 1, 9 do
      nine[i] = { bytes = string.rep("k", 80), made = 0 }
    end
    refused(buffer.encode({ v = 1, origin = 0, keep = 1, keys = nine }), "not 1 to 8 keys")
  end)
end)


describe("cluster.setup{ tls_ticket_rotate = }", function()
  local master = require("luacluster.master.core")
  require("luacluster.master.plugins").attach(master)

  it("takes ms from a second to a week, and refuses the rest with the range", function()
    for _, bad in ipairs({ 999, 0, -1, 7 * 24 * 3600 * 1000 + 1, math.huge, 0 / 0 }) do
      local ok, err = pcall(master.setup, { tls_ticket_rotate = bad })
      assert.is_false(ok)
      assert.matches("cluster.setup: tls_ticket_rotate must be from 1000 to 604800000 ms", err, 1, true)
    end
    local ok, err = pcall(master.setup, { tls_ticket_rotate = "1h" })
    assert.is_false(ok)
    assert.matches("tls_ticket_rotate must be a number", err, 1, true)
    master.setup({ tls_ticket_rotate = 2000 })
    assert.equals(2000, master.config().tls_ticket_rotate)
  end)

  it("shows the number and ages of the keys, never a key", function()
    local info = require("luacluster.master.tls_tickets").info()
    assert.equals(1, info.keys)
    assert.is_true(info.newest_age >= 0 and info.oldest_age >= info.newest_age)
    for _, v in pairs(info) do
      assert.equals("number", type(v))
    end
  end)
end)
