/* http_head.h: the strict parse of an HTTP/1.x request head (request line + header fields),
 * or of a response head (status line + header fields, for the HTTP client: lc_http_response_init),
 * the one reading of a head in the runtime (bodies: http_body.h). RFC 9112's rules are enforced
 * (no space before the colon, no bare CR, no obs-fold, no control bytes: each leniency is a
 * request-smuggling hole), and what the runtime needs is recorded as offsets into the head.
 * Pure functions over a byte range: no allocation, no I/O (so they can be fuzzed alone). */
#ifndef LC_HTTP_HEAD_H
#define LC_HTTP_HEAD_H

#include <stddef.h>
#include <stdint.h>

#define LC_HTTP_MAX_HEADERS 100

typedef struct lc_http_field { uint32_t name, name_len, value, value_len; } lc_http_field;

typedef struct lc_http_head {
  size_t scan;                 /* the parse so far: where the next line starts */
  size_t seen;                 /* how far the line after it has been searched */
  int lines, err;              /* complete lines so far; the first line's fault (a status) */
  uint32_t method, method_len, target, target_len;
  int minor;                   /* 0 or 1 */
  int host_count;
  int has_content_length, has_transfer_encoding, expect_continue;
  int connection_close, connection_keep_alive, connection_upgrade;  /* Connection tokens */
  int upgrade;                 /* an Upgrade field with a value */
  int te_status;               /* 400 or 501 for a Transfer-Encoding we refuse */
  int is_head, is_connect;     /* the method is HEAD, CONNECT */
  uint64_t content_length;
  int response;                /* a response head: a status line first (lc_http_response_init) */
  int status;                  /* a response's status code, 100..599 */
  const char *why;             /* a response head's fault in words (NULL: see the code returned) */
  size_t fault;                /* where the line at fault starts (with why) */
  int nfields;
  lc_http_field fields[LC_HTTP_MAX_HEADERS];   /* last: everything before it is reset per request */
} lc_http_head;

/* Starts a new head (the one before is forgotten). */
void lc_http_head_init(lc_http_head *h);

/* Parses the head that starts at p, of which n bytes have arrived; call again with the same p
 * and more bytes: what was parsed is not parsed again. Leading empty lines must have been
 * skipped. limit: max_header_size (at most limit + 4 bytes are looked at). Returns 0 with *len
 * 0 (not complete yet), 0 with *len the head's length with its blank line (complete and
 * valid: its fields are recorded as offsets from p), or the HTTP status to answer with (400,
 * 431, 501, 505). A method must be one of those the runtime has always known (the list in
 * http_head.c; 501 otherwise), a Content-Length must come once. */
int lc_http_head_parse(const char *p, size_t n, size_t limit, lc_http_head *h, size_t *len);

/* Starts a new response head: lc_http_head_parse then reads a status line (HTTP/1.x NNN
 * [reason], NNN in 100..599; 1.0 and 1.1, a higher minor read as 1.1) and the same header
 * fields with the same rules and limits; `minor`, `status`, the framing and Connection fields
 * are recorded. At the end RFC 9112 6.3's framing rules for a response: Content-Length and
 * Transfer-Encoding together, Content-Length values that differ (the same value repeated is
 * one, RFC 9110 8.6), a Transfer-Encoding other than "chunked" once, or one in an HTTP/1.0
 * response are faults. A fault returns 400 (431: over limit, or over LC_HTTP_MAX_HEADERS
 * fields) and, for a fault of a line or of the framing, sets why (and fault: its line). */
void lc_http_response_init(lc_http_head *h);

/* a Content-Length value: 1 to 18 digits, nothing else (the request's and a handler's);
 * 0, or -1 when it is not one */
int lc_http_parse_length(const char *v, size_t n, uint64_t *out);

/* whether a comma-separated list of tokens (a Connection value) holds token, in lower case
 * (compared without case) */
int lc_http_list_has(const char *v, size_t n, const char *token);

/* lookup tables of allowed characters (1 = allowed) */
extern const unsigned char lc_http_tchar[256];
extern const unsigned char lc_http_hostchar[256];

#endif
