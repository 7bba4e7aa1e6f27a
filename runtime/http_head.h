/* http_head.h: strict validation of an HTTP/1.x request head (request line + header fields),
 * done on the complete head before libhttp-parser sees it. Debian's libhttp-parser is built
 * lenient, and several of its leniencies are request-smuggling holes (a space before the
 * colon, bare CR line ends, obs-fold, control bytes); RFC 9112's rules are enforced here.
 * Pure functions over a byte range: no allocation, no I/O (so they can be fuzzed alone). */
#ifndef LC_HTTP_HEAD_H
#define LC_HTTP_HEAD_H

#include <stddef.h>
#include <stdint.h>

#define LC_HTTP_MAX_HEADERS 100

typedef struct lc_http_field { uint32_t name, name_len, value, value_len; } lc_http_field;

typedef struct lc_http_head {
  uint32_t method, method_len, target, target_len;
  int minor;                   /* 0 or 1 */
  int host_count;
  int has_content_length, has_transfer_encoding, expect_continue, connection_close;
  int te_status;
  int ows_tab;                 /* a field value has a tab in its optional whitespace */               /* 400 or 501 for a Transfer-Encoding we refuse */
  uint64_t content_length;
  int nfields;
  lc_http_field fields[LC_HTTP_MAX_HEADERS];   /* last: everything before it is reset per request */
} lc_http_head;

/* Finds the end of a request head in p[0..n): returns the head's length including the blank
 * line, 0 when it is not complete yet, LC_HTTP_HEAD_BAD when it already has a bare CR (a CR
 * not followed by LF). Leading empty lines must have been skipped. */
#define LC_HTTP_HEAD_BAD ((size_t)-1)
size_t lc_http_head_end(const char *p, size_t n);

/* Validates the head p[0..n) (as found by lc_http_head_end) and records its fields.
 * Returns 0, or the HTTP status to answer with (400, 431, 501, 505). */
int lc_http_head_parse(const char *p, size_t n, lc_http_head *h);

/* A chunked request body, checked as it streams in (RFC 9112 section 7.1), before
 * libhttp-parser decodes the same bytes: the lenient parser takes any two bytes after a chunk's
 * data as its CRLF, anything up to a CR as a chunk extension, "5\rX" as "5\r\n", and trailers
 * with the leniencies of its header parsing; each of those is a smuggling hole. Here:
 * chunk = 1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF
 * data CRLF; last-chunk; trailer fields as header fields; every line ends in CRLF. */
typedef struct lc_http_chunked {
  int state;
  int digits;                  /* significant hex digits of the size so far */
  uint64_t size;               /* the current chunk's size, then what is left of its data */
  uint64_t total;              /* body bytes so far */
  size_t line;                 /* bytes in the current chunk-size line or trailer section */
} lc_http_chunked;

enum { LC_CHUNKED_MORE = 0, LC_CHUNKED_DONE = 1 };

/* Resets the state for a new body. */
void lc_http_chunked_init(lc_http_chunked *s);

/* Scans p[0..n) of a chunked body. *used gets how many bytes belong to the body (all n unless
 * it ends inside them). Returns LC_CHUNKED_MORE (valid so far, not ended), LC_CHUNKED_DONE
 * (the body ended after *used bytes), or the HTTP status to refuse it with: 400 (bad framing),
 * 413 (a chunk takes the body over max_body), 431 (trailers over max_trailers bytes). */
int lc_http_chunked_scan(lc_http_chunked *s, const char *p, size_t n, uint64_t max_body,
                         size_t max_trailers, size_t *used);

/* lookup tables of allowed characters (1 = allowed) */
extern const unsigned char lc_http_tchar[256];
extern const unsigned char lc_http_hostchar[256];

#endif
