/* ws_frame.h: the RFC 6455 frame codec (ws_frame.c), pure C, no sockets. */
#ifndef LC_WS_FRAME_H
#define LC_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum { LC_WS_CONT = 0x0, LC_WS_TEXT = 0x1, LC_WS_BINARY = 0x2, LC_WS_CLOSE = 0x8, LC_WS_PING = 0x9, LC_WS_PONG = 0xA };
enum { LC_WS_RSV1 = 0x40, LC_WS_RSV2 = 0x20, LC_WS_RSV3 = 0x10 };
#define LC_WS_MAX_HEADER 14  /* client header: 2 + 8 (length) + 4 (mask) */

/* incremental UTF-8 validation: `need` continuation bytes still due, the next one in [lo, hi] */
typedef struct lc_utf8 { unsigned need; unsigned char lo, hi; } lc_utf8;
void lc_utf8_init(lc_utf8 *u);
int lc_utf8_feed(lc_utf8 *u, const unsigned char *p, size_t n);  /* 0 ok so far, -1 invalid */
int lc_utf8_complete(const lc_utf8 *u);                           /* 1 when no sequence is cut */

/* what lc_ws_next found: a data frame's (part of a message, `fin` ends it) or a control frame */
typedef struct lc_ws_event {
  unsigned opcode;        /* LC_WS_TEXT/BINARY (the message's, also for continuations), PING, PONG, CLOSE */
  int fin;                /* data: this frame ends the message */
  unsigned rsv;           /* the frame's RSV bits (only those the parser allows) */
  unsigned msg_rsv;       /* data: the RSV bits of the message's first frame (RSV1: compressed) */
  unsigned char *data;    /* the payload, unmasked in place in the caller's buffer */
  size_t len;
  uint16_t close_code;    /* CLOSE: the peer's code, 1005 when it sent none; on error: the code to close with */
  const unsigned char *reason; size_t reason_len;  /* CLOSE: the peer's reason (valid UTF-8) */
  const char *err;        /* on error: why, for the log */
} lc_ws_event;

typedef struct lc_ws_parser {
  unsigned rsv_allowed;   /* RSV bits an extension negotiated (LC_WS_RSV1 for permessage-deflate) */
  uint64_t max_message;   /* bytes; a message (or frame) announcing more fails with 1009; 0 no limit */
  /* the message in progress */
  unsigned msg_opcode;    /* 0 none */
  unsigned msg_rsv;       /* the RSV bits of its first frame */
  uint64_t msg_len;
  lc_utf8 utf8;
  /* the frame in progress (header parsed, payload not all there yet) */
  int have_header;
  unsigned fin, rsv, opcode;
  uint64_t len;
  size_t header_len;
  unsigned char mask[4];
  uint64_t done;          /* payload bytes already unmasked (and validated) */
} lc_ws_parser;

void lc_ws_parser_init(lc_ws_parser *ps, uint64_t max_message, unsigned rsv_allowed);
/* Reads one frame at the start of p[0..n). The caller hands the same unconsumed bytes again
 * (grown, possibly moved) after a 0. Returns the bytes the frame took (ev filled), 0 when more are
 * needed (what is there has been checked already: an invalid UTF-8 byte fails before the frame
 * ends), or -1 with ev->close_code and ev->err: the connection must be closed with that code.
 * The payload is unmasked in place. */
long long lc_ws_next(lc_ws_parser *ps, unsigned char *p, size_t n, lc_ws_event *ev);

/* RFC 6455 7.4: a code a peer may send in a close frame */
int lc_ws_close_code_valid(unsigned code);
/* a server frame's header (unmasked) into out (at least 10 bytes); returns its size */
size_t lc_ws_frame_header(unsigned char *out, int fin, unsigned rsv, unsigned opcode, uint64_t len);
/* XOR with a mask, `offset` bytes into the payload */
void lc_ws_unmask(unsigned char *p, size_t n, const unsigned char mask[4], uint64_t offset);

#endif
