/* fuzz_http_client.c: fuzz target for the HTTP client's reading of a response: http_head.c in
 * response mode and http_body.c's framings of a response body (Content-Length, chunked, the
 * close). Pure functions: no loop, no Lua, no allocation. Input: byte 0 selects the delivery,
 * the rest is what a server sends on one connection.
 *   bit 0-1  bytes per read: 1, 7, 100, or all at once
 *   bit 2    the request was HEAD (no body whatever the head says)
 *   bit 3    small limits (a head of 256 bytes, a body of 512) instead of 64 KiB and 1 MiB
 * Checks (a failed one traps): a head read in pieces gets the verdict and length it gets read
 * whole (the size limit aside: where a read ends moves that verdict); a complete head has a
 * status in 100..599 and a fault has a reason; the body framer's offsets stay inside what it
 * was given and its data never passes max_body; heads follow 1xx heads as the client reads
 * them. */
#include "../http_body.h"
#include "../http_head.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static lc_http_head whole, piece;   /* large: not on the stack */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned mode = data[0];
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  static const size_t steps[4] = {1, 7, 100, SIZE_MAX};
  size_t step = steps[mode & 3];
  size_t limit = mode & 8 ? 256 : 65536;
  uint64_t max_body = mode & 8 ? 512 : 1048576;
  size_t off = 0;
  for (int heads = 0; heads < 16 && off < n; heads++) {
    const char *h = p + off;
    size_t left = n - off, wlen = 0, plen = 0, got = 0;
    lc_http_response_init(&whole);
    int wst = lc_http_head_parse(h, left, limit, &whole, &wlen);
    lc_http_response_init(&piece);
    int pst = 0;
    while (got < left) {
      got = step >= left - got ? left : got + step;
      pst = lc_http_head_parse(h, got, limit, &piece, &plen);
      if (pst != 0 || plen != 0) break;
    }
    if (wst != 431 && pst != 431) {
      CHECK(wst == pst && wlen == plen);
      CHECK(whole.why == piece.why);
    }
    if (wst != 0) {
      CHECK(wst == 400 || wst == 431);
      CHECK(wst == 431 || whole.why != NULL || memchr(h, '\r', left) != NULL);
      return 0;
    }
    if (wlen == 0) return 0;                       /* the head never ended */
    CHECK(wlen <= left && whole.status >= 100 && whole.status <= 599);
    off += wlen;
    if (whole.status < 200) continue;              /* an interim answer: the next head */
    if (mode & 4 || whole.status == 204 || whole.status == 304) return 0;
    lc_http_body b;
    if (whole.has_transfer_encoding) {
      CHECK(whole.minor == 1 && !whole.has_content_length);
      CHECK(lc_http_body_init(&b, 1, 0, max_body) == LC_HTTP_BODY_MORE);
    } else if (whole.has_content_length) {
      if (lc_http_body_init(&b, 0, whole.content_length, max_body) == 413) {
        CHECK(whole.content_length > max_body);
        return 0;
      }
    } else {
      lc_http_body_init_close(&b);
    }
    uint64_t total = 0;
    int done = 0;
    for (size_t at = off; at < n && !done;) {
      size_t chunk = step >= n - at ? n - at : step, used = 0;
      while (used < chunk) {
        size_t u, doff, dlen;
        int st = lc_http_body_frame(&b, p + at + used, chunk - used, max_body, limit, &u, &doff, &dlen);
        if (st != LC_HTTP_BODY_MORE && st != LC_HTTP_BODY_DONE) {
          CHECK(st == 400 || st == 413 || st == 431);
          return 0;
        }
        CHECK(u <= chunk - used && (dlen == 0 || doff + dlen <= u));
        CHECK(st == LC_HTTP_BODY_DONE || u > 0);   /* progress on the bytes it was given */
        total += dlen;
        CHECK(total <= max_body);
        used += u;
        if (st == LC_HTTP_BODY_DONE) {
          done = 1;
          break;
        }
      }
      at += used;
    }
    if (done && whole.has_content_length) CHECK(total == whole.content_length);
    return 0;
  }
  return 0;
}
