-- The WebSocket frame codec (runtime/ws_frame.c), checked in C with RFC 6455's example frames
-- (5.7) and one vector per rule by build/test/test_ws_frame (runtime/test/test_ws_frame.c),
-- one case per test.
local H = require("helper")

local function check(case)
  local out, rc = H.sh("timeout 60 " .. H.build_dir .. "/test/test_ws_frame " .. case)
  assert.equals(0, rc, out)
  assert.matches("ok " .. case, out)
end

describe("ws_frame", function()
  for _, c in ipairs({
    { "rfc_examples", "reads RFC 6455 5.7's client frames byte by byte, refuses its unmasked ones from a client, writes its server headers" },
    { "lengths", "reads 7, 16 and 64-bit lengths at their edges; 2^63 is a protocol error, a length over max_message_size 1009 at the header" },
    { "header_rules", "refuses RSV bits no extension allows, reserved opcodes, control frames over 125 bytes or fragmented (1002)" },
    { "fragments", "takes control frames between fragments, counts max_message_size over the whole message, refuses stray continuations" },
    { "utf8", "validates UTF-8 incrementally: overlongs, surrogates, above U+10FFFF, cut sequences fail at the first bad byte" },
    { "utf8_frames", "validates text across fragments and inside a frame before it ends (1007), not binary or pings" },
    { "close", "accepts the close codes of 7.4 only (1002), a valid UTF-8 reason only (1007), reports 1005 for an empty close" },
  }) do
    it(c[2], function()
      check(c[1])
    end)
  end
end)
