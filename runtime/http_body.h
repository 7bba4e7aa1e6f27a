/* http_body.h: the framing of a request body (RFC 9112 section 6): a Content-Length counter,
 * or the chunked coding (section 7.1) with its strict grammar and its trailer section; and of a
 * response body (the HTTP client's), which may also be delimited by the close.
 * An incremental state machine over the bytes as they arrive: it keeps no bytes of its own
 * (a few counters), and hands back where the body's data lies in what it was given, so the
 * caller copies the data once and nothing else. It is the only body parser: the head is
 * http_head.c's, and one parser for the whole request leaves no two readings of one message
 * to disagree (a smuggling risk in itself).
 * chunked-body = *chunk last-chunk trailer-section CRLF
 * chunk        = chunk-size *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )
 *                CRLF chunk-data CRLF          (chunk-size: 1*HEXDIG, at most 64 bits)
 * last-chunk   = 1*"0" [ chunk-ext ] CRLF
 * trailer-section = *( field-name ":" field-value CRLF ), with the head's field rules (a
 *                Content-Length trailer too: digits, once, though it frames nothing)
 * Every line ends in exactly CRLF: a bare CR or a bare LF is refused. Pure functions: no
 * allocation, no I/O (fuzzed through fuzz_http). */
#ifndef LC_HTTP_BODY_H
#define LC_HTTP_BODY_H

#include <stddef.h>
#include <stdint.h>

typedef struct lc_http_body {
  int state;
  int digits;                  /* significant hex digits of the chunk size so far */
  uint64_t size;               /* what is left of the body (Content-Length) or of this chunk */
  uint64_t total;              /* body bytes so far */
  size_t line;                 /* bytes of the current chunk-size line, or of the trailers */
  int name_match;              /* a trailer's name: bytes that match "content-length", or -1 */
  int lengths;                 /* Content-Length trailers so far */
} lc_http_body;

enum { LC_HTTP_BODY_MORE = 0, LC_HTTP_BODY_DONE = 1 };

/* Starts a body: chunked, or else `length` bytes (0: none). Returns LC_HTTP_BODY_DONE when
 * there is no body, LC_HTTP_BODY_MORE when one follows, 413 when its Content-Length is over
 * max_body. */
int lc_http_body_init(lc_http_body *b, int chunked, uint64_t length, uint64_t max_body);

/* Starts a body delimited by the close of the connection (a response with neither
 * Content-Length nor chunked, RFC 9112 6.3 point 8): lc_http_body_frame hands every byte back
 * as data and never ends it (the caller ends it at the close), or 413 once the body would pass
 * max_body. */
void lc_http_body_init_close(lc_http_body *b);

/* Frames p[0..n): reads framing up to and including at most one run of body data, which is
 * p[*data_off, *data_off + *data_len) (*data_len 0: none). *used: how many bytes of p it took
 * (the data included); call again with the rest. Returns LC_HTTP_BODY_MORE (not ended yet),
 * LC_HTTP_BODY_DONE (the body ended after *used bytes), or the HTTP status to refuse it with:
 * 400 (bad framing), 413 (a chunk takes the body over max_body), 431 (trailers over
 * max_trailers bytes). */
int lc_http_body_frame(lc_http_body *b, const char *p, size_t n, uint64_t max_body,
                       size_t max_trailers, size_t *used, size_t *data_off, size_t *data_len);

#endif
