/* fuzz_ws.c: fuzz target for a WebSocket's connection path: runtime/ws_conn.c (input,
 * backpressure, close handshake, the end), ws_frame.c (the codec), ws_deflate.c (inflate,
 * deflate) and lua/luacluster/ws/socket.lua with handlers. The harness sends a valid upgrade,
 * then the input's bytes as the client's frames (the fuzzer learns to mask them; the seeds are
 * masked); what comes back is checked to be the 101 and then well-formed server frames
 * (unmasked, known opcodes, control frames whole and <= 125 bytes, RSV1 only when
 * permessage-deflate was negotiated, uncompressed text UTF-8, valid close codes, nothing after
 * the close), and the connection must end once the client has closed.
 * Input: byte 0 selects how it is delivered, the rest is the client's frames.
 *   bit 0-1  write size: 1, 13, 200 bytes or all at once, with a loop turn between writes
 *   bit 2    the client half-closes right after its last byte (else only once it is idle)
 *   bit 3    the client reads nothing until it has written everything (backpressure)
 *   bit 4-5  the handler: /echo (ws:receive loop), /on (message handler: "close" closes,
 *            "ping" pings, "bye" raises), /hold (handlers that wait a turn), /drop (returns:
 *            closed with 1000)
 *   bit 6    the client offers permessage-deflate (client_max_window_bits; the server accepts)
 *   bit 7    the handler waits 2 ms before it accepts (frames and the EOF arrive first) */
#include "fuzz_common.h"
#include "../ws_frame.h"

static lua_State *L;
static lc_rt *rt;

static const char INIT[] =
  "local http = require('luacluster.http')\n"
  "require('luacluster.log').error = function() end\n"
  "local timer = require('luacluster.timer')\n"
  "local server = http.create_server(function(req, res)\n"
  "  local p = req.path\n"
  "  if req.query == 'late' then timer.sleep(2) end\n"
  "  local ws = req:websocket({ max_message_size = 4096, compress = true, protocols = { 'x' } })\n"
  "  if not ws then return end\n"
  "  ws:on('close', function(code, reason) ws:send('after') ws:close() end)\n"
  "  if p == '/on' then\n"
  "    ws:on('message', function(data, kind)\n"
  "      if data == 'close' then ws:close(4000, data) elseif data == 'ping' then ws:ping(data)\n"
  "      elseif data == 'bye' then error('fuzz: a message handler that raises') end\n"
  "      ws:send(data, kind)\n"
  "    end)\n"
  "  elseif p == '/hold' then\n"
  "    ws:on('message', function(data, kind) timer.sleep(0) ws:send(data, kind) end)\n"
  "  elseif p == '/echo' then\n"
  "    local data, kind = ws:receive()\n"
  "    while data do ws:send(data, kind) data, kind = ws:receive() end\n"
  "  end\n"
  "end, { max_header_size = 2048 })\n"
  "assert(server._srv:sink(1, true))\n"
  "function fuzz_open_conns() return server:stats().connections > 0 end\n";

static void init(void) {
  L = fuzz_lua_new(INIT);
  rt = lc_rt_get(L);
}

/* ---- the output checker ---- */

static int bad(const char *why, size_t at, const char *p, size_t n) {
  fprintf(stderr, "fuzz_ws: %s at byte %zu of %zu\n", why, at, n);
  for (size_t i = at; i < n && i < at + 64; i++) fprintf(stderr, "%02x ", (unsigned char)p[i]);
  fprintf(stderr, "\n");
  abort();
  return 0;
}

/* what came back: the 101, then server frames (the last may be cut short) */
static void check_output(const char *p, size_t n, int deflate) {
  static const char ok101[] = "HTTP/1.1 101 ";
  if (n < sizeof ok101 - 1) return;
  if (memcmp(p, ok101, sizeof ok101 - 1) != 0) bad("not a 101", 0, p, n);
  const char *he = memmem(p, n, "\r\n\r\n", 4);
  if (he == NULL) return;
  size_t off = (size_t)(he + 4 - p);
  int closed = 0, in_msg = 0, msg_text = 0, msg_z = 0;
  lc_utf8 u;
  lc_utf8_init(&u);
  while (off < n) {
    const unsigned char *f = (const unsigned char *)p + off;
    size_t left = n - off;
    if (left < 2) return;
    if (closed) bad("a frame after the close", off, p, n);
    unsigned fin = f[0] >> 7, rsv = f[0] & 0x70, op = f[0] & 0x0F;
    if (f[1] & 0x80) bad("a masked server frame", off, p, n);
    uint64_t len = f[1] & 0x7F;
    size_t hl = 2;
    if (len == 126) {
      if (left < 4) return;
      len = ((uint64_t)f[2] << 8) | f[3];
      hl = 4;
    } else if (len == 127) {
      if (left < 10) return;
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
      hl = 10;
    }
    if (left - hl < len) return;
    const unsigned char *pl = f + hl;
    int control = op >= 8;
    if (op != 0 && op != 1 && op != 2 && op != 8 && op != 9 && op != 10) bad("an unknown opcode", off, p, n);
    if (rsv & ~0x40) bad("RSV2/3 set", off, p, n);
    if (rsv && (!deflate || control || op == 0)) bad("RSV1 where it may not be", off, p, n);
    if (control && (!fin || len > 125)) bad("a fragmented or long control frame", off, p, n);
    if (!control) {
      if (op == 0 && !in_msg) bad("a continuation outside a message", off, p, n);
      if (op != 0 && in_msg) bad("a message inside a message", off, p, n);
      if (op != 0) { msg_text = op == 1; msg_z = rsv != 0; lc_utf8_init(&u); }
      if (msg_text && !msg_z && lc_utf8_feed(&u, pl, (size_t)len) < 0) bad("text that is not UTF-8", off, p, n);
      in_msg = !fin;
      if (fin && msg_text && !msg_z && !lc_utf8_complete(&u)) bad("text that ends inside a UTF-8 sequence", off, p, n);
    }
    if (op == 8) {
      if (len == 1) bad("a close payload of 1 byte", off, p, n);
      if (len >= 2) {
        unsigned code = ((unsigned)pl[0] << 8) | pl[1];
        if (!lc_ws_close_code_valid(code)) bad("a close code not to be sent", off, p, n);
        lc_utf8 r;
        lc_utf8_init(&r);
        if (lc_utf8_feed(&r, pl + 2, (size_t)len - 2) < 0 || !lc_utf8_complete(&r)) bad("a close reason not UTF-8", off, p, n);
      }
      closed = 1;
    }
    off += hl + (size_t)len;
  }
}

/* ---- the driver ---- */

#define OUT_CAP (8u << 20)
static char out[OUT_CAP];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const paths[4] = {"/echo", "/on", "/hold", "/drop"};
  if (size < 1) return 0;
  if (L == NULL) init();
  unsigned flags = data[0];
  data++;
  size--;
  char head[512];
  int hn = snprintf(head, sizeof head,
                    "GET %s%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                    paths[(flags >> 4) & 3], flags & 128 ? "?late" : "",
                    flags & 64 ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
  uint8_t *in = malloc((size_t)hn + size + 1);
  if (in == NULL) abort();
  memcpy(in, head, (size_t)hn);
  if (size) memcpy(in + hn, data, size);
  size += (size_t)hn;
  size_t out_len;
  fuzz_play(rt, L, "fuzz_ws", flags, in, size, out, OUT_CAP, &out_len);
  free(in);
  if (getenv("FUZZ_WS_SHOW")) fprintf(stderr, "%zu bytes back\n", out_len);
  if (out_len < OUT_CAP) check_output(out, out_len, (flags & 64) != 0);
  return 0;
}
