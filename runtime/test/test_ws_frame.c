/* test_ws_frame.c: checks of the RFC 6455 frame codec (ws_frame.c) with the RFC's own example
 * frames (5.7) and one vector per rule, run by spec/ws_frame_spec.lua one case at a time:
 * `test_ws_frame CASE` prints "ok CASE" and exits 0, or names the failed check and exits 1. */
#include "../ws_frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

static const unsigned char MASK[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* a client frame (masked with MASK) into out; returns its size */
static size_t client_frame(unsigned char *out, unsigned b0, const void *payload, size_t len) {
  size_t h = lc_ws_frame_header(out, 0, 0, 0, len);
  out[0] = (unsigned char)b0;
  out[1] |= 0x80;
  memcpy(out + h, MASK, 4);
  memcpy(out + h + 4, payload, len);
  lc_ws_unmask(out + h + 4, len, MASK, 0);
  return h + 4 + len;
}

/* one whole buffer, read a byte more at a time: every prefix must ask for more, the whole gives r */
static long long next_bytewise(lc_ws_parser *ps, unsigned char *p, size_t n, lc_ws_event *ev) {
  for (size_t i = 0; i < n; i++) {
    long long r = lc_ws_next(ps, p, i, ev);
    if (r != 0) return r;
  }
  return lc_ws_next(ps, p, n, ev);
}

static uint16_t error_of(const unsigned char *frames, size_t n, uint64_t max) {
  unsigned char buf[256];
  CHECK(n <= sizeof buf);
  memcpy(buf, frames, n);
  lc_ws_parser ps;
  lc_ws_parser_init(&ps, max, 0);
  lc_ws_event ev;
  size_t off = 0;
  while (off < n) {
    long long r = lc_ws_next(&ps, buf + off, n - off, &ev);
    if (r < 0) return ev.close_code;
    if (r == 0) return 0;
    off += (size_t)r;
  }
  return 0;
}

static void t_rfc_examples(void) {
  /* 5.7: a single-frame masked text message "Hello" */
  unsigned char hello[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
  lc_ws_parser ps;
  lc_ws_event ev;
  lc_ws_parser_init(&ps, 1 << 20, 0);
  CHECK(next_bytewise(&ps, hello, sizeof hello, &ev) == (long long)sizeof hello);
  CHECK(ev.opcode == LC_WS_TEXT && ev.fin && ev.len == 5 && memcmp(ev.data, "Hello", 5) == 0);
  /* 5.7: a masked pong "Hello", and the ping with the same payload */
  unsigned char pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
  CHECK(lc_ws_next(&ps, pong, sizeof pong, &ev) == (long long)sizeof pong);
  CHECK(ev.opcode == LC_WS_PONG && ev.len == 5 && memcmp(ev.data, "Hello", 5) == 0);
  unsigned char ping[] = { 0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
  CHECK(lc_ws_next(&ps, ping, sizeof ping, &ev) == (long long)sizeof ping);
  CHECK(ev.opcode == LC_WS_PING && ev.len == 5 && memcmp(ev.data, "Hello", 5) == 0);
  /* 5.7: the unmasked examples are server frames: a server refuses them from a client (5.1) */
  unsigned char unmasked[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
  CHECK(error_of(unmasked, sizeof unmasked, 0) == 1002);
  /* ... and writes them: "Hello", 256 bytes (16-bit length), 64 KiB (64-bit length) */
  unsigned char h[10];
  CHECK(lc_ws_frame_header(h, 1, 0, LC_WS_TEXT, 5) == 2 && h[0] == 0x81 && h[1] == 0x05);
  CHECK(lc_ws_frame_header(h, 1, 0, LC_WS_BINARY, 256) == 4);
  CHECK(h[0] == 0x82 && h[1] == 0x7E && h[2] == 0x01 && h[3] == 0x00);
  CHECK(lc_ws_frame_header(h, 1, 0, LC_WS_BINARY, 65536) == 10);
  unsigned char want64[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0 };
  CHECK(memcmp(h, want64, 10) == 0);
  /* 5.7 fragmented "Hel" + "lo" (masked here, as a client sends it) */
  unsigned char frag[64];
  size_t n = client_frame(frag, 0x01, "Hel", 3);
  n += client_frame(frag + n, 0x80, "lo", 2);
  lc_ws_parser_init(&ps, 1 << 20, 0);
  long long r = lc_ws_next(&ps, frag, n, &ev);
  CHECK(r > 0 && ev.opcode == LC_WS_TEXT && !ev.fin && ev.len == 3 && memcmp(ev.data, "Hel", 3) == 0);
  CHECK(lc_ws_next(&ps, frag + r, n - (size_t)r, &ev) == (long long)(n - (size_t)r));
  CHECK(ev.opcode == LC_WS_TEXT && ev.fin && ev.len == 2 && memcmp(ev.data, "lo", 2) == 0);
}

static void t_lengths(void) {
  lc_ws_parser ps;
  lc_ws_event ev;
  /* 7, 16 and 64-bit lengths at their edges, read a byte at a time */
  size_t sizes[] = { 0, 125, 126, 127, 65535, 65536, 70000 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t len = sizes[i];
    unsigned char *pl = malloc(len + 1), *f = malloc(len + 14);
    CHECK(pl && f);
    for (size_t j = 0; j < len; j++) pl[j] = (unsigned char)(j * 31);
    size_t n = client_frame(f, 0x82, pl, len);
    CHECK(n == len + 4 + (len < 126 ? 2 : len < 65536 ? 4 : 10));
    lc_ws_parser_init(&ps, 1 << 20, 0);
    CHECK(next_bytewise(&ps, f, n, &ev) == (long long)n);
    CHECK(ev.opcode == LC_WS_BINARY && ev.fin && ev.len == len && memcmp(ev.data, pl, len) == 0);
    free(pl); free(f);
  }
  /* 2^63 and more: the most significant bit must be 0 (5.2) */
  unsigned char huge[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
  CHECK(error_of(huge, sizeof huge, 0) == 1002);
  /* 2^63 - 1 with no limit is well-formed: it waits for the payload */
  unsigned char big[] = { 0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4 };
  CHECK(error_of(big, sizeof big, 0) == 0);
  /* ... and over max_message_size it fails at the header, before any payload: 1009 */
  CHECK(error_of(big, sizeof big, 1 << 20) == 1009);
}

static void t_header_rules(void) {
  unsigned char f[64];
  /* RSV bits without an extension */
  for (unsigned rsv = 0x10; rsv <= 0x70; rsv += 0x10) CHECK(error_of(f, client_frame(f, 0x81 | rsv, "a", 1), 0) == 1002);
  /* RSV1 with permessage-deflate: allowed on a first data frame, not on a control frame or continuation */
  lc_ws_parser ps;
  lc_ws_event ev;
  lc_ws_parser_init(&ps, 0, LC_WS_RSV1);
  size_t n = client_frame(f, 0x41, "a", 1);
  CHECK(lc_ws_next(&ps, f, n, &ev) == (long long)n && ev.rsv == LC_WS_RSV1 && !ev.fin);
  n = client_frame(f, 0xC0, "a", 1);
  CHECK(lc_ws_next(&ps, f, n, &ev) == -1 && ev.close_code == 1002);
  lc_ws_parser_init(&ps, 0, LC_WS_RSV1);
  n = client_frame(f, 0xC9, "", 0);
  CHECK(lc_ws_next(&ps, f, n, &ev) == -1 && ev.close_code == 1002);
  lc_ws_parser_init(&ps, 0, LC_WS_RSV1);
  n = client_frame(f, 0xA1, "a", 1);   /* RSV2 is still not allowed */
  CHECK(lc_ws_next(&ps, f, n, &ev) == -1 && ev.close_code == 1002);
  /* reserved opcodes 3-7 and B-F */
  unsigned ops[] = { 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF };
  for (size_t i = 0; i < 10; i++) CHECK(error_of(f, client_frame(f, 0x80 | ops[i], "", 0), 0) == 1002);
  /* control frames: 125 bytes fine, 126 not; never fragmented */
  unsigned char pl[126];
  memset(pl, 'x', sizeof pl);
  unsigned char big[200];
  CHECK(error_of(big, client_frame(big, 0x89, pl, 125), 0) == 0);
  CHECK(error_of(big, client_frame(big, 0x89, pl, 126), 0) == 1002);
  CHECK(error_of(f, client_frame(f, 0x09, "", 0), 0) == 1002);
  CHECK(error_of(f, client_frame(f, 0x08, "", 0), 0) == 1002);
}

static void t_fragments(void) {
  unsigned char f[128];
  lc_ws_parser ps;
  lc_ws_event ev;
  /* a ping and a pong between the fragments of one message */
  size_t n = client_frame(f, 0x02, "ab", 2);
  size_t a = n;
  n += client_frame(f + n, 0x89, "p", 1);
  size_t b = n;
  n += client_frame(f + n, 0x8A, "q", 1);
  size_t c = n;
  n += client_frame(f + n, 0x80, "cd", 2);
  lc_ws_parser_init(&ps, 4, 0);
  CHECK(lc_ws_next(&ps, f, n, &ev) == (long long)a && ev.opcode == LC_WS_BINARY && !ev.fin);
  CHECK(lc_ws_next(&ps, f + a, n - a, &ev) == (long long)(b - a) && ev.opcode == LC_WS_PING && ev.data[0] == 'p');
  CHECK(lc_ws_next(&ps, f + b, n - b, &ev) == (long long)(c - b) && ev.opcode == LC_WS_PONG);
  CHECK(lc_ws_next(&ps, f + c, n - c, &ev) == (long long)(n - c) && ev.opcode == LC_WS_BINARY && ev.fin);
  CHECK(memcmp(ev.data, "cd", 2) == 0);
  /* max_message_size counts the whole message: 4 bytes pass (above), 5 fail at the last header */
  n = client_frame(f, 0x02, "ab", 2);
  n += client_frame(f + n, 0x80, "cde", 3);
  CHECK(error_of(f, n, 4) == 1009);
  /* a continuation with no message, a new message inside one */
  CHECK(error_of(f, client_frame(f, 0x80, "a", 1), 0) == 1002);
  n = client_frame(f, 0x01, "a", 1);
  n += client_frame(f + n, 0x81, "b", 1);
  CHECK(error_of(f, n, 0) == 1002);
  /* a close between fragments is a close */
  n = client_frame(f, 0x01, "a", 1);
  a = n;
  n += client_frame(f + n, 0x88, "\x03\xe8", 2);
  lc_ws_parser_init(&ps, 0, 0);
  CHECK(lc_ws_next(&ps, f, n, &ev) == (long long)a);
  CHECK(lc_ws_next(&ps, f + a, n - a, &ev) == (long long)(n - a) && ev.opcode == LC_WS_CLOSE && ev.close_code == 1000);
}

static int utf8_ok(const char *s, size_t n) {
  lc_utf8 u;
  lc_utf8_init(&u);
  return lc_utf8_feed(&u, (const unsigned char *)s, n) == 0 && lc_utf8_complete(&u);
}

static void t_utf8(void) {
  /* valid: ASCII, 2/3/4-byte sequences, their edges, U+FFFF, U+10FFFF */
  CHECK(utf8_ok("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", 26));
  CHECK(utf8_ok("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11));
  CHECK(utf8_ok("\xf0\x90\x80\x80", 4) && utf8_ok("\xf4\x8f\xbf\xbf", 4) && utf8_ok("\xef\xbf\xbf", 3));
  CHECK(utf8_ok("\xed\x9f\xbf", 3) && utf8_ok("\xee\x80\x80", 3));
  /* invalid: overlongs, surrogates, above U+10FFFF, stray continuations, cut sequences, F5-FF */
  CHECK(!utf8_ok("\xc0\xaf", 2) && !utf8_ok("\xc1\xbf", 2) && !utf8_ok("\xe0\x80\xaf", 3) && !utf8_ok("\xf0\x80\x80\xaf", 4));
  CHECK(!utf8_ok("\xed\xa0\x80", 3) && !utf8_ok("\xed\xbf\xbf", 3));
  CHECK(!utf8_ok("\xf4\x90\x80\x80", 4) && !utf8_ok("\xf5\x80\x80\x80", 4) && !utf8_ok("\xff", 1));
  CHECK(!utf8_ok("\x80", 1) && !utf8_ok("a\xbf", 2) && !utf8_ok("\xce\xba\xe1", 3) && !utf8_ok("\xe1\xbd", 2));
  CHECK(!utf8_ok("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", 19));
  /* fails fast: the first byte that cannot continue a valid text fails, whatever follows */
  /* runs of ASCII (read 8 bytes at a time) around and between sequences, a bad byte at each offset */
  CHECK(utf8_ok("0123456789abcdef\xc3\xa9" "0123456789abcde", 33) && utf8_ok("0123456\xf0\x90\x80\x80" "89abcdefgh", 21));
  CHECK(!utf8_ok("01234567\xe1\xbd" "abcdefgh", 18) && !utf8_ok("0123456789abcdef\xe1", 17));
  for (int at = 0; at < 24; at++) {
    char b[24];
    memset(b, 'a', sizeof b);
    b[at] = (char)0xff;
    CHECK(!utf8_ok(b, sizeof b));
    b[at] = (char)0xc3;
    if (at < 23) { b[at + 1] = (char)0xa9; CHECK(utf8_ok(b, sizeof b)); }
  }
  lc_utf8 u;
  lc_utf8_init(&u);
  CHECK(lc_utf8_feed(&u, (const unsigned char *)"\xce\xba\xe1\xbd", 4) == 0 && !lc_utf8_complete(&u));
  CHECK(lc_utf8_feed(&u, (const unsigned char *)"\xb9", 1) == 0 && lc_utf8_complete(&u));
  CHECK(lc_utf8_feed(&u, (const unsigned char *)"\xf4\x90", 2) == -1);
}

static void t_utf8_frames(void) {
  unsigned char f[128];
  lc_ws_parser ps;
  lc_ws_event ev;
  /* a sequence cut between two fragments is valid */
  size_t n = client_frame(f, 0x01, "\xce\xba\xe1", 3);
  size_t a = n;
  n += client_frame(f + n, 0x80, "\xbd\xb9", 2);
  lc_ws_parser_init(&ps, 0, 0);
  CHECK(lc_ws_next(&ps, f, n, &ev) == (long long)a);
  CHECK(lc_ws_next(&ps, f + a, n - a, &ev) == (long long)(n - a) && ev.fin);
  /* invalid in the first fragment: fails there, before the message ends (fail fast, 6.4.1) */
  n = client_frame(f, 0x01, "\xce\xba\xf4\x90\x80\x80", 6);
  n += client_frame(f + n, 0x80, "ok", 2);
  lc_ws_parser_init(&ps, 0, 0);
  CHECK(lc_ws_next(&ps, f, n, &ev) == -1 && ev.close_code == 1007);
  /* ... and inside one frame, before its end has arrived (6.4.3): 4 payload bytes of 12 */
  n = client_frame(f, 0x81, "\xce\xba\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64", 12);
  lc_ws_parser_init(&ps, 0, 0);
  CHECK(lc_ws_next(&ps, f, 6 + 2, &ev) == 0);
  CHECK(lc_ws_next(&ps, f, 6 + 4, &ev) == -1 && ev.close_code == 1007);
  /* a message that ends inside a sequence */
  CHECK(error_of(f, client_frame(f, 0x81, "\xce", 1), 0) == 1007);
  /* binary is not text */
  CHECK(error_of(f, client_frame(f, 0x82, "\xff\xfe", 2), 0) == 0);
  /* a ping's payload is not text either */
  CHECK(error_of(f, client_frame(f, 0x89, "\xff", 1), 0) == 0);
}

static void t_close(void) {
  /* 7.4: codes a peer may send */
  unsigned ok[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999 };
  unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) CHECK(lc_ws_close_code_valid(ok[i]));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(!lc_ws_close_code_valid(bad[i]));
  unsigned char f[200];
  lc_ws_parser ps;
  lc_ws_event ev;
  /* empty: 1005 to the caller; a code and a reason */
  lc_ws_parser_init(&ps, 0, 0);
  size_t n = client_frame(f, 0x88, "", 0);
  CHECK(lc_ws_next(&ps, f, n, &ev) == (long long)n && ev.opcode == LC_WS_CLOSE && ev.close_code == 1005 && ev.reason_len == 0);
  n = client_frame(f, 0x88, "\x0f\xa0" "bye \xce\xba", 8);
  CHECK(lc_ws_next(&ps, f, n, &ev) == (long long)n && ev.close_code == 4000);
  CHECK(ev.reason_len == 6 && memcmp(ev.reason, "bye \xce\xba", 6) == 0);
  /* one byte, an invalid code, an invalid reason */
  CHECK(error_of(f, client_frame(f, 0x88, "\x03", 1), 0) == 1002);
  CHECK(error_of(f, client_frame(f, 0x88, "\x03\xed", 2), 0) == 1002);       /* 1005 */
  CHECK(error_of(f, client_frame(f, 0x88, "\x03\xe8\xce", 3), 0) == 1007);
  /* 123 bytes of reason, the most a close frame carries */
  unsigned char pl[125];
  pl[0] = 0x03; pl[1] = 0xe8;
  memset(pl + 2, 'r', 123);
  CHECK(error_of(f, client_frame(f, 0x88, pl, 125), 0) == 0);
}

int main(int argc, char **argv) {
  static const struct { const char *name; void (*fn)(void); } cases[] = {
    { "rfc_examples", t_rfc_examples }, { "lengths", t_lengths }, { "header_rules", t_header_rules },
    { "fragments", t_fragments }, { "utf8", t_utf8 }, { "utf8_frames", t_utf8_frames }, { "close", t_close },
  };
  if (argc != 2) { fprintf(stderr, "usage: test_ws_frame CASE\n"); return 2; }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (strcmp(argv[1], cases[i].name) == 0) {
      cases[i].fn();
      printf("ok %s\n", cases[i].name);
      return 0;
    }
  }
  fprintf(stderr, "no case %s\n", argv[1]);
  return 2;
}
