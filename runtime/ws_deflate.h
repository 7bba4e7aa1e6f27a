/* ws_deflate.h: permessage-deflate (RFC 7692) on zlib, pure C, no sockets (ws_deflate.c). */
#ifndef LC_WS_DEFLATE_H
#define LC_WS_DEFLATE_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/* what the handshake negotiated (luacluster.ws.handshake) */
typedef struct lc_ws_pmd_params {
  int server_no_context_takeover;  /* the server resets its compressor per message */
  int client_no_context_takeover;  /* the client does: the server resets its decompressor per message */
  int server_max_window_bits;      /* 8..15 */
  int client_max_window_bits;      /* 8..15 */
  int level;                       /* zlib's 0..9 */
  int mem_level;                   /* zlib's 1..9, for a socket's own compressor */
} lc_ws_pmd_params;

typedef struct lc_ws_pmd lc_ws_pmd;   /* one WebSocket's compression state */

/* NULL when out of memory; the zlib streams are made when first needed */
lc_ws_pmd *lc_ws_pmd_new(const lc_ws_pmd_params *p);
void lc_ws_pmd_free(lc_ws_pmd *d);    /* the one place a socket's streams are freed; NULL is fine */

/* Inflates one compressed message (its frames' payloads, joined; 00 00 ff ff appended here) into
 * out (emptied first), never letting out hold more than max bytes (0: no limit) plus one: a
 * message that would inflate past max stops there. text: validated as UTF-8, failing at the first
 * bad byte. Returns 0, or the close code with *err: 1009 (over max), 1007 (not deflate data, or
 * invalid UTF-8), 1011 (out of memory). */
int lc_ws_pmd_inflate(lc_ws_pmd *d, const unsigned char *p, size_t n, uint64_t max, int text, lc_buf *out,
                      const char **err);

/* Compresses one message into out (emptied first): the payload of a frame with RSV1 set (the
 * trailing 00 00 ff ff removed). Returns 0 or a negative UV_E* code. */
int lc_ws_pmd_deflate(lc_ws_pmd *d, const unsigned char *p, size_t n, lc_buf *out);

/* bytes a socket's own zlib streams hold now (for the docs' and specs' memory figures) */
size_t lc_ws_pmd_stream_bytes(const lc_ws_pmd *d);

#endif
