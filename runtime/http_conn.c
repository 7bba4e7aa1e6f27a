/* http_conn.c: an HTTP connection's state machine. It reads into its input buffer, parses
 * one request at a time (the head by http_head.c, the body by http_body.c), hands a complete
 * request to Lua (http_lua.c) and reads nothing more until the handler has answered, so
 * pipelined requests are answered in order; then keep-alive or the end. It keeps the
 * connection's deadlines (header, body, keep-alive, send, linger) on one timer, pauses
 * reading for a client that does not read its answers (backpressure), writes (try first,
 * copy what is left) and ends with a lingering close.
 * Owns: each http_conn (its uv_tcp_t, its timer, its input buffer, the copy of the current
 * head, the body, its write requests), freed in one place, once both handles have closed
 * (http_conn_closed_cb -> free_conn). */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>

#define LINGER_MS 2000

typedef struct http_write { uv_write_t req; http_conn *c; size_t len; char data[]; } http_write;

static void parse_input(http_conn *c);
static void resume_reading(http_conn *c);
static void write_done(http_conn *c);

/* room for extra more bytes after len in *p (cap *cap): 0, or UV_ENOMEM (nothing changed) */
static int reserve(char **p, size_t *cap, size_t len, size_t extra) {
  if (*cap - len >= extra) return 0;
  if (extra > SIZE_MAX / 2 - len) return UV_ENOMEM;
  size_t n = *cap ? *cap : 1024;
  while (n - len < extra) n *= 2;
  char *q = realloc(*p, n);
  if (q == NULL) return UV_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

/* ---- closing ---- */

static void free_conn(http_conn *c) {
  http_server *s = c->srv;
  lc_http_fire_drain(c);  /* a waiting handler resumes; its next write finds the connection gone */
  if (c->box) *c->box = NULL;
  lc_http_ref_run(c->rt, c->box_ref, 0);
  free(c->in);
  free(c->head);
  free(c->body);
  free(c);
  lc_http_server_conn_gone(s);
}

static void http_conn_closed_cb(uv_handle_t *h) {
  http_conn *c = h->data;
  if (h == (uv_handle_t *)c->tcp) free(c->tcp);
  if (--c->handles_open == 0) free_conn(c);
}

void lc_http_conn_close(http_conn *c) {
  if (c->closed) return;
  /* a request whose response did not end: the status sent, or 499 (the client went away) */
  if (c->state == LC_HTTP_S_HANDLER) lc_http_account(c, c->resp_started ? c->resp_status : 499, c->resp_body, 1);
  c->closed = 1;
  c->state = LC_HTTP_S_CLOSING;
  http_server *s = c->srv;
  if (c->prev) c->prev->next = c->next; else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_close((uv_handle_t *)c->tcp, http_conn_closed_cb);
  uv_close((uv_handle_t *)&c->timer, http_conn_closed_cb);
}

/* ---- deadlines ---- */

static void http_conn_timer_cb(uv_timer_t *t);

/* Connection timeouts are deadlines. The libuv timer moves only when it would fire after the
 * new deadline; one that fires early finds the deadline ahead and re-arms for the rest, and one
 * that fires with nothing due does nothing. A request on a keep-alive connection thus touches
 * no timer (it used to stop and start one three times: a heap removal and insertion each). */
void lc_http_conn_deadline(http_conn *c, int mode, uint64_t ms) {
  uint64_t now = uv_now(c->timer.loop);
  c->timer_mode = mode;
  c->deadline = now + ms;
  if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > c->deadline) {
    c->timer_due = c->deadline;
    uv_timer_start(&c->timer, http_conn_timer_cb, ms, 0);
  }
}

static void http_conn_timer_cb(uv_timer_t *t) {
  http_conn *c = t->data;
  if (c->timer_mode == LC_HTTP_T_NONE) return;
  uint64_t now = uv_now(t->loop);
  if (now < c->deadline) {  /* armed for an earlier deadline that has moved since */
    c->timer_due = c->deadline;
    uv_timer_start(t, http_conn_timer_cb, c->deadline - now, 0);
    return;
  }
  switch (c->timer_mode) {
    case LC_HTTP_T_HEADER:
      if (c->got_bytes) lc_http_reject(c, 408);
      else lc_http_conn_close(c);
      break;
    case LC_HTTP_T_BODY:
      lc_http_reject(c, 408);
      break;
    case LC_HTTP_T_KEEPALIVE:
      /* not idle while an answer is still being written: a slow reader is closed only after
       * send_timeout without taking a byte, whatever its download takes in all */
      if (c->writes_pending > 0 && c->tcp->write_queue_size != c->stall_mark) {
        c->stall_mark = c->tcp->write_queue_size;
        lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, c->srv->send_timeout);
        break;
      }
      lc_http_conn_close(c);
      break;
    case LC_HTTP_T_LINGER:
      lc_http_conn_close(c);
      break;
    case LC_HTTP_T_SEND: /* a handler waits in res:write: the client must take some bytes each send_timeout */
      if (c->writes_pending > 0 && c->tcp->write_queue_size == c->stall_mark) { lc_http_conn_close(c); break; }
      c->stall_mark = c->tcp->write_queue_size;
      lc_http_conn_deadline(c, LC_HTTP_T_SEND, c->srv->send_timeout);
      break;
  }
}

/* ---- writing ---- */

static void http_conn_write_cb(uv_write_t *req, int status) {
  http_write *w = (http_write *)req;
  http_conn *c = w->c;
  c->writes_pending--;
  c->queued_bytes -= w->len;
  free(w);
  /* the client is gone (a reset, a broken pipe): closed now, not at the next write, read or
   * timer; a handler waiting in res:write resumes once it is freed (free_conn) and its next
   * write answers that the connection is closed. UV_ECANCELED: uv_close's own cancelling. */
  if (status < 0) { lc_http_conn_close(c); return; }
  write_done(c);
  if (!c->closed && c->queued_bytes <= LC_HTTP_MAX_QUEUED_OUTPUT / 2) lc_http_fire_drain(c);
}

/* Copies only what the socket did not take at once. */
int lc_http_conn_write(http_conn *c, const char *a, size_t alen, const char *b, size_t blen) {
  if (c->closed || c->ending == 2) return UV_EPIPE;
  size_t total = alen + blen, done = 0;
  if (total == 0) return 0;
  if (c->writes_pending == 0) {
    uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)alen), uv_buf_init((char *)b, (unsigned)blen)};
    int n = uv_try_write((uv_stream_t *)c->tcp, bufs, blen ? 2 : 1);
    if (n > 0) done = (size_t)n;
    else if (n != UV_EAGAIN) { lc_http_conn_close(c); return n; }
    if (done == total) return 0;
  }
  size_t left = total - done;
  http_write *w = malloc(sizeof *w + left);
  if (w == NULL) { lc_http_conn_close(c); return UV_ENOMEM; }
  size_t off = 0;
  if (done < alen) { memcpy(w->data, a + done, alen - done); off = alen - done; }
  size_t bdone = done > alen ? done - alen : 0;
  if (blen > bdone) memcpy(w->data + off, b + bdone, blen - bdone);  /* b may be NULL when blen is 0 */
  w->c = c;
  w->len = left;
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)left);
  int r = uv_write(&w->req, (uv_stream_t *)c->tcp, &buf, 1, http_conn_write_cb);
  if (r != 0) { free(w); lc_http_conn_close(c); return r; }
  c->writes_pending++;
  c->queued_bytes += left;
  if (c->queued_bytes > LC_HTTP_MAX_QUEUED_OUTPUT && !c->read_paused) {
    uv_read_stop((uv_stream_t *)c->tcp);
    c->read_paused = 1;
  }
  return 0;
}

/* ---- ending: shutdown, then a lingering close ---- */

static void http_conn_discard_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static __thread char sink[4096];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(sink, sizeof sink);
}

static void http_conn_discard_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  if (nread < 0) lc_http_conn_close(st->data);
}

static void http_conn_shutdown_cb(uv_shutdown_t *req, int status) {
  http_conn *c = req->data;
  free(req);
  if (c->closed) return;
  if (status != 0 || c->peer_closed) { lc_http_conn_close(c); return; }
  /* lingering close: read and drop what the client still sends until it closes, so our
   * last response is not destroyed by a reset */
  if (uv_read_start((uv_stream_t *)c->tcp, http_conn_discard_alloc_cb, http_conn_discard_read_cb) != 0) {
    lc_http_conn_close(c);
    return;
  }
  lc_http_conn_deadline(c, LC_HTTP_T_LINGER, LINGER_MS);
}

void lc_http_conn_end(http_conn *c) {
  if (c->closed || c->ending) return;
  c->ending = 1;
  c->state = LC_HTTP_S_CLOSING;
  lc_http_conn_no_deadline(c);
  uv_read_stop((uv_stream_t *)c->tcp);
  if (c->writes_pending == 0) write_done(c);
  /* a client that stops taking its last answer is not kept forever */
  else { c->stall_mark = SIZE_MAX; lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, c->srv->send_timeout); }
}

/* everything queued so far is written: shut down an ending connection, or resume reading
 * from one paused for its queue */
static void write_done(http_conn *c) {
  if (c->closed) return;
  if (c->ending && c->writes_pending == 0) {
    c->ending = 2; /* shutting down */
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req == NULL) { lc_http_conn_close(c); return; }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)c->tcp, http_conn_shutdown_cb) != 0) { free(req); lc_http_conn_close(c); }
    return;
  }
  if (c->read_paused && c->queued_bytes < LC_HTTP_MAX_QUEUED_OUTPUT / 2 && c->state != LC_HTTP_S_CLOSING) {
    c->read_paused = 0;
    if (c->state == LC_HTTP_S_HANDLER && c->in_len - c->in_off >= LC_HTTP_MAX_BUFFERED_INPUT) return;
    resume_reading(c);
    /* pipelined requests that waited for the client to read its answers (parse_input) */
    if (c->state == LC_HTTP_S_HEAD && c->in_off < c->in_len) parse_input(c);
  }
}

/* ---- reading ---- */

static void http_conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  http_conn *c = h->data;
  (void)suggested;
  if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
  if (c->in_off > 0 && c->in_cap - c->in_len < LC_HTTP_READ_CHUNK) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
  }
  if (reserve(&c->in, &c->in_cap, c->in_len, LC_HTTP_READ_CHUNK) != 0) { *buf = uv_buf_init(NULL, 0); return; }
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void http_conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = st->data;
  (void)buf;
  if (nread == 0) return;
  if (nread < 0) {
    c->peer_closed = 1;
    uv_read_stop(st);
    /* a client that half-closed after its requests still gets its answers, pipelined ones
     * already read included (the connection ends once they have been answered) */
    if (c->state == LC_HTTP_S_HANDLER && nread == UV_EOF) return;
    lc_http_conn_close(c);
    return;
  }
  c->in_len += (size_t)nread;
  /* a body may take its time, but not stall: header_timeout between reads */
  if (c->state == LC_HTTP_S_BODY) lc_http_conn_deadline(c, LC_HTTP_T_BODY, c->srv->header_timeout);
  if (c->state == LC_HTTP_S_HANDLER) {
    if (c->in_len - c->in_off >= LC_HTTP_MAX_BUFFERED_INPUT) {
      uv_read_stop(st);
      c->read_paused = 1;
    }
    return;
  }
  parse_input(c);
}

static void resume_reading(http_conn *c) {
  if (c->closed || c->state == LC_HTTP_S_CLOSING || c->peer_closed) return;
  if (uv_read_start((uv_stream_t *)c->tcp, http_conn_alloc_cb, http_conn_read_cb) != 0) lc_http_conn_close(c);
}

/* ---- a request ---- */

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
    lc_http_conn_write(c, cont, sizeof cont - 1, NULL, 0);
  }
  /* CONNECT has no body, whatever its head says */
  if (h->is_connect) lc_http_body_init(&c->framer, 0, 0, 0);
  c->state = LC_HTTP_S_BODY;
  return 0;
}

static int append_body(http_conn *c, const char *at, size_t len) {
  int r = reserve(&c->body, &c->body_cap, c->body_len, len);
  if (r != 0) return r;
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

/* Parses buffered input until a request is complete (and answered) or the input runs out. */
static void parse_input(http_conn *c) {
  if (c->in_parse) return;
  c->in_parse = 1;
  http_server *s = c->srv;
  while (!c->closed && c->state != LC_HTTP_S_CLOSING && c->state != LC_HTTP_S_HANDLER && c->in_off < c->in_len) {
    /* a client that sends requests but does not read the answers: the next request waits
     * until the queue is half empty (write_done), so memory stays bounded */
    if (c->state == LC_HTTP_S_HEAD && c->queued_bytes > LC_HTTP_MAX_QUEUED_OUTPUT) {
      if (!c->read_paused) { uv_read_stop((uv_stream_t *)c->tcp); c->read_paused = 1; }
      break;
    }
    char *p = c->in + c->in_off;
    size_t avail = c->in_len - c->in_off;
    if (c->state == LC_HTTP_S_HEAD) {
      while (avail > 0 && (*p == '\r' || *p == '\n')) { p++; avail--; c->in_off++; }
      if (avail == 0) break;
      if (!c->got_bytes) c->req_start = uv_hrtime();
      c->got_bytes = 1;
      if (c->timer_mode != LC_HTTP_T_HEADER) lc_http_conn_deadline(c, LC_HTTP_T_HEADER, s->header_timeout);
      size_t hl = lc_http_head_end(p, avail < s->max_header + 4 ? avail : s->max_header + 4);
      if (hl == LC_HTTP_HEAD_BAD) { lc_http_reject(c, 400); break; }
      if (hl == 0) {
        if (avail > s->max_header) lc_http_reject(c, 431);
        break;
      }
      if (hl > s->max_header + 2) { lc_http_reject(c, 431); break; }
      if (reserve(&c->head, &c->head_cap, 0, hl) != 0) { lc_http_conn_close(c); break; }
      memcpy(c->head, p, hl);
      c->head_len = hl;
      int status = lc_http_head_parse(c->head, hl, &c->h);
      if (status != 0) { lc_http_reject(c, status); break; }
      lc_http_conn_deadline(c, LC_HTTP_T_BODY, s->header_timeout);
      status = start_body(c);
      if (status != 0) { lc_http_reject(c, status); break; }
      p += hl;
      avail -= hl;
      c->in_off += hl;
    }
    /* the body: framed as it arrives, its data copied once into c->body */
    int r;
    for (;;) {
      size_t used, doff, dlen;
      r = lc_http_body_frame(&c->framer, p, avail, s->max_body, s->max_header, &used, &doff, &dlen);
      if (r >= 400) break;
      if (dlen > 0 && append_body(c, p + doff, dlen) != 0) { r = 413; break; }
      p += used;
      avail -= used;
      c->in_off += used;
      if (r == LC_HTTP_BODY_DONE || avail == 0) break;
    }
    if (r >= 400) { lc_http_reject(c, r); break; }
    if (r != LC_HTTP_BODY_DONE) break;
    /* the request is complete: the handler answers it before anything more is read */
    c->state = LC_HTTP_S_HANDLER;
    lc_http_conn_no_deadline(c);
    if (c->upgrade) { c->keepalive = 0; c->in_off = c->in_len; }
    lc_http_call_handler(c);
  }
  c->in_parse = 0;
  /* the client has half-closed and every complete request it sent has been answered */
  if (c->peer_closed && c->state == LC_HTTP_S_HEAD && !c->closed) lc_http_conn_end(c);
}

void lc_http_conn_finish(http_conn *c) {
  if (!c->closed) lc_http_account(c, c->resp_status, c->resp_body, 1); /* else lc_http_conn_close did */
  c->seq++;
  if (c->closed) return;
  if (!c->keepalive || c->resp_close || c->srv->draining) { lc_http_conn_end(c); return; }
  c->state = LC_HTTP_S_HEAD;
  c->got_bytes = 0;
  if (c->body_cap > 65536) { free(c->body); c->body = NULL; c->body_cap = 0; }
  c->body_len = 0;
  c->stall_mark = SIZE_MAX;
  lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, c->srv->keepalive_timeout);
  if (c->read_paused && c->queued_bytes < LC_HTTP_MAX_QUEUED_OUTPUT) {
    c->read_paused = 0;
    resume_reading(c);
  }
  parse_input(c);
}

/* ---- a new connection ---- */

void lc_http_conn_new(http_server *s, uv_tcp_t *tcp) {
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
  c->state = LC_HTTP_S_HEAD;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  s->conns_total++;
  c->rt->http.conns_open++;
  c->rt->http.conns_total++;
  uv_tcp_nodelay(tcp, 1);
  if (s->alog) lc_http_fill_peer(c);  /* while the client is surely there (a reset loses its address) */
  lc_http_conn_deadline(c, LC_HTTP_T_HEADER, s->header_timeout);
  if (uv_read_start((uv_stream_t *)tcp, http_conn_alloc_cb, http_conn_read_cb) != 0) lc_http_conn_close(c);
}
