/* http_head.c: see http_head.h. The request head is checked byte by byte against RFC 9112:
 * request-line = method SP request-target SP HTTP-version; field-line = field-name ":" OWS
 * field-value OWS; lines end in CRLF (a bare LF is accepted, a bare CR is not). A response
 * head (the HTTP client's) differs only in its first line, status-line = HTTP-version SP
 * status-code SP [ reason-phrase ], and in the framing checks at its end (response_done). */
#include "http_head.h"

#include <string.h>

/* a CR in [s, e) that is not followed by LF (a CR as the last byte may still get its LF) */
static int has_bare_cr(const char *s, const char *e) {
  for (const char *q = memchr(s, '\r', (size_t)(e - s)); q != NULL; q = memchr(q + 1, '\r', (size_t)(e - q - 1)))
    if (q + 1 < e && q[1] != '\n') return 1;
  return 0;
}

/* RFC 9110 tchar: the characters of a token (method, header name, chunk extension) */
const unsigned char lc_http_tchar[256] = {
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
  0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* the characters of a Host value: reg-name, IPv4 or IP-literal, and ':' port */
const unsigned char lc_http_hostchar[256] = {
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0,
  0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1,
  0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

#define is_tchar(c) (lc_http_tchar[(unsigned char)(c)])

static int ieq(const char *a, size_t alen, const char *lit) {
  size_t n = strlen(lit);
  if (alen != n) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
    if (c != lit[i]) return 0;
  }
  return 1;
}

static int parse_request_line(const char *base, const char *s, const char *e, lc_http_head *h) {
  const char *sp1 = memchr(s, ' ', (size_t)(e - s));
  if (sp1 == NULL || sp1 == s) return 400;
  for (const char *q = s; q < sp1; q++)
    if (!is_tchar((unsigned char)*q)) return 400;
  const char *t = sp1 + 1;
  const char *sp2 = memchr(t, ' ', (size_t)(e - t));
  if (sp2 == NULL || sp2 == t) return 400;
  for (const char *q = t; q < sp2; q++) {
    unsigned char c = (unsigned char)*q;
    if (c <= 0x20 || c == 0x7f) return 400;
  }
  const char *v = sp2 + 1;
  size_t vlen = (size_t)(e - v);
  if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
      v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
    return 400;
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return 505;
  /* request-target forms (RFC 9112 section 3.2): origin-form, absolute-form, authority-form
   * for CONNECT only, asterisk-form for OPTIONS only */
  size_t mlen = (size_t)(sp1 - s), tlen = (size_t)(sp2 - t);
  int is_connect = mlen == 7 && memcmp(s, "CONNECT", 7) == 0;
  h->is_connect = is_connect;
  if (is_connect) {
    if (*t == '/' || *t == '*') return 400;
  } else if (*t == '*') {
    if (tlen != 1 || mlen != 7 || memcmp(s, "OPTIONS", 7) != 0) return 400;
  } else if (*t != '/') {
    const char *q = t;
    if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'))) return 400;
    while (q < sp2 && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                       *q == '+' || *q == '-' || *q == '.'))
      q++;
    if (sp2 - q < 3 || memcmp(q, "://", 3) != 0) return 400;
  }
  h->minor = v[7] - '0';
  h->method = (uint32_t)(s - base);
  h->method_len = (uint32_t)(sp1 - s);
  h->target = (uint32_t)(t - base);
  h->target_len = (uint32_t)(sp2 - t);
  return 0;
}

/* RFC 3986's userinfo, host and port characters (unreserved, pct-encoded, sub-delims, ':') */
static int authority_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("-_.!~*'()%;:&=+$,[]@", c) != NULL);
}

/* The authority of an absolute-form target (after "scheme://") or of CONNECT's
 * authority-form: up to '/', '?' or the end of the target, no "@@". The scheme is letters
 * only. (The rules of libhttp-parser 2.9's URL check, which the runtime kept when it dropped
 * that parser: a target it refused is still refused.) */
static int target_ok(const char *t, size_t n, int is_connect) {
  const char *q = t, *e = t + n;
  if (!is_connect) {
    if (*t == '/' || *t == '*') return 1;   /* origin-form, asterisk-form: checked already */
    while (q < e && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'))) q++;
    if (e - q < 3 || memcmp(q, "://", 3) != 0) return 0;
    q += 3;
    if (q == e) return 0;
  }
  for (; q < e && *q != '/' && *q != '?'; q++)
    if (!authority_char((unsigned char)*q) || (*q == '@' && q > t && q[-1] == '@')) return 0;
  return 1;
}

int lc_http_parse_length(const char *v, size_t n, uint64_t *out) {
  if (n == 0 || n > 18) return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    x = x * 10 + (uint64_t)(v[i] - '0');
  }
  *out = x;
  return 0;
}

/* a comma-separated list contains token (case-insensitive) */
int lc_http_list_has(const char *v, size_t n, const char *token) {
  const char *end = v + n;
  while (v < end) {
    while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
    const char *s = v;
    while (v < end && *v != ',') v++;
    const char *e = v;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if (e > s && ieq(s, (size_t)(e - s), token)) return 1;
  }
  return 0;
}

static int check_field(const char *base, const char *s, const char *e, lc_http_head *h) {
  if (*s == ' ' || *s == '\t') return 400;          /* obs-fold */
  const char *colon = memchr(s, ':', (size_t)(e - s));
  if (colon == NULL || colon == s) return 400;
  for (const char *q = s; q < colon; q++)
    if (!is_tchar((unsigned char)*q)) return 400;     /* includes whitespace before the colon */
  const char *v = colon + 1, *ve = e;
  while (v < ve && (*v == ' ' || *v == '\t')) v++;
  while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
  for (const char *q = v; q < ve; q++) {
    unsigned char c = (unsigned char)*q;
    if ((c < 0x20 && c != '\t') || c == 0x7f) return 400;
  }
  if (h->nfields == LC_HTTP_MAX_HEADERS) return 431;
  lc_http_field *f = &h->fields[h->nfields++];
  f->name = (uint32_t)(s - base);
  f->name_len = (uint32_t)(colon - s);
  f->value = (uint32_t)(v - base);
  f->value_len = (uint32_t)(ve - v);
  size_t nlen = (size_t)(colon - s), vlen = (size_t)(ve - v);
  if (ieq(s, nlen, "host")) {
    /* Host = uri-host [ ":" port ]: reg-name, IPv4 or IP-literal characters only */
    for (const char *q = v; q < ve; q++) {
      if (!lc_http_hostchar[(unsigned char)*q]) return 400;
    }
    h->host_count++;
  } else if (ieq(s, nlen, "content-length")) {
    uint64_t cl;
    if (lc_http_parse_length(v, vlen, &cl) != 0) return 400;
    if (h->has_content_length && cl != h->content_length) return 400;
    h->has_content_length++;
    h->content_length = cl;
  } else if (ieq(s, nlen, "transfer-encoding")) {
    /* only "chunked", once: anything else is either unsupported (501) or a smuggling attempt
     * (400); decided once the whole head has passed the syntax check */
    int st = 0;
    if (h->has_transfer_encoding || !ieq(v, vlen, "chunked"))
      st = lc_http_list_has(v, vlen, "chunked") || h->has_transfer_encoding ? 400 : 501;
    if (st == 400 || (st != 0 && h->te_status == 0)) h->te_status = st;
    h->has_transfer_encoding = 1;
  } else if (ieq(s, nlen, "expect")) {
    if (ieq(v, vlen, "100-continue")) h->expect_continue = 1;
  } else if (ieq(s, nlen, "connection")) {
    if (lc_http_list_has(v, vlen, "close")) h->connection_close = 1;
    if (lc_http_list_has(v, vlen, "keep-alive")) h->connection_keep_alive = 1;
    if (lc_http_list_has(v, vlen, "upgrade")) h->connection_upgrade = 1;
  } else if (ieq(s, nlen, "upgrade")) {
    if (vlen > 0) h->upgrade = 1;
  }
  return 0;
}

/* The methods the runtime knows (those of libhttp-parser 2.9, which read heads before this
 * file did): another token is answered 501. Case-sensitive (RFC 9110 9.1). */
static const char *const methods[] = {
  "DELETE", "GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS", "TRACE", "COPY", "LOCK", "MKCOL",
  "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT",
  "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PATCH",
  "PURGE", "MKCALENDAR", "LINK", "UNLINK", "SOURCE",
};

static int known_method(const char *m, size_t n) {
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    if (strlen(methods[i]) == n && memcmp(methods[i], m, n) == 0) return 1;
  return 0;
}

void lc_http_head_init(lc_http_head *h) {
  memset(h, 0, offsetof(lc_http_head, fields));
}

void lc_http_response_init(lc_http_head *h) {
  memset(h, 0, offsetof(lc_http_head, fields));
  h->response = 1;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ]; the reason may be left out
 * with its SP ("HTTP/1.1 200", as RFC 7230's erratum allows); reason-phrase = *( HTAB / SP /
 * VCHAR / obs-text ) */
static int parse_status_line(const char *s, const char *e, lc_http_head *h) {
  size_t n = (size_t)(e - s);
  h->why = "invalid status line";
  if (n < 12 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' || s[7] < '0' ||
      s[7] > '9' || s[8] != ' ')
    return 400;
  if (s[5] != '1') {
    h->why = "unsupported HTTP version in the status line";
    return 400;
  }
  int code = 0;
  for (int i = 9; i < 12; i++) {
    if (s[i] < '0' || s[i] > '9') return 400;
    code = code * 10 + (s[i] - '0');
  }
  if (code < 100 || code > 599) return 400;
  if (n > 12 && s[12] != ' ') return 400;
  for (const char *q = s + 12; q < e; q++) {
    unsigned char c = (unsigned char)*q;
    if ((c < 0x20 && c != '\t') || c == 0x7f) return 400;
  }
  h->why = NULL;
  h->minor = s[7] == '0' ? 0 : 1;
  h->status = code;
  return 0;
}

/* why a response's header line was refused (check_field's 400 or 431) */
static const char *field_fault(const char *s, const char *e, int code) {
  if (code == 431) return "more than 100 header fields";
  const char *colon = memchr(s, ':', (size_t)(e - s));
  if (colon != NULL && ieq(s, (size_t)(colon - s), "content-length")) {
    const char *v = colon + 1, *ve = e;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    uint64_t cl;
    return lc_http_parse_length(v, (size_t)(ve - v), &cl) == 0 ? "conflicting Content-Length values"
                                                                : "invalid Content-Length";
  }
  return "invalid header field";
}

/* the whole response head is in: RFC 9112 6.3's framing rules (for every status: a message
 * whose framing fields are at fault is not read, whether it has a body or not) */
static int response_done(lc_http_head *h) {
  if (h->lines == 0) h->why = "empty status line";
  else if (h->has_content_length && h->has_transfer_encoding) h->why = "both Content-Length and Transfer-Encoding";
  else if (h->has_transfer_encoding && h->minor == 0) h->why = "Transfer-Encoding in an HTTP/1.0 response";
  else if (h->te_status != 0) h->why = "a Transfer-Encoding other than chunked";
  else return 0;
  return 400;
}

/* the whole head is in: the checks that need all of its fields */
static int head_done(const char *p, lc_http_head *h) {
  if (h->has_content_length && h->has_transfer_encoding) return 400;
  if (h->te_status != 0) return h->te_status;
  if (h->minor == 1 && h->host_count != 1) return 400;
  if (h->minor == 0 && h->host_count > 1) return 400;
  /* the checks libhttp-parser made after these, in its order: the method, the target, a
   * Content-Length given twice (refused even with the same value; RFC 9110 8.6 allows either) */
  if (!known_method(p + h->method, h->method_len)) return 501;
  if (!target_ok(p + h->target, h->target_len, h->is_connect)) return 400;
  if (h->has_content_length > 1) return 400;
  h->is_head = h->method_len == 4 && memcmp(p + h->method, "HEAD", 4) == 0;
  return 0;
}

/* One pass: a byte is looked at once, whatever the reads that bring it (a line is parsed when
 * its LF has arrived, the partial line after it is only searched for its LF and a bare CR).
 * The verdicts come in the order of a check of the whole head: a bare CR anywhere (400) as
 * soon as it is seen, then the size (431), then the first line that breaks a rule, then the
 * checks of the whole head; a line's fault is kept until the head ends. */
int lc_http_head_parse(const char *p, size_t n, size_t limit, lc_http_head *h, size_t *len) {
  *len = 0;
  size_t window = limit < SIZE_MAX - 4 && n > limit + 4 ? limit + 4 : n;
  while (h->scan < window) {
    const char *s = p + h->scan, *end = p + window;
    const char *from = p + (h->seen > h->scan ? h->seen : h->scan);
    const char *lf = memchr(from, '\n', (size_t)(end - from));
    if (lf == NULL) {
      if (has_bare_cr(from, end)) return 400;
      /* a CR as the last byte is looked at again with the byte after it */
      h->seen = (size_t)(end - p) - (end[-1] == '\r' ? 1 : 0);
      break;
    }
    if (has_bare_cr(from, lf)) return 400;
    h->scan = h->seen = (size_t)(lf + 1 - p);
    const char *e = lf > s && lf[-1] == '\r' ? lf - 1 : lf;
    if (e == s) {                         /* the blank line: the head is complete */
      if (h->scan > limit + 2) return 431;
      if (h->err) return h->err;
      int r = h->response ? response_done(h) : head_done(p, h);
      if (r == 0) *len = h->scan;
      return r;
    }
    if (h->err == 0 && h->response) {
      h->err = h->lines++ == 0 ? parse_status_line(s, e, h) : check_field(p, s, e, h);
      if (h->err != 0) {
        if (h->why == NULL) h->why = field_fault(s, e, h->err);
        h->fault = (size_t)(s - p);
      }
    } else if (h->err == 0) {
      h->err = h->lines++ == 0 ? parse_request_line(p, s, e, h) : check_field(p, s, e, h);
    }
  }
  return n > limit ? 431 : 0;
}
