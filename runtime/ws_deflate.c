/* ws_deflate.c: permessage-deflate (RFC 7692) on zlib, for ws_conn.c. Raw deflate streams with
 * the negotiated window bits; a message is inflated whole (its compressed frames joined by
 * ws_conn.c) with 00 00 ff ff appended (7.2.2), bounded by max_message_size while it inflates, and
 * a text message is checked as UTF-8 as it comes out; a message sent is deflated with a sync flush
 * whose 00 00 ff ff is cut off (7.2.1).
 * Owns: a socket's own streams (lc_ws_pmd: an inflater when the client keeps its context, a
 * deflater when the server keeps its own), made when first needed and freed by lc_ws_pmd_free,
 * the one place. A side without context takeover needs no stream of its own: it uses this
 * process's shared stream for its window bits (and level), reset before each message; those live
 * as long as the process (the loop's thread is the only one that calls this file). */
#include "ws_deflate.h"
#include "ws_frame.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <zlib.h>

struct lc_ws_pmd {
  lc_ws_pmd_params p;
  z_stream *inf, *def;   /* this socket's own, or NULL (none yet, or it uses a shared one) */
  size_t bytes;          /* what zlib allocated for inf and def */
};

static const unsigned char TAIL[4] = { 0x00, 0x00, 0xff, 0xff };

/* zlib's allocations, counted into the size_t the stream's opaque points to */
static voidpf count_alloc(voidpf opaque, uInt items, uInt size) {
  if (size && items > (SIZE_MAX - 16) / size) return Z_NULL;
  size_t n = (size_t)items * size;
  size_t *m = malloc(16 + n);
  if (m == NULL) return Z_NULL;
  m[0] = n;
  if (opaque) *(size_t *)opaque += n;
  return (char *)m + 16;
}

static void count_free(voidpf opaque, voidpf addr) {
  if (addr == Z_NULL) return;
  size_t *m = (size_t *)((char *)addr - 16);
  if (opaque) *(size_t *)opaque -= m[0];
  free(m);
}

static z_stream *stream_new(size_t *counter) {
  z_stream *z = calloc(1, sizeof *z);
  if (z == NULL) return NULL;
  z->zalloc = count_alloc;
  z->zfree = count_free;
  z->opaque = counter;
  return z;
}

static z_stream *inflater_new(size_t *counter, int bits) {
  z_stream *z = stream_new(counter);
  if (z == NULL) return NULL;
  /* a bigger window than the client's is always right: 9 at least (some deflaters use 9 for 8) */
  if (inflateInit2(z, -(bits < 9 ? 9 : bits)) != Z_OK) { free(z); return NULL; }
  return z;
}

/* zlib's raw deflate takes no 8 bits: 9 is right for 8 too, since zlib never reaches further back
 * than its window less MIN_LOOKAHEAD (262): 250 bytes with 9 bits, inside a 256-byte window */
static z_stream *deflater_new(size_t *counter, int bits, int level, int mem_level) {
  if (bits < 9) bits = 9;
  z_stream *z = stream_new(counter);
  if (z == NULL) return NULL;
  if (deflateInit2(z, level, Z_DEFLATED, -bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) { free(z); return NULL; }
  return z;
}

/* ---- this process's shared streams, for sides without context takeover ---- */

static z_stream *shared_inf[16];        /* by window bits */
static z_stream *shared_def[16][10];    /* by window bits and level */

static z_stream *inflater_of(lc_ws_pmd *d) {
  int bits = d->p.client_max_window_bits < 9 ? 9 : d->p.client_max_window_bits;
  if (d->p.client_no_context_takeover) {
    if (shared_inf[bits] == NULL) shared_inf[bits] = inflater_new(NULL, bits);
    if (shared_inf[bits] && inflateReset(shared_inf[bits]) != Z_OK) return NULL;
    return shared_inf[bits];
  }
  if (d->inf == NULL) d->inf = inflater_new(&d->bytes, bits);
  return d->inf;
}

static z_stream *deflater_of(lc_ws_pmd *d) {
  int bits = d->p.server_max_window_bits, level = d->p.level;
  if (d->p.server_no_context_takeover) {
    if (shared_def[bits][level] == NULL) shared_def[bits][level] = deflater_new(NULL, bits, level, 8);
    if (shared_def[bits][level] && deflateReset(shared_def[bits][level]) != Z_OK) return NULL;
    return shared_def[bits][level];
  }
  if (d->def == NULL) d->def = deflater_new(&d->bytes, bits, level, d->p.mem_level);
  return d->def;
}

lc_ws_pmd *lc_ws_pmd_new(const lc_ws_pmd_params *p) {
  if (p->server_max_window_bits < 8 || p->server_max_window_bits > 15 || p->client_max_window_bits < 8 ||
      p->client_max_window_bits > 15 || p->level < 0 || p->level > 9 || p->mem_level < 1 || p->mem_level > 9)
    return NULL;
  lc_ws_pmd *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->p = *p;
  return d;
}

void lc_ws_pmd_free(lc_ws_pmd *d) {
  if (d == NULL) return;
  if (d->inf) { inflateEnd(d->inf); free(d->inf); }
  if (d->def) { deflateEnd(d->def); free(d->def); }
  free(d);
}

size_t lc_ws_pmd_stream_bytes(const lc_ws_pmd *d) {
  return d->bytes + (d->inf ? sizeof(z_stream) : 0) + (d->def ? sizeof(z_stream) : 0);
}

/* ---- inflate ---- */

static int inflate_fail(z_stream *z, const char **err, int code, const char *why) {
  inflateReset(z);   /* the connection closes; a shared stream must be clean for the next socket */
  *err = why;
  return code;
}

int lc_ws_pmd_inflate(lc_ws_pmd *d, const unsigned char *p, size_t n, uint64_t max, int text, lc_buf *out,
                      const char **err) {
  out->len = 0;
  size_t limit = max == 0 || max >= LC_BUF_NO_CAP ? LC_BUF_NO_CAP - 1 : (size_t)max;
  lc_buf_set_max(out, limit + 1);   /* one byte past max tells "too big" */
  /* no bytes at all: the empty message (7.2.3.6's is 0x00); the tail alone would leave the
   * stream inside a stored block's header */
  if (n == 0) return 0;
  z_stream *z = inflater_of(d);
  if (z == NULL) { *err = "out of memory"; return 1011; }
  lc_utf8 u;
  lc_utf8_init(&u);
  /* the message, then the tail; size_t lengths fed to zlib's uInt in pieces */
  const unsigned char *parts[2] = { p, TAIL };
  size_t lens[2] = { n, sizeof TAIL };
  for (int i = 0; i < 2; i++) {
    const unsigned char *in = parts[i];
    size_t left = lens[i];
    z->next_in = (Bytef *)in;
    z->avail_in = 0;
    for (;;) {
      if (z->avail_in == 0) {
        if (left == 0) break;
        z->avail_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
        left -= z->avail_in;
      }
      if (lc_buf_room(out) == 0) {
        /* the first guess: 4 times the input, then doubling, never past limit + 1 */
        size_t want = out->cap ? 1 : (n > (SIZE_MAX - 4096) / 4 ? SIZE_MAX : 4 * n + 4096);
        if (want > limit + 1) want = limit + 1;
        if (lc_buf_reserve(out, want) != 0) return inflate_fail(z, err, 1011, "out of memory");
      }
      size_t room = lc_buf_room(out);
      z->next_out = (Bytef *)lc_buf_end(out);
      z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
      uInt before = z->avail_out;
      int r = inflate(z, Z_SYNC_FLUSH);
      size_t got = before - z->avail_out;
      if (text && lc_utf8_feed(&u, (unsigned char *)lc_buf_end(out), got) < 0)
        return inflate_fail(z, err, 1007, "invalid UTF-8 in a text message");
      out->len += got;
      if (out->len > limit) return inflate_fail(z, err, 1009, "message over max_message_size once inflated");
      if (r == Z_STREAM_END) {
        /* a final block (BFINAL, 7.2.3.4): what follows it, the tail included, starts a new
         * stream (7.2.3.4's trailing 0x00 is an empty stored block's header) */
        if (inflateReset(z) != Z_OK) return inflate_fail(z, err, 1011, "inflate");
        continue;
      }
      if (r == Z_MEM_ERROR) return inflate_fail(z, err, 1011, "out of memory");
      if (r != Z_OK && r != Z_BUF_ERROR) return inflate_fail(z, err, 1007, "invalid deflate data");
      /* Z_BUF_ERROR: no progress, so either no input is left or the output is full */
      if (z->avail_in == 0 && left == 0 && z->avail_out > 0) break;
    }
  }
  if (text && !lc_utf8_complete(&u)) return inflate_fail(z, err, 1007, "text message ends inside a UTF-8 sequence");
  return 0;
}

/* ---- deflate ---- */

int lc_ws_pmd_deflate(lc_ws_pmd *d, const unsigned char *p, size_t n, lc_buf *out) {
  out->len = 0;
  z_stream *z = deflater_of(d);
  if (z == NULL) return UV_ENOMEM;
  size_t left = n;
  z->next_in = (Bytef *)p;
  z->avail_in = 0;
  for (;;) {
    if (z->avail_in == 0 && left > 0) {
      z->avail_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
      left -= z->avail_in;
    }
    int flush = left == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    if (lc_buf_room(out) < 64) {
      size_t want = out->cap ? out->cap : n / 2 + 64;
      int r = lc_buf_reserve(out, want);
      if (r != 0) return r;
    }
    size_t room = lc_buf_room(out);
    z->next_out = (Bytef *)lc_buf_end(out);
    z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
    uInt before = z->avail_out;
    int r = deflate(z, flush);
    out->len += before - z->avail_out;
    if (r != Z_OK && r != Z_BUF_ERROR) return UV_EINVAL;
    if (flush == Z_SYNC_FLUSH && z->avail_in == 0 && z->avail_out > 0) break;
  }
  /* an empty message right after another: zlib has nothing to flush; 0x00 is the empty
   * message (7.2.3.6): an empty stored block's header, with the tail the receiver adds */
  if (out->len == 0) {
    out->data[0] = 0x00;
    out->len = 1;
    return 0;
  }
  /* a sync flush ends with an empty stored block: its 00 00 ff ff is not sent (7.2.1) */
  if (out->len < 4 || memcmp(out->data + out->len - 4, TAIL, 4) != 0) return UV_EINVAL;
  out->len -= 4;
  return 0;
}
