-- WebSocket conformance vectors for spec/ws_conformance_spec.lua, written from RFC 6455, RFC 7692
-- and the published case list of the Autobahn test suite (sections 1-7, 9, 10, 12; each id names
-- its source; "limit" and "timeout" are the contract's max_message_size, idle_timeout and
-- ping_interval). Each vector is data (compressed payloads are made here, with spec/ws_zlib.lua):
--   send   steps, in order: a frame (F{...}), { pause = ms }, { wait_close = true } (the server's
--          close must have arrived before anything more is written: "fail fast"),
--          { wait_events = n } (the first n expected events must have arrived before more is written),
--          { piece = frame, from = i, to = j } (payload bytes i..j of a frame; from = 0 writes the
--          header too), { raw = bytes }, { shutdown = true } (TCP half-close, no close frame)
--   write  "bulk" (default: consecutive frames in one write), "frames" (a write per frame) or a
--          number n (the whole byte stream in writes of n bytes, `chop_pause` ms apart)
--   path   the upgrade's path ("/max/N": the echo app's max_message_size is N; "/" is 16 MiB)
--   pipelined  the first write goes in the same write as the upgrade request
--   compress  the upgrade offers permessage-deflate, which the 101 must accept (RFC 7692)
--   expect the server's messages and pongs, in order, nothing else: { "text" | "binary" | "pong", data }
--   close_reason  the reason the server's close must carry
--   close  nil: a clean close started by the runner (it sends 1000 once `expect` is met and the
--          server must echo 1000); else the codes the server's close frame may carry (1005 = a
--          close without payload), after which the server must end the connection
--   drop   the server must end the TCP connection without a close frame (drop_ok: it may, or close)
--   no_reply  the runner does not answer the server's close (it does by default, 5.5.1)
--   server_pings  the server must ping at least this often (the runner answers each with a pong)
--   timeout  ms the runner waits for each outcome (10000 by default)
local M = {}

local zlib = require("ws_zlib")

local char, rep, concat = string.char, string.rep, table.concat

local OP = { cont = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

-- F{ op, payload, fin = true, rsv = 0 (the 3 RSV bits as a number, RSV1 = 4), mask = true,
--    key = 4 bytes, len = announced length, len_bytes = 2 | 8 (force a 16 or 64-bit length
--    field), len_raw = the 8 bytes of a 64-bit length field }
local function F(t)
  return {
    op = t[1], payload = t[2] or "", fin = t.fin ~= false, rsv = t.rsv or 0, mask = t.mask ~= false,
    key = t.key, len = t.len, len_bytes = t.len_bytes, len_raw = t.len_raw,
  }
end
local function text(s, fin) return F({ OP.text, s, fin = fin }) end
local function binary(s, fin) return F({ OP.binary, s, fin = fin }) end
local function cont(s, fin) return F({ OP.cont, s, fin = fin }) end
local function ping(s) return F({ OP.ping, s }) end
local function pong(s) return F({ OP.pong, s }) end
local function u16(n) return char(math.floor(n / 256) % 256, n % 256) end
local function close(code, reason)
  return F({ OP.close, code and (u16(code) .. (reason or "")) or "" })
end
local function hex(h) return (h:gsub("%x%x", function(x) return char(tonumber(x, 16)) end)) end

-- a message split into fragments of n bytes (the first with opcode op, the rest continuations)
local function fragments(op, s, n)
  local out, i = {}, 1
  repeat
    local part = s:sub(i, i + n - 1)
    i = i + n
    out[#out + 1] = F({ #out == 0 and op or OP.cont, part, fin = i > #s })
  until i > #s
  return out
end

local function bytes(from, to, sep)
  local t = {}
  for b = from, to do t[#t + 1] = char(b) .. (sep or "") end
  return concat(t)
end

local V = {}
local function add(v)
  assert(v.id and v.desc and v.send, "vector needs id, desc, send")
  V[#V + 1] = v
end
local function ok_text(s) return { "text", s } end
local function ok_binary(s) return { "binary", s } end
local function ok_pong(s) return { "pong", s } end

-- ---- Autobahn 1: framing, text and binary, lengths at the 7/16/64-bit edges ----
for _, kind in ipairs({ { "1.1", "text", "*", text }, { "1.2", "binary", "\254", binary } }) do
  local section, name, byte, frame = kind[1], kind[2], kind[3], kind[4]
  for i, n in ipairs({ 0, 125, 126, 127, 128, 65535, 65536 }) do
    add({ id = "autobahn " .. section .. "." .. i, desc = name .. " message of " .. n .. " bytes",
      send = { frame(rep(byte, n)) }, expect = { { name, rep(byte, n) } } })
  end
  add({ id = "autobahn " .. section .. ".8", desc = name .. " message of 65536 bytes, written in chops of 997 bytes",
    send = { frame(rep(byte, 65536)) }, write = 997, expect = { { name, rep(byte, 65536) } } })
end

-- ---- Autobahn 2: pings and pongs ----
add({ id = "autobahn 2.1", desc = "ping without payload: pong without payload", send = { ping("") }, expect = { ok_pong("") } })
add({ id = "autobahn 2.2", desc = "ping with a small text payload", send = { ping("Hello, world!") }, expect = { ok_pong("Hello, world!") } })
add({ id = "autobahn 2.3", desc = "ping with a small binary (not UTF-8) payload",
  send = { ping("\0\255\254\253\252\251\0\255") }, expect = { ok_pong("\0\255\254\253\252\251\0\255") } })
add({ id = "autobahn 2.4", desc = "ping with a 125-byte binary payload", send = { ping(rep("\254", 125)) }, expect = { ok_pong(rep("\254", 125)) } })
add({ id = "autobahn 2.5", desc = "ping with a 126-byte payload: control frames carry at most 125 (5.5)",
  send = { ping(rep("\254", 126)) }, close = { 1002 } })
add({ id = "autobahn 2.6", desc = "ping with a 125-byte payload, written byte by byte",
  send = { ping(rep("\254", 125)) }, write = 1, chop_pause = 1, expect = { ok_pong(rep("\254", 125)) } })
add({ id = "autobahn 2.7", desc = "unsolicited pong without payload: nothing answers it", send = { pong("") }, expect = {} })
add({ id = "autobahn 2.8", desc = "unsolicited pong with payload: nothing answers it", send = { pong("unsolicited pong payload") }, expect = {} })
add({ id = "autobahn 2.9", desc = "unsolicited pong, then a ping: the ping's pong only",
  send = { pong("unsolicited pong payload"), ping("ping payload") }, expect = { ok_pong("ping payload") } })
do
  local pings, pongs = {}, {}
  for i = 0, 9 do
    pings[#pings + 1] = ping("payload-" .. i)
    pongs[#pongs + 1] = ok_pong("payload-" .. i)
  end
  add({ id = "autobahn 2.10", desc = "10 pings in one write: 10 pongs in order", send = pings, expect = pongs })
  add({ id = "autobahn 2.11", desc = "10 pings written byte by byte: 10 pongs in order",
    send = pings, write = 1, expect = pongs })
end

-- ---- Autobahn 3: reserved bits (no extension negotiated: any RSV bit fails the connection) ----
add({ id = "autobahn 3.1", desc = "text with RSV = 1", send = { F({ OP.text, "Hello, world!", rsv = 1 }) }, close = { 1002 } })
add({ id = "autobahn 3.2", desc = "text, then text with RSV = 2, then a ping: the first echoed, then 1002, no pong",
  send = { text("Hello, world!"), F({ OP.text, "Hello, world!", rsv = 2 }), ping("") },
  expect = { ok_text("Hello, world!") }, close = { 1002 } })
add({ id = "autobahn 3.3", desc = "as 3.2 with RSV = 3, a write per frame",
  send = { text("Hello, world!"), F({ OP.text, "Hello, world!", rsv = 3 }), ping("") }, write = "frames",
  expect = { ok_text("Hello, world!") }, close = { 1002 } })
add({ id = "autobahn 3.4", desc = "as 3.2 with RSV = 4, written byte by byte",
  send = { text("Hello, world!"), F({ OP.text, "Hello, world!", rsv = 4 }), ping("") }, write = 1,
  expect = { ok_text("Hello, world!") }, close = { 1002 } })
add({ id = "autobahn 3.5", desc = "binary with RSV = 5", send = { F({ OP.binary, rep("\255", 8), rsv = 5 }) }, close = { 1002 } })
add({ id = "autobahn 3.6", desc = "ping with RSV = 6", send = { F({ OP.ping, "Hello, world!", rsv = 6 }) }, close = { 1002 } })
add({ id = "autobahn 3.7", desc = "close with RSV = 7", send = { F({ OP.close, u16(1000), rsv = 7 }) }, close = { 1002 } })

-- ---- Autobahn 4: reserved opcodes ----
for _, group in ipairs({ { "4.1", "non-control", { 3, 4, 5, 6, 7 } }, { "4.2", "control", { 11, 12, 13, 14, 15 } } }) do
  for i, op in ipairs(group[3]) do
    local payload = i == 1 and "" or "reserved opcode payload"
    local v = { id = "autobahn " .. group[1] .. "." .. i, close = { 1002 },
      desc = "reserved " .. group[2] .. " opcode " .. op .. (i == 1 and "" or " with payload") }
    if i <= 2 then
      v.send = { F({ op, payload }) }
    else
      v.desc = "text, then reserved " .. group[2] .. " opcode " .. op .. ", then a ping: the text echoed, then 1002, no pong"
      v.send = { text("Hello, world!"), F({ op, payload }), ping("") }
      v.expect = { ok_text("Hello, world!") }
    end
    add(v)
  end
end

-- ---- Autobahn 5: fragmentation ----
add({ id = "autobahn 5.1", desc = "ping in 2 fragments (control frames are never fragmented)",
  send = { F({ OP.ping, "fragment1", fin = false }), cont("fragment2") }, close = { 1002 } })
add({ id = "autobahn 5.2", desc = "pong in 2 fragments",
  send = { F({ OP.pong, "fragment1", fin = false }), cont("fragment2") }, close = { 1002 } })
for i, mode in ipairs({ "bulk", "frames", 1 }) do
  local how = ({ "in one write", "a write per frame", "written byte by byte" })[i]
  add({ id = "autobahn 5." .. (2 + i), desc = "text in 2 fragments, " .. how,
    send = { text("fragment1", false), cont("fragment2") }, write = mode, expect = { ok_text("fragment1fragment2") } })
  add({ id = "autobahn 5." .. (5 + i), desc = "text in 2 fragments with a ping between them, " .. how .. ": pong, then the message",
    send = { text("fragment1", false), ping("pongme!"), cont("fragment2") }, write = mode,
    expect = { ok_pong("pongme!"), ok_text("fragment1fragment2") } })
  add({ id = "autobahn 5." .. (8 + i), desc = "a continuation (FIN) with nothing to continue, then text, " .. how,
    send = { cont("non-continuation payload"), text("Hello, world!") }, write = mode, close = { 1002 } })
  add({ id = "autobahn 5." .. (11 + i), desc = "a continuation (no FIN) with nothing to continue, then text, " .. how,
    send = { cont("non-continuation payload", false), text("Hello, world!") }, write = mode, close = { 1002 } })
end
add({ id = "autobahn 5.15", desc = "text in 2 fragments, then a continuation with nothing to continue, then text: the first echoed, then 1002",
  send = { text("fragment1", false), cont("fragment2"), cont("fragment3", false), text("fragment4") },
  expect = { ok_text("fragment1fragment2") }, close = { 1002 } })
add({ id = "autobahn 5.16", desc = "twice: a continuation (no FIN) with nothing to continue, then text in 2 fragments",
  send = { cont("fragment1", false), text("fragment2", false), cont("fragment3"),
    cont("fragment1", false), text("fragment2", false), cont("fragment3") }, close = { 1002 } })
add({ id = "autobahn 5.17", desc = "twice: a continuation (FIN) with nothing to continue, then text in 2 fragments",
  send = { cont("fragment1"), text("fragment2", false), cont("fragment3"),
    cont("fragment1"), text("fragment2", false), cont("fragment3") }, close = { 1002 } })
add({ id = "autobahn 5.18", desc = "text in 2 fragments both with opcode text (a new message before the last ended)",
  send = { text("fragment1", false), text("fragment2") }, close = { 1002 } })
for i, mode in ipairs({ "bulk", "frames" }) do
  add({ id = "autobahn 5." .. (18 + i),
    desc = "text in 5 fragments, pings after the 2nd and 4th: the first pong comes before the 3rd fragment is sent" .. (i == 2 and " (a write per frame)" or ""),
    send = { text("fragment1", false), cont("fragment2", false), ping("pongme 1!"), { wait_events = 1 }, { pause = 200 },
      cont("fragment3", false), cont("fragment4", false), ping("pongme 2!"), cont("fragment5") },
    write = mode,
    expect = { ok_pong("pongme 1!"), ok_pong("pongme 2!"), ok_text("fragment1fragment2fragment3fragment4fragment5") },
  })
end

-- ---- Autobahn 6.1-6.4: UTF-8 in fragments, fail fast ----
add({ id = "autobahn 6.1.1", desc = "text message of length 0", send = { text("") }, expect = { ok_text("") } })
add({ id = "autobahn 6.1.2", desc = "text in 3 fragments of length 0", send = { text("", false), cont("", false), cont("") }, expect = { ok_text("") } })
add({ id = "autobahn 6.1.3", desc = "text in 3 fragments, the first and last empty",
  send = { text("", false), cont("middle frame payload", false), cont("") }, expect = { ok_text("middle frame payload") } })
local hello_utf8 = "Hello-\194\181@\195\159\195\182\195\164\195\188\195\160\195\161-UTF-8!!"
add({ id = "autobahn 6.2.1", desc = "valid UTF-8 text in one fragment", send = { text(hello_utf8) }, expect = { ok_text(hello_utf8) } })
add({ id = "autobahn 6.2.2", desc = "valid UTF-8 text in 2 fragments split on a code point",
  send = { text(hello_utf8:sub(1, 8), false), cont(hello_utf8:sub(9)) }, expect = { ok_text(hello_utf8) } })
add({ id = "autobahn 6.2.3", desc = "valid UTF-8 text in 1-byte fragments (splits inside code points)",
  send = fragments(OP.text, hello_utf8, 1), expect = { ok_text(hello_utf8) } })
local kosme = hex("cebae1bdb9cf83cebcceb5")
add({ id = "autobahn 6.2.4", desc = "\"kosme\" in Greek in 1-byte fragments", send = fragments(OP.text, kosme, 1), expect = { ok_text(kosme) } })
local kosme_bad = hex("cebae1bdb9cf83cebcceb5eda080656469746564")
add({ id = "autobahn 6.3.1", desc = "invalid UTF-8 (a surrogate) in one fragment", send = { text(kosme_bad) }, close = { 1007 } })
add({ id = "autobahn 6.3.2", desc = "invalid UTF-8 (a surrogate) in 1-byte fragments", send = fragments(OP.text, kosme_bad, 1), close = { 1007 } })
add({ id = "autobahn 6.4.1", desc = "fail fast: 3 fragments, the 2nd invalid (U+110000): the close comes before the 3rd is sent",
  send = { text(kosme, false), { pause = 300 }, cont(hex("f4908080"), false), { wait_close = true }, cont(hex("656469746564")) },
  close = { 1007 } })
add({ id = "autobahn 6.4.2", desc = "fail fast: 3 fragments, the sequence made invalid by the 2nd's single byte",
  send = { text(kosme .. "\244", false), { pause = 300 }, cont("\144", false), { wait_close = true }, cont(hex("8080656469746564")) },
  close = { 1007 } })
do
  local f = text(kosme .. hex("f4908080") .. hex("656469746564"))
  add({ id = "autobahn 6.4.3", desc = "fail fast inside one frame: written in 3 parts, the close comes after the invalid part",
    send = { { piece = f, from = 0, to = 11 }, { pause = 300 }, { piece = f, from = 12, to = 15 }, { wait_close = true }, { piece = f, from = 16 } },
    close = { 1007 } })
  local g = text(kosme .. hex("f4908080") .. hex("656469746564"))
  add({ id = "autobahn 6.4.4", desc = "fail fast inside one frame: the invalid byte alone in the 2nd part",
    send = { { piece = g, from = 0, to = 12 }, { pause = 300 }, { piece = g, from = 13, to = 13 }, { wait_close = true }, { piece = g, from = 14 } },
    close = { 1007 } })
end

-- ---- Autobahn 6.5-6.23: the Markus Kuhn UTF-8 decoder test sequences, each in one text frame ----
local utf8_groups = {
  { "some valid UTF-8 sequences", {
    { true, "hello$world" }, { true, "hello\194\162world" }, { true, "hello\226\130\172world" },
    { true, "hello\240\164\173\162world" }, { true, kosme } } },
  { "prefixes of a valid UTF-8 string with multi-byte code points", (function()
    local t = {}
    for i = 1, #kosme do
      t[#t + 1] = { i == 2 or i == 5 or i == 7 or i == 9 or i == 11, kosme:sub(1, i) }
    end
    return t
  end)() },
  { "first possible sequence of a certain length", {
    { true, "\0" }, { true, hex("c280") }, { true, hex("e0a080") }, { true, hex("f0908080") } } },
  { "first possible sequence of length 5/6 (beyond U+10FFFF)", {
    { false, hex("f888808080") }, { false, hex("fc8480808080") } } },
  { "last possible sequence of a certain length", {
    { true, "\127" }, { true, hex("dfbf") }, { true, hex("efbfbf") }, { true, hex("f48fbfbf") } } },
  { "last possible sequence of length 4/5/6 (beyond U+10FFFF)", {
    { false, hex("f7bfbfbf") }, { false, hex("fbbfbfbfbf") }, { false, hex("fdbfbfbfbfbf") } } },
  { "other boundary conditions", {
    { true, hex("ed9fbf") }, { true, hex("ee8080") }, { true, hex("efbfbd") }, { true, hex("f48fbfbf") },
    { false, hex("f4908080") } } },
  { "unexpected continuation bytes", {
    { false, "\128" }, { false, "\191" }, { false, "\128\191" }, { false, "\128\191\128" },
    { false, "\128\191\128\191" }, { false, "\128\191\128\191\128" }, { false, "\128\191\128\191\128\191" },
    { false, bytes(0x80, 0xbe) } } },
  { "lonely start bytes, each followed by a space", {
    { false, bytes(0xc0, 0xde, " ") }, { false, bytes(0xe0, 0xee, " ") }, { false, bytes(0xf0, 0xf6, " ") },
    { false, bytes(0xf8, 0xfa, " ") }, { false, "\252 " } } },
}
local missing_last = { "c0", "e080", "f08080", "f8808080", "fc80808080", "df", "efbf", "f7bfbf", "fbbfbfbf", "fdbfbfbfbf" }
do
  local t = {}
  for _, h in ipairs(missing_last) do t[#t + 1] = { false, hex(h) } end
  utf8_groups[#utf8_groups + 1] = { "sequences with the last continuation byte missing", t }
  utf8_groups[#utf8_groups + 1] = { "concatenation of incomplete sequences", { { false, hex(concat(missing_last)) } } }
end
local function invalid(list)
  local t = {}
  for _, h in ipairs(list) do t[#t + 1] = { false, hex(h) } end
  return t
end
utf8_groups[#utf8_groups + 1] = { "impossible bytes", invalid({ "fe", "ff", "fefeffff" }) }
utf8_groups[#utf8_groups + 1] = { "overlong ASCII '/'", invalid({ "c0af", "e080af", "f08080af", "f8808080af", "fc80808080af" }) }
utf8_groups[#utf8_groups + 1] = { "maximum overlong sequences", invalid({ "c1bf", "e09fbf", "f08fbfbf", "f887bfbfbf", "fc83bfbfbfbf" }) }
utf8_groups[#utf8_groups + 1] = { "overlong NUL", invalid({ "c080", "e08080", "f0808080", "f880808080", "fc8080808080" }) }
utf8_groups[#utf8_groups + 1] = { "single UTF-16 surrogates", invalid({ "eda080", "edadbf", "edae80", "edafbf", "edb080", "edbe80", "edbfbf" }) }
utf8_groups[#utf8_groups + 1] = { "paired UTF-16 surrogates", invalid({ "eda080edb080", "eda080edbfbf", "edadbfedb080", "edadbfedbfbf",
  "edae80edb080", "edae80edbfbf", "edafbfedb080", "edafbfedbfbf" }) }
do
  local t = { { true, hex("efbfbe") }, { true, hex("efbfbf") } }
  for _, z1 in ipairs({ "f0", "f1", "f2", "f3", "f4" }) do
    for _, z2 in ipairs({ "8f", "9f", "af", "bf" }) do
      if not (z1 == "f4" and z2 ~= "8f") then
        for _, z3 in ipairs({ "be", "bf" }) do
          local zz = z1 .. z2 .. "bf" .. z3
          if zz ~= "f08fbfbe" and zz ~= "f08fbfbf" then t[#t + 1] = { true, hex(zz) } end
        end
      end
    end
  end
  utf8_groups[#utf8_groups + 1] = { "non-character code points (valid UTF-8)", t }
end
do
  local t = {}
  for b = 0xb9, 0xbf do t[#t + 1] = { true, "\239\191" .. char(b) } end
  utf8_groups[#utf8_groups + 1] = { "Unicode specials (U+FFF9-U+FFFF)", t }
end
for gi, g in ipairs(utf8_groups) do
  for j, case in ipairs(g[2]) do
    local valid, s = case[1], case[2]
    local v = { id = "autobahn 6." .. (gi + 4) .. "." .. j,
      desc = g[1] .. ": " .. (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) .. (valid and " (valid: echoed)" or " (invalid: 1007)"),
      send = { text(s) } }
    if valid then v.expect = { ok_text(s) } else v.close = { 1007 } end
    add(v)
  end
end

-- ---- Autobahn 7: the close handshake ----
add({ id = "autobahn 7.1.1", desc = "a message, then a close: the echo, then the close",
  send = { text("Hello World!"), close(1000) }, expect = { ok_text("Hello World!") }, close = { 1000 } })
add({ id = "autobahn 7.1.2", desc = "two closes: one close back", send = { close(1000), close(1000) }, close = { 1000 } })
add({ id = "autobahn 7.1.3", desc = "a ping after the close: no pong", send = { close(1000), ping("Hello World!") }, close = { 1000 } })
add({ id = "autobahn 7.1.4", desc = "a text message after the close: no echo", send = { close(1000), text("Hello World!") }, close = { 1000 } })
add({ id = "autobahn 7.1.5", desc = "a fragment, a close, the last fragment: no message",
  send = { text("fragment1", false), close(1000), cont("fragment2") }, close = { 1000 } })
add({ id = "autobahn 7.1.6", desc = "a 256 KiB message, a message, a close, a ping in one write: both echoed in order, then the close, no pong",
  send = { text(rep("BAsd7&jh23", 26215) .. "BAsd7&", nil), text("Hello World!"), close(1000), ping("") },
  expect = { ok_text(rep("BAsd7&jh23", 26215) .. "BAsd7&"), ok_text("Hello World!") }, close = { 1000 } })
add({ id = "autobahn 7.3.1", desc = "a close without payload: a close back (no payload, or 1000)", send = { close() }, close = { 1005, 1000 } })
add({ id = "autobahn 7.3.2", desc = "a close with a 1-byte payload", send = { F({ OP.close, "0" }) }, close = { 1002 } })
add({ id = "autobahn 7.3.3", desc = "a close with code 1000 only", send = { close(1000) }, close = { 1000 } })
add({ id = "autobahn 7.3.4", desc = "a close with code and reason", send = { close(1000, "Hello World!") }, close = { 1000 } })
add({ id = "autobahn 7.3.5", desc = "a close with a reason of 123 bytes (the most a control frame carries)",
  send = { close(1000, rep("*", 123)) }, close = { 1000 } })
add({ id = "autobahn 7.3.6", desc = "a close with a reason of 124 bytes (a 126-byte control frame)",
  send = { close(1000, rep("*", 124)) }, close = { 1002 } })
add({ id = "autobahn 7.5.1", desc = "a close whose reason is not UTF-8", send = { close(1000, kosme_bad) }, close = { 1007 } })
for i, code in ipairs({ 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999 }) do
  add({ id = "autobahn 7.7." .. i, desc = "a close with valid code " .. code .. ": echoed (or 1000)",
    send = { close(code) }, close = { code, 1000 } })
end
for i, code in ipairs({ 0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999 }) do
  add({ id = "autobahn 7.9." .. i, desc = "a close with invalid code " .. code, send = { close(code) }, close = { 1002 } })
end
add({ id = "autobahn 7.13.1", desc = "a close with code 5000 (out of range; RFC 6455 7.4: 1002)", send = { close(5000) }, close = { 1002 } })
add({ id = "autobahn 7.13.2", desc = "a close with code 65535 (out of range; RFC 6455 7.4: 1002)", send = { close(65535) }, close = { 1002 } })

-- ---- Autobahn 9 (sizes, scaled to this table's time budget) and the max_message_size limit ----
local KiB, MiB = 1024, 1048576
for i, n in ipairs({ 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB }) do
  add({ id = "autobahn 9.1." .. i, desc = "text message of " .. n .. " bytes", send = { text(rep("*", n)) }, expect = { ok_text(rep("*", n)) } })
  add({ id = "autobahn 9.2." .. i, desc = "binary message of " .. n .. " bytes", send = { binary(rep("\254", n)) }, expect = { ok_binary(rep("\254", n)) } })
end
for i, n in ipairs({ 64, 256, 1 * KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, 1 * MiB }) do
  local s = rep("*", 1 * MiB)
  add({ id = "autobahn 9.3." .. i, desc = "1 MiB text message in fragments of " .. n .. " bytes (Autobahn: 4 MiB)",
    send = fragments(OP.text, s, n), expect = { ok_text(s) } })
  local b = rep("\254", 1 * MiB)
  add({ id = "autobahn 9.4." .. i, desc = "1 MiB binary message in fragments of " .. n .. " bytes (Autobahn: 4 MiB)",
    send = fragments(OP.binary, b, n), expect = { ok_binary(b) } })
end
for i, n in ipairs({ 64, 2048 }) do
  local id = i == 1 and "9.5.1" or "9.5.6"
  add({ id = "autobahn " .. id, desc = "1 MiB text message written in chops of " .. n .. " bytes",
    send = { text(rep("*", MiB)) }, write = n, expect = { ok_text(rep("*", MiB)) } })
  id = i == 1 and "9.6.1" or "9.6.6"
  add({ id = "autobahn " .. id, desc = "1 MiB binary message written in chops of " .. n .. " bytes",
    send = { binary(rep("\254", MiB)) }, write = n, expect = { ok_binary(rep("\254", MiB)) } })
end
local LIMIT = 1000
local lim = "/max/" .. LIMIT
add({ id = "limit 1", desc = "a text message of exactly max_message_size bytes: echoed", path = lim,
  send = { text(rep("a", LIMIT)) }, expect = { ok_text(rep("a", LIMIT)) } })
add({ id = "limit 2", desc = "a binary message of exactly max_message_size bytes: echoed", path = lim,
  send = { binary(rep("\0", LIMIT)) }, expect = { ok_binary(rep("\0", LIMIT)) } })
add({ id = "limit 3", desc = "a text message of max_message_size + 1 bytes: 1009", path = lim,
  send = { text(rep("a", LIMIT + 1)) }, close = { 1009 } })
add({ id = "limit 4", desc = "a binary message of max_message_size + 1 bytes: 1009", path = lim,
  send = { binary(rep("\0", LIMIT + 1)) }, close = { 1009 } })
add({ id = "limit 5", desc = "fragments adding up to exactly max_message_size: echoed", path = lim,
  send = fragments(OP.text, rep("b", LIMIT), LIMIT / 2), expect = { ok_text(rep("b", LIMIT)) } })
add({ id = "limit 6", desc = "fragments adding up to max_message_size + 1: 1009", path = lim,
  send = { text(rep("b", LIMIT / 2), false), cont(rep("b", LIMIT / 2 + 1)) }, close = { 1009 } })
add({ id = "limit 7", desc = "a frame announcing max_message_size + 1 fails at its header, before its payload is sent", path = lim,
  send = { { piece = text(rep("c", LIMIT + 1)), from = 0, to = 0 }, { wait_close = true } }, close = { 1009 } })
add({ id = "limit 8", desc = "control frames between fragments do not count toward max_message_size", path = lim,
  send = { text(rep("d", LIMIT / 2), false), ping(rep("p", 125)), cont(rep("d", LIMIT / 2)) },
  expect = { ok_pong(rep("p", 125)), ok_text(rep("d", LIMIT)) } })
add({ id = "limit 9", desc = "the limit is per message: two messages of max_message_size each are both echoed", path = lim,
  send = { text(rep("e", LIMIT)), binary(rep("f", LIMIT)) }, expect = { ok_text(rep("e", LIMIT)), ok_binary(rep("f", LIMIT)) } })
add({ id = "limit 10", desc = "many 1-byte fragments past max_message_size: 1009", path = lim,
  send = fragments(OP.binary, rep("g", LIMIT + 1), 1), close = { 1009 } })
add({ id = "limit 11", desc = "a frame announcing 2^63 - 1 bytes: 1009 at its header (the worker never buffers it)",
  send = { { piece = F({ OP.binary, "", len_raw = hex("7fffffffffffffff") }), from = 0, to = 0 }, { wait_close = true } }, close = { 1009 } })
add({ id = "limit 12", desc = "a message after a 1009 on another connection: the worker goes on (fresh connection)", path = lim,
  send = { text("still here") }, expect = { ok_text("still here") } })

-- ---- Autobahn 10 ----
add({ id = "autobahn 10.1.1", desc = "a 65536-byte text message in fragments of 1300 bytes",
  send = fragments(OP.text, rep("*", 65536), 1300), expect = { ok_text(rep("*", 65536)) } })

-- ---- RFC 6455, rules the Autobahn list does not name ----
add({ id = "rfc6455 5.7 a", desc = "the single-frame masked text example, byte for byte: \"Hello\"",
  send = { { raw = hex("818537fa213d7f9f4d5158") } }, expect = { ok_text("Hello") } })
add({ id = "rfc6455 5.7 b", desc = "the fragmented unmasked text example, masked (\"Hel\", \"lo\")",
  send = { text("Hel", false), cont("lo") }, expect = { ok_text("Hello") } })
add({ id = "rfc6455 5.7 c", desc = "the masked ping example: pong \"Hello\"",
  send = { { raw = hex("898537fa213d7f9f4d5158") } }, expect = { ok_pong("Hello") } })
add({ id = "rfc6455 5.7 d", desc = "256 bytes binary in one frame (16-bit length)", send = { binary(rep("\1", 256)) }, expect = { ok_binary(rep("\1", 256)) } })
add({ id = "rfc6455 5.1 a", desc = "an unmasked text frame from a client", send = { F({ OP.text, "Hello", mask = false }) }, close = { 1002 } })
add({ id = "rfc6455 5.1 b", desc = "an unmasked ping from a client", send = { F({ OP.ping, "Hello", mask = false }) }, close = { 1002 } })
add({ id = "rfc6455 5.1 c", desc = "an unmasked close from a client", send = { F({ OP.close, u16(1000), mask = false }) }, close = { 1002 } })
add({ id = "rfc6455 5.1 d", desc = "an unmasked continuation inside a masked message",
  send = { text("frag", false), F({ OP.cont, "ment", mask = false }) }, close = { 1002 } })
add({ id = "rfc6455 5.3", desc = "a masking key of four zero bytes is a mask like any other",
  send = { F({ OP.text, "zero key", key = "\0\0\0\0" }) }, expect = { ok_text("zero key") } })
add({ id = "rfc6455 5.2 a", desc = "a 5-byte payload with a 16-bit length field (not minimal: accepted, as most servers)",
  send = { F({ OP.text, "Hello", len_bytes = 2 }) }, expect = { ok_text("Hello") } })
add({ id = "rfc6455 5.2 b", desc = "a 5-byte payload with a 64-bit length field (not minimal: accepted)",
  send = { F({ OP.text, "Hello", len_bytes = 8 }) }, expect = { ok_text("Hello") } })
add({ id = "rfc6455 5.2 c", desc = "a 64-bit length with its most significant bit set",
  send = { { piece = F({ OP.binary, "", len_raw = hex("8000000000000000") }), from = 0, to = 0 }, { wait_close = true } }, close = { 1002 } })
add({ id = "rfc6455 5.2 d", desc = "a ping announcing 126 bytes with a 16-bit length (control frames: 7-bit lengths only)",
  send = { F({ OP.ping, rep("x", 126) }) }, close = { 1002 } })
add({ id = "rfc6455 5.4 a", desc = "a pong between fragments: taken, nothing answers it",
  send = { text("frag", false), pong("between"), cont("ment") }, expect = { ok_text("fragment") } })
add({ id = "rfc6455 5.4 b", desc = "a close between fragments: the close handshake, no message",
  send = { binary("frag", false), close(1001) }, close = { 1001, 1000 } })
add({ id = "rfc6455 5.4 c", desc = "a binary message in 100 fragments of 1 byte with a final empty continuation",
  send = (function()
    local t = fragments(OP.binary, rep("\7", 100), 1)
    t[#t].fin = false
    t[#t + 1] = cont("")
    return t
  end)(), expect = { ok_binary(rep("\7", 100)) } })
add({ id = "rfc6455 5.4 d", desc = "a binary message, then a text message, both fragmented, back to back",
  send = { binary("\1\2", false), cont("\3"), text("ab", false), cont("c") }, expect = { ok_binary("\1\2\3"), ok_text("abc") } })
add({ id = "rfc6455 5.5.1 a", desc = "a close whose reason is multi-byte UTF-8: its code echoed",
  send = { close(4001, kosme) }, close = { 4001, 1000 } })
add({ id = "rfc6455 5.5.1 b", desc = "data after the client's close is not answered (no echo, no pong)",
  send = { close(1000), text("late"), ping("late"), binary("late") }, close = { 1000 } })
add({ id = "rfc6455 5.6 a", desc = "binary data is not UTF-8-checked (invalid sequences echoed)",
  send = { binary(kosme_bad .. "\255\254") }, expect = { ok_binary(kosme_bad .. "\255\254") } })
add({ id = "rfc6455 5.6 b", desc = "text with NUL bytes and U+10FFFF is valid",
  send = { text("a\0b\244\143\191\191") }, expect = { ok_text("a\0b\244\143\191\191") } })
add({ id = "rfc6455 5.6 c", desc = "a ping payload is not UTF-8-checked", send = { ping("\255\254\237\160\128") }, expect = { ok_pong("\255\254\237\160\128") } })
add({ id = "rfc6455 7.4.1 a", desc = "a close with 1015 (reserved: never sent in a close frame)", send = { close(1015) }, close = { 1002 } })
add({ id = "rfc6455 7.4.1 b", desc = "a close with 1012 (registered with IANA since: accepted)", send = { close(1012) }, close = { 1012, 1000 } })
add({ id = "rfc6455 7.4.1 c", desc = "a close with 1014 (registered with IANA since: accepted)", send = { close(1014) }, close = { 1014, 1000 } })
add({ id = "rfc6455 7.4.2", desc = "a close with 3000, the first code of the registered range: echoed", send = { close(3000, "edge") }, close = { 3000, 1000 } })
add({ id = "rfc6455 8.1 a", desc = "a text message ending inside a UTF-8 sequence (complete frames, cut code point)",
  send = { text("abc\206") }, close = { 1007 } })
add({ id = "rfc6455 8.1 b", desc = "a code point split across fragments is valid", send = { text("\206", false), cont("\186") }, expect = { ok_text("\206\186") } })
add({ id = "rfc6455 8.1 c", desc = "a code point split across fragments and completed with a bad byte",
  send = { text("\206", false), cont("x") }, close = { 1007 } })
add({ id = "rfc6455 8.1 d", desc = "fragmented text whose last fragment leaves a sequence cut",
  send = { text("ab", false), cont("\226\130") }, close = { 1007 } })
add({ id = "rfc6455 7.1.1", desc = "the TCP connection half-closed without a close frame: the server ends it, without a close frame",
  send = { text("bye"), { shutdown = true } }, expect = { ok_text("bye") }, drop = true })
add({ id = "rfc6455 4.2.1", desc = "frames pipelined after the upgrade request, in the same write (sent before the 101 was read)",
  pipelined = true, send = { text("early"), ping("early") }, expect = { ok_text("early"), ok_pong("early") } })
add({ id = "rfc6455 5.2 e", desc = "garbage after the upgrade (an HTTP request as frames): 1002",
  send = { { raw = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" } }, close = { 1002 } })

-- ---- the close handshake started by the server, and the contract's idle_timeout / ping_interval
-- (the echo app: "/close-on-message" answers a message with ws:close(4002, "bye"), "/close-long"
-- with ws:close(4003, 100 times "\206\186"), "/idle" has
-- idle_timeout = 300 ms, "/ping" ping_interval = 200 ms) ----
add({ id = "rfc6455 7.1.2 a", desc = "the server closes after a message: the client's data after that close is not answered, the client's close ends the connection",
  path = "/close-on-message", send = { text("close me"), { wait_close = true }, text("ignored"), ping("ignored"), close(4002) },
  close = { 4002 } })
add({ id = "rfc6455 7.1.2 b", desc = "the server closes and the client never answers: the server ends the TCP connection by itself (close handshake timeout)",
  path = "/close-on-message", send = { text("close me") }, no_reply = true, close = { 4002 }, timeout = 15000 })
add({ id = "rfc6455 5.5.1 c", desc = "the server's ws:close(4003, reason) with a 200-byte reason of 2-byte characters: cut to fit 125 bytes at a character boundary (the reason stays UTF-8)",
  path = "/close-long", send = { text("close me") }, close = { 4003 }, close_reason = rep("\206\186", 61) })
add({ id = "timeout 1", desc = "idle_timeout: a frame that never ends (header and 3 bytes of its payload) does not keep the connection",
  path = "/idle", send = { { piece = text("never finished"), from = 0, to = 3 } }, close = { 1000, 1001, 1008, 1011 }, drop_ok = true })
add({ id = "timeout 2", desc = "idle_timeout: a connection that sends no frame at all is ended",
  path = "/idle", send = {}, close = { 1000, 1001, 1008, 1011 }, drop_ok = true })
add({ id = "timeout 3", desc = "idle_timeout counts pings: a client pinging every 150 ms outlives a 300 ms idle_timeout",
  path = "/idle", send = { ping("1"), { pause = 150 }, ping("2"), { pause = 150 }, ping("3"), { pause = 150 }, ping("4"),
    { pause = 150 }, text("alive") }, write = "frames",
  expect = { ok_pong("1"), ok_pong("2"), ok_pong("3"), ok_pong("4"), ok_text("alive") } })
add({ id = "timeout 4", desc = "ping_interval: the server pings (at least twice in 1 s) and a client that answers stays connected",
  path = "/ping", send = { { pause = 1000 }, text("still here") }, expect = { ok_text("still here") }, server_pings = 2 })

-- ---- RFC 7692 permessage-deflate (the client offers it, "/compress" turns the app's compress on;
-- RSV = 4 is RSV1, "compressed"); runs when the runtime has `compress` ----
local zc = zlib.compress
local function deflated(op, s, o)
  o = o or {}
  return F({ op, zc(s), rsv = 4, fin = o.fin })
end
local function pmd(v)
  v.compress = true
  v.path = v.path or "/compress"
  add(v)
end
pmd({ id = "rfc7692 7.2.3.1 a", desc = "the example compressed \"Hello\" in one frame", send = { F({ OP.text, hex("f248cdc9c90700"), rsv = 4 }) },
  expect = { ok_text("Hello") } })
pmd({ id = "rfc7692 7.2.3.1 b", desc = "the example compressed \"Hello\" in 2 fragments (RSV1 on the first only)",
  send = { F({ OP.text, hex("f248cd"), rsv = 4, fin = false }), cont(hex("c9c90700")) }, expect = { ok_text("Hello") } })
pmd({ id = "rfc7692 7.2.3.2", desc = "two compressed \"Hello\", the second using the first's window (the client keeps its context)",
  send = { F({ OP.text, hex("f248cdc9c90700"), rsv = 4 }), F({ OP.text, hex("f200110000"), rsv = 4 }) },
  expect = { ok_text("Hello"), ok_text("Hello") } })
pmd({ id = "rfc7692 7.2.3.3", desc = "\"Hello\" in a stored (uncompressed) DEFLATE block", send = { F({ OP.text, hex("000500faff48656c6c6f00"), rsv = 4 }) },
  expect = { ok_text("Hello") } })
pmd({ id = "rfc7692 7.2.3.4", desc = "\"Hello\" in a DEFLATE block with BFINAL set", send = { F({ OP.text, hex("f348cdc9c9070000"), rsv = 4 }) },
  expect = { ok_text("Hello") } })
pmd({ id = "rfc7692 7.2.3.5", desc = "\"Hello\" in two DEFLATE blocks", send = { F({ OP.text, hex("f24805000000ffffcac9c90700"), rsv = 4 }) },
  expect = { ok_text("Hello") } })
pmd({ id = "rfc7692 6 a", desc = "an uncompressed message on a compressing connection (RSV1 clear) is taken as is",
  send = { text("plain"), binary("\0\1") }, expect = { ok_text("plain"), ok_binary("\0\1") } })
pmd({ id = "rfc7692 6 b", desc = "a compressed binary message of 64 KiB and a 1 MiB text",
  send = { deflated(OP.binary, rep("\1\2\3\4", 16384)), deflated(OP.text, rep("luacluster ", 95326)) },
  expect = { ok_binary(rep("\1\2\3\4", 16384)), ok_text(rep("luacluster ", 95326)) } })
do
  local z = zc(rep("fragmented and compressed ", 1000))
  pmd({ id = "rfc7692 6.1", desc = "a compressed message in 3 fragments cut anywhere in the DEFLATE data",
    send = { F({ OP.text, z:sub(1, 10), rsv = 4, fin = false }), cont(z:sub(11, 20), false), cont(z:sub(21)) },
    expect = { ok_text(rep("fragmented and compressed ", 1000)) } })
end
pmd({ id = "rfc7692 6.1 c", desc = "RSV1 on a continuation frame", send = { deflated(OP.text, "ab", { fin = false }), F({ OP.cont, "", rsv = 4 }) },
  close = { 1002 } })
pmd({ id = "rfc7692 6.1 d", desc = "RSV1 on a ping", send = { F({ OP.ping, "x", rsv = 4 }) }, close = { 1002 } })
pmd({ id = "rfc7692 6.1 e", desc = "RSV2 on a compressed message (only RSV1 is negotiated)", send = { F({ OP.text, zc("x"), rsv = 6 }) }, close = { 1002 } })
pmd({ id = "rfc7692 8 a", desc = "compressed text that inflates to invalid UTF-8", send = { deflated(OP.text, "ok \237\160\128") }, close = { 1007 } })
pmd({ id = "rfc7692 8 b", desc = "compressed binary that inflates to invalid UTF-8 is fine", send = { deflated(OP.binary, "ok \237\160\128") },
  expect = { ok_binary("ok \237\160\128") } })
pmd({ id = "rfc7692 8 c", desc = "data that is not DEFLATE (a reserved block type)", send = { F({ OP.binary, "\255\255\255", rsv = 4 }) },
  close = { 1002, 1007 } })
pmd({ id = "rfc7692 limit 1", desc = "a compressed message inflating to exactly max_message_size: echoed", path = "/compress/max/1000",
  send = { deflated(OP.text, rep("z", 1000)) }, expect = { ok_text(rep("z", 1000)) } })
pmd({ id = "rfc7692 limit 2", desc = "a compressed message inflating to max_message_size + 1: 1009", path = "/compress/max/1000",
  send = { deflated(OP.text, rep("z", 1001)) }, close = { 1009 } })
pmd({ id = "rfc7692 limit 3", desc = "a 'zip bomb': 1 KB compressed inflating to 10 MiB of zeros under max_message_size 1000: 1009, the worker never inflates it all",
  path = "/compress/max/1000", send = { deflated(OP.binary, rep("\0", 10 * 1048576)) }, close = { 1009 } })
for _, c in ipairs({ { 1, 16 }, { 2, 64 }, { 3, 256 }, { 4, 1024 }, { 5, 4096 }, { 9, 65536 } }) do
  local i, n = c[1], c[2]
  local send, expect = {}, {}
  for k = 1, 10 do
    local msg = rep(string.char(97 + k), n - 8) .. ("%08d"):format(k)
    send[#send + 1] = deflated(OP.text, msg)
    expect[#expect + 1] = ok_text(msg)
  end
  pmd({ id = "autobahn 12.1." .. i, desc = "10 compressed text messages of " .. n .. " bytes (Autobahn: 1000 each)",
    send = send, expect = expect })
end

M.vectors = V
M.OP = OP
return M
