/* test_ws_deflate.c: checks of permessage-deflate (ws_deflate.c) with RFC 7692's own examples
 * (7.2.3) and one case per rule, run by spec/ws_deflate_codec_spec.lua one case at a time:
 * `test_ws_deflate CASE` prints "ok CASE" and exits 0, or names the failed check and exits 1. */
#include "../ws_deflate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

static lc_ws_pmd *pmd(int snct, int cnct, int sbits, int cbits) {
  lc_ws_pmd_params p = {snct, cnct, sbits, cbits, 6, 8};
  lc_ws_pmd *d = lc_ws_pmd_new(&p);
  CHECK(d != NULL);
  return d;
}

/* inflates and compares; returns the close code (0: inflated to want) */
static int inflate_is(lc_ws_pmd *d, const void *in, size_t n, const char *want, size_t wlen) {
  lc_buf out;
  lc_buf_init(&out, 0);
  const char *err = NULL;
  int code = lc_ws_pmd_inflate(d, in, n, 1 << 20, 1, &out, &err);
  if (code == 0) {
    CHECK(out.len == wlen);
    CHECK(wlen == 0 || memcmp(out.data, want, wlen) == 0);
  } else {
    CHECK(err != NULL);
  }
  lc_buf_free(&out);
  return code;
}

static void deflate_is(lc_ws_pmd *d, const char *in, const unsigned char *want, size_t wlen) {
  lc_buf out;
  lc_buf_init(&out, 0);
  CHECK(lc_ws_pmd_deflate(d, (const unsigned char *)in, strlen(in), &out) == 0);
  CHECK(out.len == wlen && memcmp(out.data, want, wlen) == 0);
  lc_buf_free(&out);
}

static void t_rfc_examples(void) {
  lc_ws_pmd *d = pmd(1, 0, 15, 15);
  /* 7.2.3.1: "Hello" in one frame, and the same bytes split over two frames (joined by ws_conn.c) */
  const unsigned char hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
  CHECK(inflate_is(d, hello, sizeof hello, "Hello", 5) == 0);
  /* 7.2.3.2: the same message twice with context takeover: the second refers to the first */
  const unsigned char again[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
  CHECK(inflate_is(d, again, sizeof again, "Hello", 5) == 0);
  /* 7.2.3.3: a DEFLATE block with no compression */
  const unsigned char stored[] = { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00 };
  CHECK(inflate_is(d, stored, sizeof stored, "Hello", 5) == 0);
  /* 7.2.3.4: a block with BFINAL set; the stream starts again for the next message */
  const unsigned char final[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00 };
  CHECK(inflate_is(d, final, sizeof final, "Hello", 5) == 0);
  CHECK(inflate_is(d, hello, sizeof hello, "Hello", 5) == 0);
  /* 7.2.3.5: two DEFLATE blocks in one message */
  const unsigned char two[] = { 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00 };
  CHECK(inflate_is(d, two, sizeof two, "Hello", 5) == 0);
  /* 7.2.3.6: an empty message, as the single byte 0x00, and as no bytes at all */
  const unsigned char empty[] = { 0x00 };
  CHECK(inflate_is(d, empty, sizeof empty, "", 0) == 0);
  lc_ws_pmd_free(d);
  /* writing: 7.2.3.1's bytes, then 7.2.3.2's with context takeover, 7.2.3.1's again without */
  lc_ws_pmd *keep = pmd(0, 0, 15, 15), *reset = pmd(1, 0, 15, 15);
  deflate_is(keep, "Hello", hello, sizeof hello);
  deflate_is(keep, "Hello", again, sizeof again);
  deflate_is(reset, "Hello", hello, sizeof hello);
  deflate_is(reset, "Hello", hello, sizeof hello);
  const unsigned char nothing[] = { 0x00 };
  deflate_is(reset, "", nothing, sizeof nothing);
  /* an empty message after another with context takeover (zlib has nothing to flush there), and
   * the next message still inflates in the same stream: "Hello" 10 bytes back */
  deflate_is(keep, "", nothing, sizeof nothing);
  const unsigned char third[] = { 0x02, 0x13, 0x00, 0x00 };
  deflate_is(keep, "Hello", third, sizeof third);
  lc_ws_pmd *peer = pmd(1, 0, 15, 15);
  CHECK(inflate_is(peer, hello, sizeof hello, "Hello", 5) == 0);
  CHECK(inflate_is(peer, again, sizeof again, "Hello", 5) == 0);
  CHECK(inflate_is(peer, nothing, sizeof nothing, "", 0) == 0);
  CHECK(inflate_is(peer, third, sizeof third, "Hello", 5) == 0);
  lc_ws_pmd_free(peer);
  lc_ws_pmd_free(keep);
  lc_ws_pmd_free(reset);
  /* no bytes at all read as the empty message, and leave the stream as it was */
  d = pmd(1, 0, 15, 15);
  CHECK(inflate_is(d, hello, sizeof hello, "Hello", 5) == 0);
  CHECK(inflate_is(d, "", 0, "", 0) == 0);
  CHECK(inflate_is(d, again, sizeof again, "Hello", 5) == 0);
  lc_ws_pmd_free(d);
}

/* zlib's raw deflate of n bytes of c, sync-flushed with the tail cut, into a malloc'ed buffer */
static unsigned char *bomb(size_t n, int c, size_t *olen) {
  unsigned char *plain = malloc(n), *z = malloc(n / 100 + 1024);
  CHECK(plain && z);
  memset(plain, c, n);
  z_stream s;
  memset(&s, 0, sizeof s);
  CHECK(deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  s.next_in = plain; s.avail_in = (uInt)n;
  s.next_out = z; s.avail_out = (uInt)(n / 100 + 1024);
  CHECK(deflate(&s, Z_SYNC_FLUSH) == Z_OK && s.avail_in == 0 && s.avail_out > 0);
  *olen = (size_t)(s.next_out - z) - 4;
  deflateEnd(&s);
  free(plain);
  return z;
}

static void t_bomb(void) {
  /* 100 MB of zeros in about 100 KB: over a 1 MB max it stops there, never holding more */
  size_t n;
  unsigned char *z = bomb(100u << 20, 0, &n);
  CHECK(n < 200000);
  lc_ws_pmd *d = pmd(1, 0, 15, 15);
  lc_buf out;
  lc_buf_init(&out, 0);
  const char *err = NULL;
  CHECK(lc_ws_pmd_inflate(d, z, n, 1 << 20, 0, &out, &err) == 1009);
  CHECK(out.cap <= (1u << 20) + 1);
  lc_buf_free(&out);
  free(z);
  /* exactly max inflates; max + 1 does not */
  z = bomb(5000, 'a', &n);
  lc_ws_pmd *e = pmd(1, 1, 15, 15);
  CHECK(lc_ws_pmd_inflate(e, z, n, 5000, 1, &out, &err) == 0 && out.len == 5000);
  CHECK(lc_ws_pmd_inflate(e, z, n, 4999, 1, &out, &err) == 1009 && out.cap <= 5000);
  lc_buf_free(&out);
  free(z);
  lc_ws_pmd_free(d);
  lc_ws_pmd_free(e);
}

static void t_invalid(void) {
  lc_ws_pmd *d = pmd(1, 0, 15, 15);
  const unsigned char junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff };   /* block type 3: reserved */
  CHECK(inflate_is(d, junk, sizeof junk, NULL, 0) == 1007);
  lc_ws_pmd_free(d);
  d = pmd(1, 0, 15, 15);
  /* a stored block whose NLEN is not LEN's complement */
  const unsigned char badlen[] = { 0x00, 0x05, 0x00, 0xfa, 0xfe, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
  CHECK(inflate_is(d, badlen, sizeof badlen, NULL, 0) == 1007);
  /* after a final block a new stream starts: junk there is as invalid as anywhere */
  const unsigned char after[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xff, 0xff };
  CHECK(inflate_is(d, after, sizeof after, NULL, 0) == 1007);
  /* and a new stream there is read: "Hello" twice, the second in a stored block */
  const unsigned char twice[] = { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00 };
  CHECK(inflate_is(d, twice, sizeof twice, "HelloHello", 10) == 0);
  /* a distance before the start of the window (a back-reference with no history) */
  const unsigned char far[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
  lc_ws_pmd *fresh = pmd(1, 1, 15, 15);
  CHECK(inflate_is(fresh, far, sizeof far, NULL, 0) == 1007);
  lc_ws_pmd_free(d);
  lc_ws_pmd_free(fresh);
}

static void t_utf8(void) {
  lc_ws_pmd *s = pmd(1, 1, 15, 15), *r = pmd(1, 1, 15, 15);
  lc_buf z, out;
  lc_buf_init(&z, 0);
  lc_buf_init(&out, 0);
  const char *err;
  /* a surrogate, compressed: invalid as text (1007), fine as binary */
  CHECK(lc_ws_pmd_deflate(s, (const unsigned char *)"ok \xed\xa0\x80", 6, &z) == 0);
  CHECK(lc_ws_pmd_inflate(r, (unsigned char *)z.data, z.len, 0, 1, &out, &err) == 1007);
  CHECK(lc_ws_pmd_inflate(r, (unsigned char *)z.data, z.len, 0, 0, &out, &err) == 0 && out.len == 6);
  /* a sequence cut at the message's end */
  CHECK(lc_ws_pmd_deflate(s, (const unsigned char *)"\xce\xba\xce", 3, &z) == 0);
  CHECK(lc_ws_pmd_inflate(r, (unsigned char *)z.data, z.len, 0, 1, &out, &err) == 1007);
  CHECK(lc_ws_pmd_deflate(s, (const unsigned char *)"\xce\xba", 2, &z) == 0);
  CHECK(lc_ws_pmd_inflate(r, (unsigned char *)z.data, z.len, 0, 1, &out, &err) == 0 && out.len == 2);
  lc_buf_free(&z);
  lc_buf_free(&out);
  lc_ws_pmd_free(s);
  lc_ws_pmd_free(r);
}

/* messages from a "server" deflater to a "client" inflater with the same settings */
static void round_trips(int nct, int bits, int n_msgs) {
  lc_ws_pmd *s = pmd(nct, 1, bits, 15), *c = pmd(1, nct, 15, bits);
  lc_buf z, out;
  lc_buf_init(&z, 0);
  lc_buf_init(&out, 0);
  size_t len = 300000;
  unsigned char *m = malloc(len);
  CHECK(m != NULL);
  unsigned seed = 7;
  for (int k = 0; k < n_msgs; k++) {
    /* half random bytes, half repeats 1000 bytes back (past a 512-byte window) */
    for (size_t i = 0; i < len; i++) {
      seed = seed * 1103515245u + 12345u;
      m[i] = (i >= 1000 && (i / 4096) % 2) ? m[i - 1000] : (unsigned char)(seed >> 16);
    }
    size_t n = len >> (k % 4);
    const char *err;
    CHECK(lc_ws_pmd_deflate(s, m, n, &z) == 0);
    CHECK(lc_ws_pmd_inflate(c, (unsigned char *)z.data, z.len, 0, 0, &out, &err) == 0);
    CHECK(out.len == n && memcmp(out.data, m, n) == 0);
  }
  free(m);
  lc_buf_free(&z);
  lc_buf_free(&out);
  lc_ws_pmd_free(s);
  lc_ws_pmd_free(c);
}

/* server_max_window_bits=8: zlib deflates with 9 bits, yet a 256-byte window inflates it all */
static void t_window_8(void) {
  for (int nct = 0; nct <= 1; nct++) {
    lc_ws_pmd *s = pmd(nct, 1, 8, 15);
    z_stream inf;
    memset(&inf, 0, sizeof inf);
    CHECK(inflateInit2(&inf, -8) == Z_OK);
    lc_buf z;
    lc_buf_init(&z, 0);
    unsigned char m[20000], out[20000];
    unsigned seed = 3;
    for (int k = 0; k < 4; k++) {
      /* repeats at every distance from 1 to 600 */
      for (size_t i = 0; i < sizeof m; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t back = 1 + (seed >> 8) % 600;
        m[i] = i >= back && (seed >> 20) % 4 ? m[i - back] : (unsigned char)(seed >> 16);
      }
      CHECK(lc_ws_pmd_deflate(s, m, sizeof m, &z) == 0);
      CHECK(lc_buf_append(&z, "\x00\x00\xff\xff", 4) == 0);
      if (nct) CHECK(inflateReset(&inf) == Z_OK);
      /* 64 bytes of output at a time: what is further back comes from the 256-byte window */
      inf.next_in = (Bytef *)z.data; inf.avail_in = (uInt)z.len;
      size_t got = 0;
      while (inf.avail_in > 0 && got < sizeof out) {
        inf.next_out = out + got;
        inf.avail_out = sizeof out - got < 64 ? (uInt)(sizeof out - got) : 64;
        uInt before = inf.avail_out;
        int r = inflate(&inf, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR) fprintf(stderr, "k=%d nct=%d got=%zu: %s\n", k, nct, got, inf.msg ? inf.msg : "");
        CHECK(r == Z_OK || r == Z_BUF_ERROR);
        got += before - inf.avail_out;
      }
      CHECK(got == sizeof m && memcmp(out, m, sizeof m) == 0);
    }
    inflateEnd(&inf);
    lc_buf_free(&z);
    lc_ws_pmd_free(s);
  }
}

static void t_round_trip(void) {
  for (int bits = 8; bits <= 15; bits++) {
    round_trips(0, bits, 4);
    round_trips(1, bits, 4);
  }
}

static void t_no_context_takeover(void) {
  /* two sockets whose client resets per message share this process's inflater: interleaved
   * messages stay right */
  lc_ws_pmd *a = pmd(1, 1, 15, 15), *b = pmd(1, 1, 15, 15);
  const unsigned char hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
  const unsigned char again[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
  CHECK(inflate_is(a, hello, sizeof hello, "Hello", 5) == 0);
  CHECK(inflate_is(b, hello, sizeof hello, "Hello", 5) == 0);
  CHECK(inflate_is(a, hello, sizeof hello, "Hello", 5) == 0);
  /* ... and a message that needs the last one's context fails there (it was reset) */
  CHECK(inflate_is(a, again, sizeof again, NULL, 0) == 1007);
  /* neither holds a stream of its own */
  CHECK(lc_ws_pmd_stream_bytes(a) == 0 && lc_ws_pmd_stream_bytes(b) == 0);
  lc_ws_pmd_free(a);
  lc_ws_pmd_free(b);
}

static void t_memory(void) {
  /* a socket's own streams, made at its first message: the inflater's window is 2^bits */
  const unsigned char hello[] = { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
  size_t got[16];
  for (int bits = 9; bits <= 15; bits += 6) {
    lc_ws_pmd *d = pmd(1, 0, 15, bits);
    CHECK(lc_ws_pmd_stream_bytes(d) == 0);
    CHECK(inflate_is(d, hello, sizeof hello, "Hello", 5) == 0);
    got[bits] = lc_ws_pmd_stream_bytes(d);
    printf("inflater, client_max_window_bits=%d: %zu bytes\n", bits, got[bits]);
    lc_ws_pmd_free(d);
  }
  CHECK(got[15] - got[9] == (1u << 15) - (1u << 9));
  CHECK(got[15] < 48 * 1024);
  /* a deflater of its own (server context takeover): zlib's (1 << (bits + 2)) + (1 << (mem_level + 9)) */
  for (int bits = 9; bits <= 15; bits += 6) {
    lc_ws_pmd_params p = {0, 0, bits, 15, 1, bits == 9 ? 1 : 8};
    lc_ws_pmd *d = lc_ws_pmd_new(&p);
    lc_buf z;
    lc_buf_init(&z, 0);
    CHECK(lc_ws_pmd_deflate(d, (const unsigned char *)"Hello", 5, &z) == 0);
    size_t b = lc_ws_pmd_stream_bytes(d);
    printf("deflater, server_max_window_bits=%d mem_level=%d: %zu bytes\n", bits, p.mem_level, b);
    CHECK(b >= (1u << (bits + 2)) + (1u << (p.mem_level + 9)));
    CHECK(b < (1u << (bits + 2)) + (1u << (p.mem_level + 9)) + 16 * 1024);
    lc_buf_free(&z);
    lc_ws_pmd_free(d);
  }
  /* a server without context takeover holds no deflater of its own */
  lc_ws_pmd *d = pmd(1, 1, 15, 15);
  lc_buf z;
  lc_buf_init(&z, 0);
  CHECK(lc_ws_pmd_deflate(d, (const unsigned char *)"Hello", 5, &z) == 0);
  CHECK(lc_ws_pmd_stream_bytes(d) == 0);
  lc_buf_free(&z);
  lc_ws_pmd_free(d);
  /* window bits outside 8..15 are refused */
  lc_ws_pmd_params bad = {0, 0, 7, 15, 1, 8};
  CHECK(lc_ws_pmd_new(&bad) == NULL);
}

int main(int argc, char **argv) {
  static const struct { const char *name; void (*fn)(void); } cases[] = {
    {"rfc_examples", t_rfc_examples}, {"bomb", t_bomb}, {"invalid", t_invalid}, {"utf8", t_utf8},
    {"round_trip", t_round_trip}, {"window_8", t_window_8}, {"no_context_takeover", t_no_context_takeover}, {"memory", t_memory},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (argc < 2 || strcmp(argv[1], cases[i].name) == 0) {
      cases[i].fn();
      printf("ok %s\n", cases[i].name);
    }
  }
  return 0;
}
