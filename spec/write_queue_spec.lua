-- The runtime's one growable buffer (runtime/buf.c) and its one write queue
-- (runtime/write_queue.c), checked in C on a real loop with real socketpairs by
-- build/test/test_wq (runtime/test/test_wq.c), one case per test.
local H = require("helper")

-- the C checks are their own program (a sanitizer build links ASan in: H.sh drops LD_PRELOAD)
local function run(case)
  return H.sh("timeout 60 " .. H.build_dir .. "/test/test_wq " .. case)
end

describe("buf", function()
  it("grows by checked doubling: the cap and the overflow edge are UV_E2BIG, a failed allocation UV_ENOMEM, the buffer unchanged", function()
    local out, rc = run("buf")
    assert.equals(0, rc, out)
    assert.matches("ok buf", out)
  end)
end)

describe("write_queue", function()
  it("queues what a slow reader's socket does not take, coalesces the writes made meanwhile, keeps the order", function()
    local out, rc = run("slow")
    assert.equals(0, rc, out)
    assert.matches("ok slow", out)
  end)

  it("closes after the queued writes: every byte arrives before the end, and a write after end is refused", function()
    local out, rc = run("end")
    assert.equals(0, rc, out)
    assert.matches("ok end", out)
  end)

  it("with a flusher, sends the writes of one loop turn together at the turn's flush", function()
    local out, rc = run("batch")
    assert.equals(0, rc, out)
    assert.matches("ok batch", out)
  end)

  it("passes a socket with uv_write2 after the bytes queued before it", function()
    local out, rc = run("write2")
    assert.equals(0, rc, out)
    assert.matches("ok write2", out)
  end)

  it("reports a peer gone through the written callback and refuses the next write", function()
    local out, rc = run("peer_gone")
    assert.equals(0, rc, out)
    assert.matches("ok peer_gone", out)
  end)

  it("refuses a write over its cap whole", function()
    local out, rc = run("cap")
    assert.equals(0, rc, out)
    assert.matches("ok cap", out)
  end)
end)
