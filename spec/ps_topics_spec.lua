-- The publish/subscribe topic table (runtime/ps_topics.c), checked in C by
-- build/test/test_ps_topics (runtime/test/test_ps_topics.c), one case per test.
local H = require("helper")

describe("ps_topics", function()
  for _, c in ipairs({
    { "basic", "makes, finds and unlinks topics (binary names too) through its growth" },
    { "shrink", "gives its buckets back as topics go (100,000 topics, then 10: 64 buckets at most)" },
    { "walk", "keeps its buckets still during a walk that unlinks (a closed channel leaving every topic), then shrinks" },
  }) do
    it(c[2], function()
      local out, rc = H.c_case("test_ps_topics", c[1])
      assert.equals(0, rc, out)
      assert.matches("ok " .. c[1], out, 1, true)
    end)
  end
end)
