/* http.c: HTTP/1.x servers and their connections.
 * Owns: an http_server (limits, its list of connections, counters; freed when Lua has closed
 * it and its last connection is gone) and each http_conn (its uv_tcp_t, its timer, its read
 * buffer, the copy of the current request head, the body, and the Lua userdata box handed to
 * handlers; freed when both handles have closed).
 * One request at a time per connection: a complete head is validated strictly
 * (http_head.c), the body is framed by http_body.c, and nothing more is read from the input
 * until the handler has answered, so pipelined requests are answered in order.
 * The handler is called once per request with (conn, seq, method, url, minor, body); every
 * call back from Lua carries seq, so a late answer to a finished request is refused.
 * A response's framing is the runtime's: a handler's Content-Length must match the body it
 * sends (respond, write and finish answer false, reason to a mismatch, and send nothing of it),
 * a streamed body that ends short closes the connection, Transfer-Encoding is never the
 * handler's, and the one Connection header is the runtime's (a handler's `close` asks it to
 * close). Lua is entered from libuv callbacks only under lua_cpcall (see ref_run). */
#define _GNU_SOURCE
#include "lc.h"
#include "http_head.h"
#include "http_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#define MT_SERVER "luacluster.http_server"
#define MT_CONN "luacluster.http_conn"
#define READ_CHUNK 16384
#define MAX_BUFFERED_INPUT 65536      /* unparsed bytes kept while a handler runs */
#define MAX_QUEUED_OUTPUT (1 << 20)   /* stop reading from a client that does not read */
#define LINGER_MS 2000

enum { S_HEAD, S_BODY, S_HANDLER, S_CLOSING };
enum { T_NONE, T_HEADER, T_BODY, T_KEEPALIVE, T_LINGER, T_SEND };

typedef struct http_server http_server;

typedef struct http_conn {
  uv_tcp_t *tcp;
  uv_timer_t timer;
  http_server *srv;
  lc_rt *rt;
  struct http_conn *prev, *next;
  void **box;
  int box_ref;
  char *in;
  size_t in_len, in_off, in_cap;
  char *head;                 /* copy of the current request head */
  size_t head_len, head_cap;
  lc_http_body framer;        /* the body's framing (http_body.c) */
  char *body;
  size_t body_len, body_cap;
  int state, timer_mode, handles_open;
  uint64_t deadline;          /* loop time at which timer_mode's timeout is due */
  uint64_t timer_due;         /* loop time at which the armed libuv timer fires */
  int keepalive, upgrade, in_parse, read_paused, peer_closed, got_bytes, ending, closed;
  uint32_t seq;
  int resp_started, resp_chunked, resp_close, resp_raw;
  long long resp_cl;          /* the Content-Length a streamed body must reach, or -1 */
  unsigned long long resp_sent; /* body bytes of a streamed response so far */
  int writes_pending;
  size_t queued_bytes;
  size_t stall_mark;          /* unsent bytes when the keep-alive timer last fired (progress check) */
  int drain_ref;              /* a handler waiting in res:write for the queue to drain (m_on_drain) */
  uint64_t req_start;         /* uv_hrtime() at the request's first byte (metrics, access log) */
  int resp_status;
  double resp_body;           /* body bytes of the response (access log) */
  char peer[48];              /* the client's address, looked up once for the access log */
  lc_http_head h;             /* last: its fields[] array (1.6 KB) is not zeroed for a new connection */
} http_conn;

struct http_server {
  lc_handle_base base;          /* cb: request callback */
  size_t max_header, max_body;
  uint64_t header_timeout, keepalive_timeout;
  uint64_t send_timeout;        /* a client that takes no byte of its answers this long is closed */
  int max_conns;
  int at_limit;                 /* refusing connections: warned once for this burst */
  double refused;               /* connections closed at the limit (this burst, then total) */
  int closed, draining, drain_ref;
  int in_drain_cb;              /* the drain callback runs: it may close (not free) the server */
  http_conn *conns;
  int nconns;
  double requests, conns_total, closed_since_report;
  lc_alog *alog;                /* access log (access_log.c), or NULL */
};

/* request duration buckets (seconds) of the metrics' histogram: lc_http_stats.dur */
const double lc_http_bounds[LC_HTTP_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

typedef struct hwrite { uv_write_t req; http_conn *c; size_t len; char data[]; } hwrite;

static void conn_close(http_conn *c);
static void parse_input(http_conn *c);
static void resume_reading(http_conn *c);
static void server_maybe_free(http_server *s);
static void account(http_conn *c, int status, double body_bytes, int has_head);

/* ---- small helpers ---- */

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

/* "Date: Tue, 15 Nov 1994 08:12:31 GMT\r\n", rebuilt once a second */
static const char *date_line(void) {
  static __thread char buf[64];
  static __thread time_t last;
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    last = now;
  }
  return buf;
}

static int reserve(char **p, size_t *cap, size_t len, size_t extra) {
  if (*cap - len >= extra) return 0;
  size_t n = *cap ? *cap : 1024;
  while (n - len < extra) n *= 2;
  char *q = realloc(*p, n);
  if (q == NULL) return -1;
  *p = q;
  *cap = n;
  return 0;
}

/* ---- writing ---- */

static void conn_write_done(http_conn *c);
static void clear_timer(http_conn *c);

/* ---- calling Lua from the loop ----
 * A libuv callback runs outside any protected call: a Lua API call that raises there (out of
 * memory in lua_pushlstring, lua_newuserdata, luaL_ref, even luaL_unref when the registry's
 * free list needs a new slot) ends in LuaJIT's panic, which aborts the process. So every Lua
 * call this file makes from a libuv callback goes through lua_cpcall (protected from its first
 * allocation: the C function object is made inside it), here: ref_run for a registry
 * reference, call_handler for a request. The Lua methods below (m_*) are called from Lua and
 * are protected by their callers. */

static void cpcall_failed(lc_rt *rt, const char *what) {
  lua_State *L = rt->L;
  const char *msg = lua_tostring(L, -1);
  lc_log(rt, "error: http: %s: %s", what, msg ? msg : "(an error that is not a string)");
  lua_pop(L, 1);
}

typedef struct ref_call { lc_rt *rt; int ref, call; } ref_call;

static int ref_call_body(lua_State *L) {
  ref_call *r = lua_touserdata(L, 1);
  if (r->call) lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
  if (r->call) lc_call(r->rt, 0);   /* its own pcall: the function's error is logged there */
  return 0;
}

/* Drops the registry reference ref, after calling the function it holds when call is 1. */
static void ref_run(lc_rt *rt, int ref, int call) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
  ref_call r = {rt, ref, call};
  if (lua_cpcall(rt->L, ref_call_body, &r) != 0) cpcall_failed(rt, call ? "a callback" : "a reference");
}

/* Wakes a handler waiting for the output queue to drain (a streamed answer to a client that
 * reads slowly). Called from the loop only (a write done, a connection freed), never from
 * inside a Lua call. */
static void fire_drain(http_conn *c) {
  if (c->drain_ref == LUA_NOREF) return;
  if (c->timer_mode == T_SEND && !c->closed) clear_timer(c);
  int ref = c->drain_ref;
  c->drain_ref = LUA_NOREF;
  ref_run(c->rt, ref, 1);
}

static void write_cb(uv_write_t *req, int status) {
  hwrite *w = (hwrite *)req;
  http_conn *c = w->c;
  c->writes_pending--;
  c->queued_bytes -= w->len;
  free(w);
  /* the client is gone (a reset, a broken pipe): closed now, not at the next write, read or
   * timer; a handler waiting in res:write resumes once it is freed (free_conn) and its next
   * write answers that the connection is closed. UV_ECANCELED: uv_close's own cancelling. */
  if (status < 0) { conn_close(c); return; }
  conn_write_done(c);
  if (!c->closed && c->queued_bytes <= MAX_QUEUED_OUTPUT / 2) fire_drain(c);
}

/* Writes a then b (either may be empty); copies only what the socket did not take at once. */
static int conn_write(http_conn *c, const char *a, size_t alen, const char *b, size_t blen) {
  if (c->closed || c->ending == 2) return -1;
  size_t total = alen + blen, done = 0;
  if (total == 0) return 0;
  if (c->writes_pending == 0) {
    uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)alen), uv_buf_init((char *)b, (unsigned)blen)};
    int n = uv_try_write((uv_stream_t *)c->tcp, bufs, blen ? 2 : 1);
    if (n > 0) done = (size_t)n;
    else if (n != UV_EAGAIN) { conn_close(c); return -1; }
    if (done == total) return 0;
  }
  size_t left = total - done;
  hwrite *w = malloc(sizeof *w + left);
  if (w == NULL) { conn_close(c); return -1; }
  size_t off = 0;
  if (done < alen) { memcpy(w->data, a + done, alen - done); off = alen - done; }
  size_t bdone = done > alen ? done - alen : 0;
  if (blen > bdone) memcpy(w->data + off, b + bdone, blen - bdone);  /* b may be NULL when blen is 0 */
  w->c = c;
  w->len = left;
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)left);
  if (uv_write(&w->req, (uv_stream_t *)c->tcp, &buf, 1, write_cb) != 0) { free(w); conn_close(c); return -1; }
  c->writes_pending++;
  c->queued_bytes += left;
  if (c->queued_bytes > MAX_QUEUED_OUTPUT && !c->read_paused) {
    uv_read_stop((uv_stream_t *)c->tcp);
    c->read_paused = 1;
  }
  return 0;
}

/* ---- closing ---- */

static void free_conn(http_conn *c) {
  http_server *s = c->srv;
  fire_drain(c);  /* a waiting handler resumes; its next write finds the connection gone */
  if (c->box) *c->box = NULL;
  ref_run(c->rt, c->box_ref, 0);
  free(c->in);
  free(c->head);
  free(c->body);
  free(c);
  s->nconns--;
  s->closed_since_report++;
  /* a burst at the connection limit ends when a tenth of the room is free again */
  if (s->at_limit && s->nconns <= s->max_conns - (s->max_conns + 9) / 10) {
    s->at_limit = 0;
    lc_log(s->base.rt, "info: below the connection limit again (%d of max_connections %d open); "
           "%.0f connections were refused", s->nconns, s->max_conns, s->refused);
  }
  s->base.rt->http.conns_open--;
  if (s->draining && s->nconns == 0 && s->drain_ref != LUA_NOREF) {
    int ref = s->drain_ref;
    s->drain_ref = LUA_NOREF;
    /* http.lua's server:close() closes the server from this callback: it is freed below, once
     * the callback has returned, not inside it (a use after free that ASan found) */
    s->in_drain_cb = 1;
    ref_run(s->base.rt, ref, 1);
    s->in_drain_cb = 0;
  }
  server_maybe_free(s);
}

static void handle_closed(uv_handle_t *h) {
  http_conn *c = h->data;
  if (h == (uv_handle_t *)c->tcp) free(c->tcp);
  if (--c->handles_open == 0) free_conn(c);
}

static void conn_close(http_conn *c) {
  if (c->closed) return;
  /* a request whose response did not end: the status sent, or 499 (the client went away) */
  if (c->state == S_HANDLER) account(c, c->resp_started ? c->resp_status : 499, c->resp_body, 1);
  c->closed = 1;
  c->state = S_CLOSING;
  http_server *s = c->srv;
  if (c->prev) c->prev->next = c->next; else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_close((uv_handle_t *)c->tcp, handle_closed);
  uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void timer_cb(uv_timer_t *t);

/* Connection timeouts are deadlines. The libuv timer moves only when it would fire after the
 * new deadline; one that fires early finds the deadline ahead and re-arms for the rest, and one
 * that fires with nothing due does nothing. A request on a keep-alive connection thus touches
 * no timer (it used to stop and start one three times: a heap removal and insertion each). */
static void start_timer(http_conn *c, int mode, uint64_t ms) {
  uint64_t now = uv_now(c->timer.loop);
  c->timer_mode = mode;
  c->deadline = now + ms;
  if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > c->deadline) {
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, timer_cb, ms, 0);
  }
}

static void clear_timer(http_conn *c) {
  c->timer_mode = T_NONE;
}

static void discard_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static __thread char sink[4096];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(sink, sizeof sink);
}

static void discard_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  if (nread < 0) conn_close(st->data);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  http_conn *c = req->data;
  free(req);
  if (c->closed) return;
  if (status != 0 || c->peer_closed) { conn_close(c); return; }
  /* lingering close: read and drop what the client still sends until it closes, so our
   * last response is not destroyed by a reset */
  if (uv_read_start((uv_stream_t *)c->tcp, discard_alloc, discard_read) != 0) { conn_close(c); return; }
  start_timer(c, T_LINGER, LINGER_MS);
}

/* Ends the connection once everything queued has been written. */
static void conn_end(http_conn *c) {
  if (c->closed || c->ending) return;
  c->ending = 1;
  c->state = S_CLOSING;
  clear_timer(c);
  uv_read_stop((uv_stream_t *)c->tcp);
  if (c->writes_pending == 0) conn_write_done(c);
  /* a client that stops taking its last answer is not kept forever */
  else { c->stall_mark = SIZE_MAX; start_timer(c, T_KEEPALIVE, c->srv->send_timeout); }
}

static void conn_write_done(http_conn *c) {
  if (c->closed) return;
  if (c->ending && c->writes_pending == 0) {
    c->ending = 2; /* shutting down */
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req == NULL) { conn_close(c); return; }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)c->tcp, shutdown_cb) != 0) { free(req); conn_close(c); }
    return;
  }
  if (c->read_paused && c->queued_bytes < MAX_QUEUED_OUTPUT / 2 && c->state != S_CLOSING) {
    c->read_paused = 0;
    if (c->state == S_HANDLER && c->in_len - c->in_off >= MAX_BUFFERED_INPUT) return;
    resume_reading(c);
    /* pipelined requests that waited for the client to read its answers (parse_input) */
    if (c->state == S_HEAD && c->in_off < c->in_len) parse_input(c);
  }
}

/* The end of a response: the process's counters (status class, duration bucket), and the
 * access log's line when the server has one. Plain C per response: no Lua, no allocation. */
static const char *field(http_conn *c, const char *name, size_t nlen, size_t *vlen) {
  for (int i = 0; i < c->h.nfields; i++) {
    lc_http_field *f = &c->h.fields[i];
    if (f->name_len == nlen && strncasecmp(c->head + f->name, name, nlen) == 0) {
      *vlen = f->value_len;
      return c->head + f->value;
    }
  }
  *vlen = 0;
  return NULL;
}

static void fill_peer(http_conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
  else if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
}

static void account(http_conn *c, int status, double body_bytes, int has_head) {
  lc_http_stats *st = &c->rt->http;
  uint64_t now = uv_hrtime();
  double secs = c->req_start && now > c->req_start ? (double)(now - c->req_start) / 1e9 : 0;
  int cls = status / 100;
  st->status[cls >= 1 && cls <= 5 ? cls : 0]++;
  int b = 0;
  while (b < LC_HTTP_BUCKETS && secs > lc_http_bounds[b]) b++;
  st->dur[b]++;
  st->dur_sum += secs;
  st->body_bytes += body_bytes;
  if (c->srv->alog == NULL) return;
  lc_alog_entry e;
  memset(&e, 0, sizeof e);
  if (c->peer[0] == '\0' && !c->closed) fill_peer(c);
  e.peer = c->peer;
  if (has_head) {
    e.method = c->head + c->h.method;
    e.method_len = c->h.method_len;
    e.target = c->head + c->h.target;
    e.target_len = c->h.target_len;
    e.minor = c->h.minor;
    e.referer = field(c, "referer", 7, &e.referer_len);
    e.agent = field(c, "user-agent", 10, &e.agent_len);
  }
  e.status = status;
  e.body_bytes = body_bytes;
  e.seconds = secs;
  lc_alog_request(c->srv->alog, &e);
}

/* A canned answer to bad input, then close. */
static void reject(http_conn *c, int status) {
  char buf[512];
  const char *r = reason(status);
  int blen = (int)strlen(r) + 5;
  account(c, status, blen, c->state == S_BODY || c->state == S_HANDLER);
  int n = snprintf(buf, sizeof buf, "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\n"
                   "Connection: close\r\n\r\n%d %s\n", status, r, date_line(), blen, status, r);
  c->state = S_CLOSING;
  c->ending = 0;
  if (conn_write(c, buf, (size_t)n, NULL, 0) == 0) conn_end(c);
}

static void timer_cb(uv_timer_t *t) {
  http_conn *c = t->data;
  if (c->timer_mode == T_NONE) return;
  uint64_t now = uv_now(t->loop);
  if (now < c->deadline) {  /* armed for an earlier deadline that has moved since */
    c->timer_due = c->deadline;
    uv_timer_start(t, timer_cb, c->deadline - now, 0);
    return;
  }
  switch (c->timer_mode) {
    case T_HEADER:
      if (c->got_bytes) reject(c, 408);
      else conn_close(c);
      break;
    case T_BODY:
      reject(c, 408);
      break;
    case T_KEEPALIVE:
      /* not idle while an answer is still being written: a slow reader is closed only after
       * send_timeout without taking a byte, whatever its download takes in all */
      if (c->writes_pending > 0 && c->tcp->write_queue_size != c->stall_mark) {
        c->stall_mark = c->tcp->write_queue_size;
        start_timer(c, T_KEEPALIVE, c->srv->send_timeout);
        break;
      }
      conn_close(c);
      break;
    case T_LINGER:
      conn_close(c);
      break;
    case T_SEND: /* a handler waits in res:write: the client must take some bytes each send_timeout */
      if (c->writes_pending > 0 && c->tcp->write_queue_size == c->stall_mark) { conn_close(c); break; }
      c->stall_mark = c->tcp->write_queue_size;
      start_timer(c, T_SEND, c->srv->send_timeout);
      break;
  }
}

/* ---- reading ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  http_conn *c = h->data;
  (void)suggested;
  if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
  if (c->in_off > 0 && c->in_cap - c->in_len < READ_CHUNK) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  if (reserve(&c->in, &c->in_cap, c->in_len, READ_CHUNK) != 0) { *buf = uv_buf_init(NULL, 0); return; }
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = st->data;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    c->peer_closed = 1;
    uv_read_stop(st);
    /* a client that half-closed after its requests still gets its answers, pipelined ones
     * already read included (the connection ends once they have been answered) */
    if (c->state == S_HANDLER && nread == UV_EOF) return;
    conn_close(c);
    return;
  }
  c->in_len += (size_t)nread;
  /* a body may take its time, but not stall: header_timeout between reads */
  if (c->state == S_BODY) start_timer(c, T_BODY, c->srv->header_timeout);
  if (c->state == S_HANDLER) {
    if (c->in_len - c->in_off >= MAX_BUFFERED_INPUT) {
      uv_read_stop(st);
      c->read_paused = 1;
    }
    return;
  }
  parse_input(c);
}

static void resume_reading(http_conn *c) {
  if (c->closed || c->state == S_CLOSING || c->peer_closed) return;
  if (uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb) != 0) conn_close(c);
}

/* ---- the body ---- */

/* The head is complete and valid: how the connection goes on after this request, and how its
 * body is framed. 0, or the status to refuse the request with. */
static int start_body(http_conn *c) {
  lc_http_head *h = &c->h;
  /* RFC 9112 9.3: HTTP/1.1 persists unless `close`, HTTP/1.0 only with `keep-alive`; a
   * chunked HTTP/1.0 request ends its connection (6.1) */
  c->keepalive = (h->minor == 1 || h->connection_keep_alive) && !h->connection_close &&
                 !(h->minor == 0 && h->has_transfer_encoding);
  /* CONNECT, or an Upgrade the client asks for (Upgrade and Connection: upgrade): what
   * follows this request is not HTTP; the runtime answers it and closes */
  c->upgrade = h->is_connect || (h->upgrade && h->connection_upgrade);
  c->body_len = 0;
  int r = lc_http_body_init(&c->framer, h->has_transfer_encoding, h->has_content_length ? h->content_length : 0,
                            c->srv->max_body);
  if (r >= 400) return r;
  if (h->expect_continue && h->minor == 1 && (h->has_content_length || h->has_transfer_encoding)) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    conn_write(c, cont, sizeof cont - 1, NULL, 0);
  }
  /* CONNECT has no body, whatever its head says */
  if (h->is_connect) lc_http_body_init(&c->framer, 0, 0, 0);
  c->state = S_BODY;
  return 0;
}

static int append_body(http_conn *c, const char *at, size_t len) {
  if (reserve(&c->body, &c->body_cap, c->body_len, len) != 0) return -1;
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

/* ---- requests ---- */

static void push_conn(http_conn *c) {
  lua_State *L = c->rt->L;
  if (c->box == NULL) {
    c->box = lua_newuserdata(L, sizeof(void *));
    *c->box = c;
    luaL_getmetatable(L, MT_CONN);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    c->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->box_ref);
  }
}

/* The handler's call, inside call_handler's lua_cpcall: (conn, seq, method, url, minor, body,
 * path, query). Its own pcall with the traceback (as lc_call) tells call_handler whether
 * http.lua's glue failed before a handler took the request. */
typedef struct handler_call { http_conn *c; int failed; } handler_call;

static int handler_call_body(lua_State *L) {
  handler_call *hc = lua_touserdata(L, 1);
  http_conn *c = hc->c;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->rt->traceback_ref);
  if (!lc_handle_push_cb(&c->srv->base)) { hc->failed = 503; return 0; }
  push_conn(c);
  lua_pushinteger(L, c->seq);
  lua_pushlstring(L, c->head + c->h.method, c->h.method_len);
  lua_pushlstring(L, c->head + c->h.target, c->h.target_len);
  lua_pushinteger(L, c->h.minor);
  if (c->body_len > 0) lua_pushlstring(L, c->body, c->body_len);
  else lua_pushnil(L);
  /* path and query of an origin-form target, split as http.lua's split_target does (the path
   * ends at '?' and at '#', the query is all after the '?'), so that Lua need not */
  const char *t = c->head + c->h.target;
  size_t tl = c->h.target_len;
  if (tl > 0 && t[0] == '/') {
    const char *q = memchr(t, '?', tl);
    size_t plen = q ? (size_t)(q - t) : tl;
    const char *hash = memchr(t, '#', plen);
    if (hash) plen = (size_t)(hash - t);
    if (plen == tl) lua_pushvalue(L, -3);  /* the path is the whole target (url, 3 down) */
    else lua_pushlstring(L, t, plen);
    if (q) lua_pushlstring(L, q + 1, (size_t)(t + tl - q - 1));
    else lua_pushnil(L);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  if (lua_pcall(L, 8, 0, 1) != 0) {
    hc->failed = 500;
    lc_log(c->rt, "error: %s", lua_tostring(L, -1));
  }
  return 0;
}

static void call_handler(http_conn *c) {
  c->srv->requests++;
  c->resp_started = c->resp_chunked = c->resp_close = c->resp_raw = 0;
  c->resp_cl = -1;
  c->resp_sent = 0;
  uint32_t seq = c->seq;
  handler_call hc = {c, 0};
  if (lua_cpcall(c->rt->L, handler_call_body, &hc) != 0) {
    cpcall_failed(c->rt, "a request");
    hc.failed = 500;
  }
  /* no handler took the request (none set, or out of memory before one ran): the runtime
   * answers, unless an answer has started meanwhile */
  if (hc.failed && !c->closed && c->seq == seq && c->state == S_HANDLER && !c->resp_started) reject(c, hc.failed);
}

/* Parses buffered input until a request is complete (and answered) or the
 * input runs out. */
static void parse_input(http_conn *c) {
  if (c->in_parse) return;
  c->in_parse = 1;
  while (!c->closed && c->state != S_CLOSING && c->state != S_HANDLER && c->in_off < c->in_len) {
    /* a client that sends requests but does not read the answers: the next request waits
     * until the queue is half empty (conn_write_done), so memory stays bounded */
    if (c->state == S_HEAD && c->queued_bytes > MAX_QUEUED_OUTPUT) {
      if (!c->read_paused) { uv_read_stop((uv_stream_t *)c->tcp); c->read_paused = 1; }
      break;
    }
    char *p = c->in + c->in_off;
    size_t avail = c->in_len - c->in_off;
    if (c->state == S_HEAD) {
      while (avail > 0 && (*p == '\r' || *p == '\n')) { p++; avail--; c->in_off++; }
      if (avail == 0) break;
      if (!c->got_bytes) c->req_start = uv_hrtime();
      c->got_bytes = 1;
      if (c->timer_mode != T_HEADER) start_timer(c, T_HEADER, c->srv->header_timeout);
      size_t hl = lc_http_head_end(p, avail < c->srv->max_header + 4 ? avail : c->srv->max_header + 4);
      if (hl == LC_HTTP_HEAD_BAD) { reject(c, 400); break; }
      if (hl == 0) {
        if (avail > c->srv->max_header) reject(c, 431);
        break;
      }
      if (hl > c->srv->max_header + 2) { reject(c, 431); break; }
      if (reserve(&c->head, &c->head_cap, 0, hl) != 0) { conn_close(c); break; }
      memcpy(c->head, p, hl);
      c->head_len = hl;
      int status = lc_http_head_parse(c->head, hl, &c->h);
      if (status != 0) { reject(c, status); break; }
      start_timer(c, T_BODY, c->srv->header_timeout);
      status = start_body(c);
      if (status != 0) { reject(c, status); break; }
      p += hl;
      avail -= hl;
      c->in_off += hl;
    }
    /* the body: framed as it arrives, its data copied once into c->body */
    int r;
    for (;;) {
      size_t used, doff, dlen;
      r = lc_http_body_frame(&c->framer, p, avail, c->srv->max_body, c->srv->max_header, &used, &doff, &dlen);
      if (r >= 400) break;
      if (dlen > 0 && append_body(c, p + doff, dlen) != 0) { r = 413; break; }
      p += used;
      avail -= used;
      c->in_off += used;
      if (r == LC_HTTP_BODY_DONE || avail == 0) break;
    }
    if (r >= 400) { reject(c, r); break; }
    if (r != LC_HTTP_BODY_DONE) break;
    /* the request is complete: the handler answers it before anything more is read */
    c->state = S_HANDLER;
    clear_timer(c);
    if (c->upgrade) { c->keepalive = 0; c->in_off = c->in_len; }
    call_handler(c);
  }
  c->in_parse = 0;
  /* the client has half-closed and every complete request it sent has been answered */
  if (c->peer_closed && c->state == S_HEAD && !c->closed) conn_end(c);
}

/* The handler has answered: back to reading the next request, or close. */
static void finish_request(http_conn *c) {
  if (!c->closed) account(c, c->resp_status, c->resp_body, 1); /* else conn_close did */
  c->seq++;
  if (c->closed) return;
  if (!c->keepalive || c->resp_close || c->srv->draining) { conn_end(c); return; }
  c->state = S_HEAD;
  c->got_bytes = 0;
  if (c->body_cap > 65536) { free(c->body); c->body = NULL; c->body_cap = 0; }
  c->body_len = 0;
  c->stall_mark = SIZE_MAX;
  start_timer(c, T_KEEPALIVE, c->srv->keepalive_timeout);
  if (c->read_paused && c->queued_bytes < MAX_QUEUED_OUTPUT) {
    c->read_paused = 0;
    resume_reading(c);
  }
  parse_input(c);
}

/* ---- accepting ---- */

static void take_conn(void *ctx, uv_tcp_t *tcp) {
  http_server *s = ctx;
  if (s->closed || s->draining || (s->max_conns > 0 && s->nconns >= s->max_conns)) {
    if (s->max_conns > 0 && s->nconns >= s->max_conns && !s->closed && !s->draining) {
      /* one line per burst, not one per connection: a flood must not flood the log too */
      if (!s->at_limit) {
        s->at_limit = 1;
        s->refused = 0;
        lc_log(s->base.rt, "warn: connection limit reached: %d connections open (max_connections %d); "
               "new connections are closed until some end", s->nconns, s->max_conns);
      }
      s->refused++;
    }
    uv_close((uv_handle_t *)tcp, lc_free_handle_cb);
    return;
  }
  /* zeroed up to the head's field array: lc_http_head_parse fills (and counts) those it uses */
  http_conn *c = malloc(sizeof *c);
  if (c == NULL) { uv_close((uv_handle_t *)tcp, lc_free_handle_cb); return; }
  memset(c, 0, offsetof(http_conn, h) + offsetof(lc_http_head, fields));
  c->tcp = tcp;
  c->srv = s;
  c->rt = s->base.rt;
  c->box_ref = LUA_NOREF;
  c->drain_ref = LUA_NOREF;
  tcp->data = c;
  uv_timer_init(tcp->loop, &c->timer);
  c->timer.data = c;
  c->handles_open = 2;
  c->state = S_HEAD;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->conns_total++;
  c->rt->http.conns_open++;
  c->rt->http.conns_total++;
  uv_tcp_nodelay(tcp, 1);
  if (s->alog) fill_peer(c);  /* while the client is surely there (a reset loses its address) */
  start_timer(c, T_HEADER, s->header_timeout);
  if (uv_read_start((uv_stream_t *)tcp, alloc_cb, read_cb) != 0) conn_close(c);
}

static void server_maybe_free(http_server *s) {
  if (s->closed && s->nconns == 0 && s->base.self_ref == LUA_NOREF && !s->in_drain_cb) {
    ref_run(s->base.rt, s->drain_ref, 0);
    free(s);
  }
}

/* ---- Lua: server ---- */

/* An option as a number in [0, max]: http.lua has refused what is not a number >= 0; a value
 * past what the field holds (math.huge: "no limit") is max, not a cast out of range (undefined:
 * on x86-64 it gave 0, so max_header_size = math.huge refused every request with 431). */
static lua_Number opt_num(lua_State *L, int t, const char *k, lua_Number def, lua_Number max) {
  lua_getfield(L, t, k);
  lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  if (!(v >= 0)) v = def;  /* NaN too */
  return v > max ? max : v;
}

#define MAX_MS 9007199254740992.0     /* 2^53 ms: loop time + a timeout stays in 64 bits */
/* a head (and a trailer section) is at most 80 KiB with its blank line, whatever
 * max_header_size says: the limit libhttp-parser set when it read heads, kept */
#define MAX_HEAD_BYTES 81918.0
#define MAX_BODY_BYTES 9007199254740992.0

/* core.http_server_new(cb, opts) */
static int f_server_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  http_server *s = lc_handle_new(L, sizeof *s, MT_SERVER);
  lc_handle_set_cb(L, &s->base, 1);
  s->drain_ref = LUA_NOREF;
  s->max_header = 16384;
  s->max_body = 1048576;
  s->header_timeout = 10000;
  s->keepalive_timeout = 5000;
  s->send_timeout = 60000;
  if (lua_istable(L, 2)) {
    s->max_header = (size_t)opt_num(L, 2, "max_header_size", 16384, MAX_HEAD_BYTES);
    s->max_body = (size_t)opt_num(L, 2, "max_body_size", 1048576, MAX_BODY_BYTES);
    s->header_timeout = (uint64_t)opt_num(L, 2, "header_timeout", 10000, MAX_MS);
    s->keepalive_timeout = (uint64_t)opt_num(L, 2, "keepalive_timeout", 5000, MAX_MS);
    s->send_timeout = (uint64_t)opt_num(L, 2, "send_timeout", 60000, MAX_MS);
    s->max_conns = (int)opt_num(L, 2, "max_connections", 0, 2147483647.0);
  }
  return 1;
}

static int m_srv_listen_on(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, MT_SERVER);
  int r = lc_tcp_accept_with(L, 2, take_conn, s);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:serve(sock): serve a connection accepted elsewhere (passed in a message) */
static int m_srv_serve(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, MT_SERVER);
  uv_tcp_t *tcp = lc_tcp_detach(L, 2);
  if (tcp == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot serve this socket (closed, listening, or with writes in flight)");
    return 2;
  }
  take_conn(s, tcp);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_srv_sink(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, MT_SERVER);
  int key = (int)luaL_checkinteger(L, 2);
  int r = lua_toboolean(L, 3) ? lc_sink_add(s->base.rt, key, take_conn, s) : (lc_sink_remove(s->base.rt, key, s), 0);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:drain(fn): no new connections; idle keep-alive connections close when their client
 * next sends a request (answered with Connection: close) or their keep-alive timer ends;
 * fn() runs once the last connection is gone. */
static int m_srv_drain(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, MT_SERVER);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  s->draining = 1;
  if (s->nconns == 0) { lua_pushvalue(L, 2); lua_call(L, 0, 0); return 0; }
  luaL_unref(L, LUA_REGISTRYINDEX, s->drain_ref);
  lua_pushvalue(L, 2);
  s->drain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* connections that have not started a request get the shorter of their timers */
  for (http_conn *c = s->conns; c; c = c->next)
    if (c->state == S_HEAD && !c->got_bytes && c->timer_mode == T_HEADER) start_timer(c, T_KEEPALIVE, s->keepalive_timeout);
  return 0;
}

static int m_srv_close(lua_State *L) {
  http_server *s = lc_handle_test(L, 1, MT_SERVER);
  if (s == NULL) return 0;
  s->closed = 1;
  s->draining = 1;
  lc_handle_release(&s->base);
  server_maybe_free(s);
  return 0;
}

static int m_srv_stats(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, MT_SERVER);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, s->requests); lua_setfield(L, -2, "requests");
  lua_pushinteger(L, s->nconns); lua_setfield(L, -2, "connections");
  lua_pushnumber(L, s->conns_total); lua_setfield(L, -2, "connections_total");
  lua_pushnumber(L, s->closed_since_report); lua_setfield(L, -2, "closed");
  if (lua_toboolean(L, 2)) s->closed_since_report = 0;
  return 1;
}

/* srv:set_access_log(log | nil): log is a core.access_log_open object (kept alive by the caller) */
static int m_srv_set_access_log(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, MT_SERVER);
  s->alog = lua_isnoneornil(L, 2) ? NULL : lc_alog_check(L, 2);
  return 0;
}

/* core.http_stats() -> the process's HTTP counters (every server of this state) */
static int f_http_stats(lua_State *L) {
  lc_http_stats *st = &lc_rt_get(L)->http;
  lua_createtable(L, 0, 8);
  lua_createtable(L, 5, 1);
  for (int i = 0; i <= 5; i++) { lua_pushnumber(L, st->status[i]); lua_rawseti(L, -2, i); }
  lua_setfield(L, -2, "status");
  lua_createtable(L, LC_HTTP_BUCKETS + 1, 0);
  for (int i = 0; i <= LC_HTTP_BUCKETS; i++) { lua_pushnumber(L, st->dur[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "buckets");
  lua_createtable(L, LC_HTTP_BUCKETS, 0);
  for (int i = 0; i < LC_HTTP_BUCKETS; i++) { lua_pushnumber(L, lc_http_bounds[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "bounds");
  lua_pushnumber(L, st->dur_sum); lua_setfield(L, -2, "duration_sum");
  lua_pushnumber(L, st->body_bytes); lua_setfield(L, -2, "body_bytes");
  lua_pushnumber(L, st->conns_open); lua_setfield(L, -2, "connections");
  lua_pushnumber(L, st->conns_total); lua_setfield(L, -2, "connections_total");
  return 1;
}

/* ---- Lua: connection (the handle a handler answers through) ---- */

static http_conn *check_conn(lua_State *L, uint32_t *seq_ok) {
  http_conn *c = lc_handle_test(L, 1, MT_CONN);
  uint32_t seq = (uint32_t)luaL_checkinteger(L, 2);
  *seq_ok = c != NULL && !c->closed && c->seq == seq && c->state == S_HANDLER;
  return c;
}

static int push_gone(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "the request is finished or its connection is closed");
  return 2;
}

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

/* Builds the status line and headers. hidx: a flat Lua array {name, value, ...} or nil.
 * body_len < 0: streaming (chunked for HTTP/1.1 unless the handler set Content-Length). */
/* A response head under construction: on the stack while it is small (the usual case), on
 * the heap past that; hb_free releases the heap part. */
typedef struct hbuf { char *p; size_t len, cap; int heap; char stack[2048]; } hbuf;

static void hb_init(hbuf *b) { b->p = b->stack; b->len = 0; b->cap = sizeof b->stack; b->heap = 0; }
static void hb_free(hbuf *b) { if (b->heap) free(b->p); }

static int hb_add(hbuf *b, const char *s, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap * 2;
    while (cap - b->len < n) cap *= 2;
    char *q = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (q == NULL) return -1;
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
  unsigned long long cl;      /* its value */
  int drop_length;            /* a 1xx or 204: the Content-Length is not sent (it must be 0) */
  int date;
} head_flags;

/* whether a Connection value (a comma-separated list of tokens) holds the token `close` */
static int has_close_token(const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t start = i;
    while (i < n && v[i] != ',') i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (end - start == 5 && strncasecmp(v + start, "close", 5) == 0) return 1;
  }
  return 0;
}

/* a Content-Length value as the handler gave it: 1 to 18 digits, nothing else */
static int parse_length(const char *v, size_t n, unsigned long long *out) {
  if (n == 0 || n > 18) return -1;
  unsigned long long x = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    x = x * 10 + (unsigned long long)(v[i] - '0');
  }
  *out = x;
  return 0;
}

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
    unsigned long long cl;
    if (parse_length(value, vl, &cl) != 0) {
      lua_pushfstring(L, "invalid Content-Length '%s' (digits only)", value);
      return -1;
    }
    if (f->length && cl != f->cl) {
      char prev[24];
      snprintf(prev, sizeof prev, "%llu", f->cl);
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
    if (has_close_token(value, vl)) c->resp_close = 1;
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
 * with the reason pushed; b is then freed. Sets c->resp_cl: the length a streamed body must
 * have (-1: no declared length). */
static int build_head(lua_State *L, http_conn *c, int status, int hidx, long long body_len, hbuf *b) {
  char line[128];
  size_t n = 0;
  int err = 0;
  memcpy(line, "HTTP/1.", 7);
  line[7] = (char)('0' + c->h.minor);
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
  int sends_body = !no_body && !c->h.is_head;
  if (f.length && sends_body && body_len >= 0 && (unsigned long long)body_len != f.cl) {
    char a[24], d[24];
    snprintf(a, sizeof a, "%llu", f.cl);
    snprintf(d, sizeof d, "%lld", body_len);
    lua_pushfstring(L, "Content-Length is %s but the body has %s bytes", a, d);
    hb_free(b);
    return -1;
  }
  c->resp_cl = f.length && sends_body ? (long long)f.cl : -1;
  if (!f.date) err |= hb_add(b, date_line(), strlen(date_line()));
  if (body_len >= 0) {
    if (!f.length && !no_body) {
      memcpy(line, "Content-Length: ", 16);
      n = 16 + fmt_u64(line + 16, (unsigned long long)body_len);
      line[n++] = '\r';
      line[n++] = '\n';
      err |= hb_add(b, line, n);
    }
  } else if (!f.length && !no_body) {
    if (c->h.minor == 1) { err |= HB_LIT(b, "Transfer-Encoding: chunked\r\n"); c->resp_chunked = 1; }
    else c->resp_close = 1; /* HTTP/1.0: the end of the connection ends the body */
  }
  int keep = c->keepalive && !c->resp_close && !c->srv->draining;
  /* one Connection header, the runtime's (a handler's own is never sent: add_header) */
  if (!keep) { c->resp_close = 1; err |= HB_LIT(b, "Connection: close\r\n"); }
  else if (c->h.minor == 0) err |= HB_LIT(b, "Connection: keep-alive\r\n");
  err |= HB_LIT(b, "\r\n");
  if (err) {
    hb_free(b);
    lua_pushliteral(L, "out of memory");
    return -1;
  }
  return !sends_body;
}

/* a handler's mistake, found before anything was sent: false, reason (http.lua raises it at
 * the handler's line, or logs it with the handler's location, and answers 500) */
static int push_mistake(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

/* conn:respond(seq, status, headers, body) -> true | nil, err | false, mistake: a whole response */
static int m_respond(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  int status = (int)luaL_checkinteger(L, 3);
  int hidx = lua_istable(L, 4) ? 4 : 0;
  size_t blen = 0;
  const char *body = lua_isnoneornil(L, 5) ? "" : luaL_checklstring(L, 5, &blen);
  if (status < 100 || status > 999) return luaL_argerror(L, 3, "status must be from 100 to 999");
  if (!ok || c->resp_started) return push_gone(L);
  hbuf b;
  hb_init(&b);
  int no_body = build_head(L, c, status, hidx, (long long)blen, &b);
  if (no_body < 0) { c->resp_close = 0; return push_mistake(L); }
  c->resp_started = 1;
  c->resp_status = status;
  c->resp_body = no_body ? 0 : (double)blen;
  conn_write(c, b.p, b.len, body, no_body ? 0 : blen);
  hb_free(&b);
  finish_request(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:write_head(seq, status, headers) -> true | nil, err | false, mistake: starts a
 * streamed response */
static int m_write_head(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  int status = (int)luaL_checkinteger(L, 3);
  int hidx = lua_istable(L, 4) ? 4 : 0;
  if (status < 100 || status > 999) return luaL_argerror(L, 3, "status must be from 100 to 999");
  if (!ok || c->resp_started) return push_gone(L);
  hbuf b;
  hb_init(&b);
  int no_body = build_head(L, c, status, hidx, -1, &b);
  if (no_body < 0) { c->resp_close = c->resp_chunked = 0; return push_mistake(L); }
  c->resp_started = 1;
  c->resp_status = status;
  c->resp_body = 0;
  c->resp_sent = 0;
  c->resp_raw = no_body ? 2 : 0;  /* 2: nothing of a body may be sent */
  conn_write(c, b.p, b.len, NULL, 0);
  hb_free(&b);
  lua_pushboolean(L, 1);
  return 1;
}

/* a chunk that would take a streamed body past its declared Content-Length: false, mistake
 * (nothing of it is sent); 0 when it fits */
static int over_length(lua_State *L, http_conn *c, size_t len) {
  if (c->resp_cl < 0 || c->resp_raw == 2 || len <= (unsigned long long)c->resp_cl - c->resp_sent) return 0;
  char a[24], d[24], e[24];
  snprintf(a, sizeof a, "%zu", len);
  snprintf(d, sizeof d, "%llu", (unsigned long long)c->resp_cl - c->resp_sent);
  snprintf(e, sizeof e, "%lld", c->resp_cl);
  lua_pushfstring(L, "%s bytes written where %s remain of the Content-Length %s", a, d, e);
  return push_mistake(L);
}

static int write_chunk(http_conn *c, const char *data, size_t len) {
  if (len == 0 || c->resp_raw == 2) return 0;
  c->resp_body += (double)len;
  c->resp_sent += len;
  if (!c->resp_chunked) return conn_write(c, data, len, NULL, 0);
  char size[24];
  int n = snprintf(size, sizeof size, "%zx\r\n", len);
  if (conn_write(c, size, (size_t)n, data, len) != 0) return -1;
  return conn_write(c, "\r\n", 2, NULL, 0);
}

/* conn:write(seq, chunk) -> true, queued | nil, err | false, mistake */
static int m_write(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  if (!ok || !c->resp_started) return push_gone(L);
  if (over_length(L, c, len)) return 2;
  if (write_chunk(c, data, len) != 0) return push_gone(L);
  lua_pushboolean(L, 1);
  lua_pushnumber(L, (lua_Number)c->queued_bytes);
  return 2;
}

/* conn:on_drain(seq, fn) -> true: fn() runs once the queued output is down to half the limit
 * (or the connection is gone); false: nothing to wait for. res:write waits this way. */
static int m_on_drain(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!ok || c->queued_bytes <= MAX_QUEUED_OUTPUT / 2 || c->drain_ref != LUA_NOREF) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushvalue(L, 3);
  c->drain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->stall_mark = SIZE_MAX;
  start_timer(c, T_SEND, c->srv->send_timeout);
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:finish(seq [, chunk]) -> true [, short] | nil, err | false, mistake. short: the body
 * ended that many bytes before its declared Content-Length, so the connection is closed once
 * the response is out (the client sees a short body, not the start of the next response). */
static int m_finish(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  size_t len = 0;
  const char *data = lua_isnoneornil(L, 3) ? NULL : luaL_checklstring(L, 3, &len);
  if (!ok || !c->resp_started) return push_gone(L);
  if (data && over_length(L, c, len)) return 2;
  if (data) write_chunk(c, data, len);
  if (c->resp_chunked && c->resp_raw != 2) conn_write(c, "0\r\n\r\n", 5, NULL, 0);
  unsigned long long short_by = 0;
  if (c->resp_cl >= 0 && c->resp_raw != 2 && c->resp_sent < (unsigned long long)c->resp_cl) {
    short_by = (unsigned long long)c->resp_cl - c->resp_sent;
    c->resp_close = 1;
  }
  finish_request(c);
  lua_pushboolean(L, 1);
  if (short_by == 0) return 1;
  lua_pushnumber(L, (lua_Number)short_by);
  return 2;
}

/* conn:headers(seq) -> { lower-case name = value } (repeated names joined by ", ") */
static int m_headers(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  if (!ok) return push_gone(L);
  lua_createtable(L, 0, c->h.nfields);
  for (int i = 0; i < c->h.nfields; i++) {
    lc_http_field *f = &c->h.fields[i];
    /* lower-cased in place, whole: the copy of the head is ours, and only case-insensitive
     * lookups read its names after this (a name is as long as max_header_size allows; one cut
     * at a fixed size merged two names that differ after it) */
    char *name = c->head + f->name;
    for (size_t k = 0; k < f->name_len; k++)
      if (name[k] >= 'A' && name[k] <= 'Z') name[k] = (char)(name[k] + 32);
    lua_pushlstring(L, name, f->name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, c->head + f->value, f->value_len);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, c->head + f->value, f->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  return 1;
}

static int m_peer(lua_State *L) {
  http_conn *c = lc_handle_test(L, 1, MT_CONN);
  if (c == NULL || c->closed) return 0;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
  char ip[64];
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_pushinteger(L, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_pushinteger(L, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  }
  return 2;
}

/* conn:abort(): closes the connection at once (a handler that failed mid-stream) */
static int m_abort(lua_State *L) {
  http_conn *c = lc_handle_test(L, 1, MT_CONN);
  if (c && !c->closed) conn_close(c);
  return 0;
}

static int m_is_open(lua_State *L) {
  uint32_t ok;
  check_conn(L, &ok);
  lua_pushboolean(L, ok);
  return 1;
}

void lc_open_http(lua_State *L) {
  static const luaL_Reg srv_methods[] = {
    {"listen_on", m_srv_listen_on}, {"sink", m_srv_sink}, {"serve", m_srv_serve}, {"drain", m_srv_drain},
    {"close", m_srv_close}, {"stats", m_srv_stats}, {"set_access_log", m_srv_set_access_log}, {NULL, NULL},
  };
  lc_newmetatable(L, MT_SERVER, srv_methods);
  static const luaL_Reg conn_methods[] = {
    {"respond", m_respond}, {"write_head", m_write_head}, {"write", m_write}, {"finish", m_finish},
    {"on_drain", m_on_drain},
    {"headers", m_headers}, {"peer", m_peer}, {"abort", m_abort}, {"is_open", m_is_open}, {NULL, NULL},
  };
  lc_newmetatable(L, MT_CONN, conn_methods);
  lua_pushcfunction(L, f_server_new);
  lua_setfield(L, -2, "http_server_new");
  lua_pushcfunction(L, f_http_stats);
  lua_setfield(L, -2, "http_stats");
}
