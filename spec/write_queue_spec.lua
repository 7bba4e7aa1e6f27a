-- The runtime's one growable buffer (runtime/buf.c) and its one write queue
-- (runtime/write_queue.c), checked in C on a real loop with real socketpairs by
-- build/test/test_wq (runtime/test/test_wq.c), one case per test.
local H = require("helper")

-- the C checks are their own program (a sanitizer build links ASan in: H.sh drops LD_PRELOAD)
local function check(case)
  local out, rc = H.sh("timeout 60 " .. H.build_dir .. "/test/test_wq " .. case)
  assert.equals(0, rc, out)
  assert.matches("ok " .. case, out)
end

describe("buf", function()
  it("grows by checked doubling: the cap and the overflow edge are UV_E2BIG, a failed allocation UV_ENOMEM, the buffer unchanged", function()
    check("buf")
  end)
end)

describe("write_queue", function()
  for _, c in ipairs({
    { "slow", "queues what a slow reader's socket does not take, coalesces the writes made meanwhile, keeps the order" },
    { "end", "closes after the queued writes: every byte arrives before the end, and a write after end is refused" },
    { "batch", "with a flusher, sends the writes of one loop turn together at the turn's flush" },
    { "write2", "passes a socket with uv_write2 after the bytes queued before it" },
    { "peer_gone", "reports a peer gone through the written callback and refuses the next write" },
    { "cap", "refuses a write over its cap whole" },
    { "write2_cap", "keeps its cap when a write2's buffer, bigger than the cap, comes back as its buffer" },
    { "chain", "flushes every queue of a turn when a written callback closes a queue not yet flushed, and calls no written after a close" },
    { "oom", "drops and reports what a flush cannot hand over for want of memory: nothing waits for a written that never comes" },
  }) do
    it(c[2], function()
      check(c[1])
    end)
  end
end)
