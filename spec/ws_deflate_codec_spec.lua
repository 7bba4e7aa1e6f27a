-- permessage-deflate's codec (runtime/ws_deflate.c), checked in C with RFC 7692's examples (7.2.3)
-- and one case per rule by build/test/test_ws_deflate (runtime/test/test_ws_deflate.c).
local H = require("helper")

describe("ws_deflate", function()
  for _, c in ipairs({
    { "rfc_examples", "inflates RFC 7692 7.2.3's payloads (one block, context takeover, stored, BFINAL, two blocks, empty) and deflates 7.2.3.1/7.2.3.2's bytes" },
    { "bomb", "stops a message that inflates past max_message_size there (1009), holding at most max + 1 bytes" },
    { "invalid", "refuses data that is not deflate (1007): reserved block type, bad stored length, junk after a final block, a distance with no history" },
    { "utf8", "validates inflated text as UTF-8 (1007), not binary" },
    { "round_trip", "deflates and inflates large messages with every window size 8..15, with and without context takeover" },
    { "window_8", "deflates for server_max_window_bits=8 with zlib's 9 bits, which a 256-byte window inflates (zlib reaches 250 bytes back at most)" },
    { "no_context_takeover", "shares one inflater among sockets whose client resets per message, reset before each message" },
    { "memory", "holds a socket's own streams only with context takeover, of the sizes zlib documents" },
  }) do
    it(c[2], function()
      local out, rc = H.c_case("test_ws_deflate", c[1], 120)
      assert.equals(0, rc, out)
      assert.matches("ok " .. c[1], out, 1, true)
    end)
  end
end)
