/* http_response.c: a response on its way out, as nginx's header and chunked filters: the
 * status line, the Date line (built once a second), the handler's headers checked (names are
 * tokens, values have no CR, LF or NUL, Content-Length and Connection are judged,
 * Transfer-Encoding is refused) and the head built, the body framed (Content-Length checked
 * against what is sent, or chunked), and the runtime's own answers to bad input.
 * The framing is the runtime's alone: a handler's mistake is found before anything of it is
 * sent and handed back to Lua as a reason (false, reason). Owns nothing past a call: a head is
 * built on the stack (the heap past 2 KiB) and written (http_conn.c) before the call returns. */
#define _GNU_SOURCE
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *reason(int status) {
  switch (status) {
    case 100: return "Continue"; case 101: return "Switching Protocols";
    case 200: return "OK"; case 201: return "Created"; case 202: return "Accepted";
    case 204: return "No Content"; case 206: return "Partial Content";
    case 301: return "Moved Permanently"; case 302: return "Found"; case 303: return "See Other";
    case 304: return "Not Modified"; case 307: return "Temporary Redirect"; case 308: return "Permanent Redirect";
    case 400: return "Bad Request"; case 401: return "Unauthorized"; case 403: return "Forbidden";
    case 404: return "Not Found"; case 405: return "Method Not Allowed"; case 406: return "Not Acceptable";
    case 408: return "Request Timeout"; case 409: return "Conflict"; case 410: return "Gone";
    case 411: return "Length Required"; case 412: return "Precondition Failed";
    case 413: return "Content Too Large"; case 414: return "URI Too Long"; case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed"; case 422: return "Unprocessable Content"; case 426: return "Upgrade Required";
    case 429: return "Too Many Requests"; case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error"; case 501: return "Not Implemented"; case 502: return "Bad Gateway";
    case 503: return "Service Unavailable"; case 504: return "Gateway Timeout"; case 505: return "HTTP Version Not Supported";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect" :
                    status < 500 ? "Client Error" : "Server Error";
  }
}

/* "Date: Tue, 15 Nov 1994 08:12:31 GMT\r\n", built once a second; *len gets its length */
static const char *date_line(size_t *len) {
  static __thread char buf[64];
  static __thread size_t buf_len;
  static __thread time_t last;
  time_t now = time(NULL);
  if (now != last || buf_len == 0) {
    struct tm tm;
    gmtime_r(&now, &tm);
    buf_len = strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    last = now;
  }
  *len = buf_len;
  return buf;
}

/* ---- the head ---- */

static int valid_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!lc_http_tchar[ch]) return 0;
  }
  return 1;
}

static int valid_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

/* A response head under construction: on the stack while it is small (the usual case), on
 * the heap past that; hb_free releases the heap part. */
typedef struct hbuf { char *p; size_t len, cap; int heap; char stack[2048]; } hbuf;

static void hb_init(hbuf *b) { b->p = b->stack; b->len = 0; b->cap = sizeof b->stack; b->heap = 0; }
static void hb_free(hbuf *b) { if (b->heap) free(b->p); }

static int hb_add(hbuf *b, const char *s, size_t n) {
  if (b->cap - b->len < n) {
    if (n > SIZE_MAX / 4 - b->len) return UV_ENOMEM;   /* the doubling below cannot wrap */
    size_t cap = b->cap * 2;
    while (cap - b->len < n) cap *= 2;
    char *q = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (q == NULL) return UV_ENOMEM;
    if (!b->heap) memcpy(q, b->p, b->len);
    b->p = q;
    b->cap = cap;
    b->heap = 1;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

#define HB_LIT(b, s) hb_add((b), (s), sizeof(s) - 1)

/* decimal digits of v into out (at most 20); returns their count */
static size_t fmt_u64(char *out, unsigned long long v) {
  char tmp[20];
  size_t n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

/* What the handler's headers say about framing. The runtime alone frames a response: the
 * handler may declare a Content-Length (checked against what it sends), never a
 * Transfer-Encoding. */
typedef struct head_flags {
  int length;                 /* a Content-Length was given */
  uint64_t cl;                /* its value */
  int drop_length;            /* a 1xx or 204: the Content-Length is not sent (it must be 0) */
  int date;
} head_flags;

/* one "name: value" line; 0, or -1 with the reason pushed as a Lua string */
static int add_header(lua_State *L, http_conn *c, hbuf *b, head_flags *f, int name_idx, int value_idx) {
  size_t nl, vl;
  const char *name = lua_tolstring(L, name_idx, &nl);
  const char *value = lua_tolstring(L, value_idx, &vl);
  if (name == NULL || !valid_token(name, nl)) {
    lua_pushfstring(L, "invalid header name '%s'", name ? name : "?");
    return -1;
  }
  if (value == NULL || !valid_value(value, vl)) {
    lua_pushfstring(L, "invalid value for header '%s' (CR, LF or NUL)", name);
    return -1;
  }
  if (nl == 14 && strcasecmp(name, "content-length") == 0) {
    uint64_t cl;
    if (lc_http_parse_length(value, vl, &cl) != 0) {
      lua_pushfstring(L, "invalid Content-Length '%s' (digits only)", value);
      return -1;
    }
    if (f->length && cl != f->cl) {
      char prev[24];
      snprintf(prev, sizeof prev, "%llu", (unsigned long long)f->cl);
      lua_pushfstring(L, "two different Content-Length headers (%s and %s)", prev, value);
      return -1;
    }
    if (f->drop_length && cl != 0) {
      lua_pushfstring(L, "Content-Length %s on a response without a body", value);
      return -1;
    }
    int again = f->length;
    f->length = 1;
    f->cl = cl;
    if (again || f->drop_length) return 0;   /* sent once, and never on a 1xx or 204 */
  } else if (nl == 4 && strcasecmp(name, "date") == 0) f->date = 1;
  else if (nl == 17 && strcasecmp(name, "transfer-encoding") == 0) {
    lua_pushliteral(L, "Transfer-Encoding is set by the runtime, not by a handler");
    return -1;
  } else if (nl == 10 && strcasecmp(name, "connection") == 0) {
    /* the runtime's to send, once, saying what it does: a handler's `close` makes it close
     * after this response; anything else (keep-alive, a token of its own) is not sent, so
     * that it never contradicts the runtime's Connection: close */
    if (lc_http_list_has(value, vl, "close")) c->req->resp_close = 1;
    return 0;
  }
  if (hb_add(b, name, nl) || HB_LIT(b, ": ") || hb_add(b, value, vl) || HB_LIT(b, "\r\n")) {
    lua_pushliteral(L, "out of memory");
    return -1;
  }
  return 0;
}

/* The handler's headers: a flat array {name, value, ...} (res:header) or a map
 * {name = value | {values...}} (the `return status, headers, body` shortcut). */
static int add_headers(lua_State *L, http_conn *c, hbuf *b, head_flags *f, int hidx) {
  int len = (int)lua_objlen(L, hidx);
  if (len > 0) {
    for (int i = 1; i + 1 <= len; i += 2) {
      lua_rawgeti(L, hidx, i);
      lua_rawgeti(L, hidx, i + 1);
      if (add_header(L, c, b, f, -2, -1) != 0) return -1;
      lua_pop(L, 2);
    }
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, hidx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) { lua_pushliteral(L, "header names must be strings"); return -1; }
    if (lua_istable(L, -1)) {
      int vidx = lua_gettop(L), n = (int)lua_objlen(L, vidx);
      for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, vidx, i);
        if (add_header(L, c, b, f, vidx - 1, -1) != 0) return -1;
        lua_pop(L, 1);
      }
    } else if (add_header(L, c, b, f, -2, -1) != 0) {
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Builds the status line and headers into b. hidx: the handler's headers or 0.
 * body_len < 0: streaming (chunked for HTTP/1.1 unless the handler set Content-Length).
 * Returns 1 when no body may follow (the status has none, or the request was HEAD), 0 when
 * one does, -1 for a handler's mistake (a bad header, framing that does not match the body)
 * with the reason pushed; b is then freed. Sets c->req->resp_cl: the length a streamed body must
 * have (-1: no declared length). */
static int build_head(lua_State *L, http_conn *c, int status, int hidx, long long body_len, hbuf *b) {
  char line[128];
  size_t n = 0;
  int err = 0;
  memcpy(line, "HTTP/1.", 7);
  line[7] = (char)('0' + c->req->h.minor);
  line[8] = ' ';
  n = 9 + fmt_u64(line + 9, (unsigned long long)status);
  line[n++] = ' ';
  const char *r = reason(status);
  size_t rl = strlen(r);
  memcpy(line + n, r, rl);
  n += rl;
  line[n++] = '\r';
  line[n++] = '\n';
  err |= hb_add(b, line, n);
  int no_body = status < 200 || status == 204 || status == 304;
  head_flags f;
  memset(&f, 0, sizeof f);
  f.drop_length = status < 200 || status == 204;
  if (hidx && add_headers(L, c, b, &f, hidx) != 0) {
    hb_free(b);
    return -1;
  }
  /* a HEAD answer and a 304 may declare the length of the body they do not send */
  int sends_body = !no_body && !c->req->h.is_head;
  if (f.length && sends_body && body_len >= 0 && (unsigned long long)body_len != f.cl) {
    char a[24], d[24];
    snprintf(a, sizeof a, "%llu", (unsigned long long)f.cl);
    snprintf(d, sizeof d, "%lld", body_len);
    lua_pushfstring(L, "Content-Length is %s but the body has %s bytes", a, d);
    hb_free(b);
    return -1;
  }
  c->req->resp_cl = f.length && sends_body ? (long long)f.cl : -1;
  if (!f.date) {
    size_t dl;
    const char *d = date_line(&dl);
    err |= hb_add(b, d, dl);
  }
  if (body_len >= 0) {
    if (!f.length && !no_body) {
      memcpy(line, "Content-Length: ", 16);
      n = 16 + fmt_u64(line + 16, (unsigned long long)body_len);
      line[n++] = '\r';
      line[n++] = '\n';
      err |= hb_add(b, line, n);
    }
  } else if (!f.length && !no_body) {
    if (c->req->h.minor == 1) { err |= HB_LIT(b, "Transfer-Encoding: chunked\r\n"); c->req->resp_chunked = 1; }
    else c->req->resp_close = 1; /* HTTP/1.0: the end of the connection ends the body */
  }
  int keep = c->keepalive && !c->req->resp_close && !c->srv->draining;
  /* one Connection header, the runtime's (a handler's own is never sent: add_header) */
  if (!keep) { c->req->resp_close = 1; err |= HB_LIT(b, "Connection: close\r\n"); }
  else if (c->req->h.minor == 0) err |= HB_LIT(b, "Connection: keep-alive\r\n");
  err |= HB_LIT(b, "\r\n");
  if (err) {
    hb_free(b);
    lua_pushliteral(L, "out of memory");
    return -1;
  }
  return !sends_body;
}

/* a chunk that would take a streamed body past its declared Content-Length: 1 with the mistake
 * pushed (nothing of it is sent); 0 when it fits */
int lc_http_over_length(lua_State *L, http_conn *c, size_t len) {
  if (c->req->resp_cl < 0 || c->req->resp_raw == 2 || len <= (unsigned long long)c->req->resp_cl - c->req->resp_sent) return 0;
  char a[24], d[24], e[24];
  snprintf(a, sizeof a, "%zu", len);
  snprintf(d, sizeof d, "%llu", (unsigned long long)c->req->resp_cl - c->req->resp_sent);
  snprintf(e, sizeof e, "%lld", c->req->resp_cl);
  lua_pushfstring(L, "%s bytes written where %s remain of the Content-Length %s", a, d, e);
  return 1;
}

/* a piece of a streamed body, as a chunk when the response is chunked: 0, or a UV_E* code
 * (the connection is gone) */
int lc_http_write_chunk(http_conn *c, const char *data, size_t len) {
  if (len == 0 || c->req->resp_raw == 2) return 0;
  c->req->resp_body += (double)len;
  c->req->resp_sent += len;
  if (!c->req->resp_chunked) return lc_http_conn_write(c, data, len, NULL, 0);
  char size[24];
  int n = snprintf(size, sizeof size, "%zx\r\n", len);
  int r = lc_http_conn_write(c, size, (size_t)n, data, len);
  if (r != 0) return r;
  return lc_http_conn_write(c, "\r\n", 2, NULL, 0);
}

unsigned long long lc_http_end_body(http_conn *c) {
  if (c->req->resp_chunked && c->req->resp_raw != 2) lc_http_conn_write(c, "0\r\n\r\n", 5, NULL, 0);
  if (c->req->resp_cl >= 0 && c->req->resp_raw != 2 && c->req->resp_sent < (unsigned long long)c->req->resp_cl) {
    c->req->resp_close = 1;
    return (unsigned long long)c->req->resp_cl - c->req->resp_sent;
  }
  return 0;
}

/* ---- the handler's answers ---- */

int lc_http_respond(lua_State *L, http_conn *c, int status, int hidx, const char *body, size_t blen) {
  hbuf b;
  hb_init(&b);
  int no_body = build_head(L, c, status, hidx, (long long)blen, &b);
  if (no_body < 0) { c->req->resp_close = 0; return -1; }
  c->req->resp_started = 1;
  c->req->resp_status = status;
  c->req->resp_body = no_body ? 0 : (double)blen;
  lc_http_conn_write(c, b.p, b.len, body, no_body ? 0 : blen);
  hb_free(&b);
  lc_http_conn_finish(c);
  return 0;
}

int lc_http_write_head(lua_State *L, http_conn *c, int status, int hidx) {
  hbuf b;
  hb_init(&b);
  int no_body = build_head(L, c, status, hidx, -1, &b);
  if (no_body < 0) { c->req->resp_close = c->req->resp_chunked = 0; return -1; }
  c->req->resp_started = 1;
  c->req->resp_status = status;
  c->req->resp_body = 0;
  c->req->resp_sent = 0;
  c->req->resp_raw = no_body ? 2 : 0;  /* 2: nothing of a body may be sent */
  lc_http_conn_write(c, b.p, b.len, NULL, 0);
  hb_free(&b);
  return 0;
}

/* ---- the runtime's own answers ---- */

/* bad input: a canned answer with Connection: close, then the connection ends */
void lc_http_reject(http_conn *c, int status) {
  char buf[512];
  const char *r = reason(status);
  int blen = (int)strlen(r) + 5;
  /* the request line is logged once the head is complete, a body refused for its
   * Content-Length (413 before the body starts) included */
  lc_http_account(c, status, blen, c->req != NULL && c->req->head_len > 0);
  size_t dl;
  const char *d = date_line(&dl);
  int n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\n%.*sContent-Type: text/plain\r\nContent-Length: %d\r\n"
                   "Connection: close\r\n\r\n%d %s\n", status, r, (int)dl, d, blen, status, r);
  c->state = LC_HTTP_S_CLOSING;
  c->ending = 0;
  if (lc_http_conn_write(c, buf, (size_t)n, NULL, 0) == 0) lc_http_conn_end(c);
}

