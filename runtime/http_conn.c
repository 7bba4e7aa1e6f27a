/* http_conn.c: an HTTP connection's state machine. It reads, parses one request at a time in
 * place (the head by http_head.c in one pass, the body by http_body.c), hands a complete
 * request to Lua (http_lua.c) and parses nothing more until the handler has answered, so
 * pipelined requests are answered in order; then keep-alive or the end. It keeps the
 * connection's deadlines (header, body, keep-alive, send, linger) in its server's lists, pauses
 * reading for a client that does not read its answers (backpressure), writes through a write
 * queue (write_queue.c: the answers to the requests of one read leave in one write, any
 * other output once per loop turn) and ends with a lingering close.
 * Memory follows the requests, not the connections: a read goes into the server's shared
 * buffer and only what must stay (a head whose request is not answered yet, unparsed bytes)
 * is copied into a buffer of the connection's own; a request's parse state and body are an
 * http_req (the server's free list); the write queue exists while output is pending. An idle
 * keep-alive connection holds its http_conn and its uv_tcp_t, and nothing in Lua (Lua names
 * it by its address: see http_int.h).
 * Owns: each http_conn (its uv_tcp_t, its own input buffer, its request, its write queue),
 * released in one place, once its handle has closed (http_conn_closed_cb -> free_conn): what
 * it holds is freed, its own memory goes to the runtime's spares (freed with the Lua state,
 * lc_http_free_spares). */
#include "http_int.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>

static void parse_input(http_conn *c);
static void resume_reading(http_conn *c);
static void pause_reading(http_conn *c, int out);
static int update_pauses(http_conn *c);
static void write_done(http_conn *c);

/* ---- closing ---- */

static void free_conn(http_conn *c) {
  http_server *s = c->srv;
  lc_rt *rt = s->base.rt;
  lc_http_fire_drain(c);  /* a waiting handler resumes; its next write finds the connection gone */
  if (c->in != s->rbuf) free(c->in);
  if (c->req && c->req->ws) { lc_ws_conn *ws = c->req->ws; c->req->ws = NULL; lc_ws_conn_free(c, ws); }
  if (c->req) lc_http_server_req_done(s, c->req);
  free(c->wq);            /* closed with the stream (lc_http_conn_close), its writes all called back */
  free(c->peer);
  lc_tls_free(c->tls);
  c->tls = NULL;
  if (!c->lua_named) {     /* Lua never had its address: nothing can name it */
    free(c);
    lc_http_server_conn_gone(s);
    return;
  }
  /* its memory stays an http_conn (Lua may hold its address): closed, with its seqs, among
   * the spares; nothing else in it is read until it is reused */
  c->in = NULL;
  c->req = NULL;
  c->wq = NULL;
  c->peer = NULL;
  c->tcp = NULL;
  c->srv = NULL;
  c->dl_next = rt->http_spares;
  rt->http_spares = c;
  rt->http_nspares++;
  lc_http_server_conn_gone(s);
}

void lc_http_free_spares(lc_rt *rt) {
  while (rt->http_spares) {
    http_conn *c = rt->http_spares;
    rt->http_spares = c->dl_next;
    free(c);
  }
  rt->http_nspares = 0;
}

static void http_conn_closed_cb(uv_handle_t *h) {
  http_conn *c = h->data;
  free(c->tcp);
  free_conn(c);
}

void lc_http_conn_close(http_conn *c) {
  if (c->closed) return;
  /* a request whose response did not end: the status sent, or 499 (the client went away) */
  if (c->state == LC_HTTP_S_HANDLER) {
    http_req *r = c->req;
    lc_http_account(c, r->resp_started ? r->resp_status : 499, r->resp_body, 1);
  }
  c->closed = 1;
  c->state = LC_HTTP_S_CLOSING;
  lc_http_conn_no_deadline(c);
  if (c->wq) lc_wq_close(c->wq);
  uv_close((uv_handle_t *)c->tcp, http_conn_closed_cb);
}

/* ---- deadlines ----
 * A connection's timeouts are deadlines in its server's lists, one list per timeout (header,
 * keep-alive, send, linger): every deadline of a list is now plus the same timeout, so a
 * deadline set now goes last and each list stays in order without a heap. One timer per server
 * fires for the earliest; it moves only when it would fire after a new deadline. Moving a
 * connection's deadline is an unlink and an append; a connection holds no timer of its own. */

static void dl_unlink(http_conn *c) {
  if (c->dl_list == 0) return;
  http_server *s = c->srv;
  int k = c->dl_list - 1;
  if (c->dl_prev) c->dl_prev->dl_next = c->dl_next; else s->dl[k].head = c->dl_next;
  if (c->dl_next) c->dl_next->dl_prev = c->dl_prev; else s->dl[k].tail = c->dl_prev;
  c->dl_prev = c->dl_next = NULL;
  c->dl_list = 0;
  /* nothing due: the timer does not keep the loop alive for a deadline that has gone */
  if (--s->ndl == 0) uv_timer_stop(s->timer);
}

static uint64_t dl_timeout(http_server *s, int which) {
  switch (which) {
    case LC_HTTP_DL_HEADER: return s->header_timeout;
    case LC_HTTP_DL_KEEPALIVE: return s->keepalive_timeout;
    case LC_HTTP_DL_SEND: return s->send_timeout;
    default: return LC_HTTP_LINGER_MS;
  }
}

static void dl_arm(http_server *s, uint64_t now, uint64_t due) {
  if (uv_is_active((uv_handle_t *)s->timer) && s->timer_due <= due) return;
  s->timer_due = due;
  uv_timer_start(s->timer, lc_http_server_timer_cb, due > now ? due - now : 0, 0);
}

/* in its list's order: from the tail, where a deadline of a list with one timeout always goes */
void lc_http_conn_deadline_at(http_conn *c, int mode, int which, uint64_t due) {
  http_server *s = c->srv;
  uint64_t now = uv_now(s->timer->loop);
  dl_unlink(c);
  c->timer_mode = (unsigned char)mode;
  c->deadline = due;
  c->dl_list = (unsigned char)(which + 1);
  s->ndl++;
  http_conn *p = s->dl[which].tail;
  while (p && p->deadline > due) p = p->dl_prev;
  c->dl_prev = p;
  c->dl_next = p ? p->dl_next : s->dl[which].head;
  if (p) p->dl_next = c; else s->dl[which].head = c;
  if (c->dl_next) c->dl_next->dl_prev = c; else s->dl[which].tail = c;
  dl_arm(s, now, c->deadline);
}

void lc_http_conn_deadline(http_conn *c, int mode, int which) {
  http_server *s = c->srv;
  lc_http_conn_deadline_at(c, mode, which, uv_now(s->timer->loop) + dl_timeout(s, which));
}

void lc_http_conn_no_deadline(http_conn *c) {
  dl_unlink(c);
  c->timer_mode = LC_HTTP_T_NONE;
}

static size_t writing(http_conn *c) {   /* bytes libuv has not written yet, or 0 */
  return c->wq && c->wq->inflight > 0 ? c->tcp->write_queue_size + 1 : 0;
}

/* the deadline of c has come */
static void expire(http_conn *c, int mode) {
  switch (mode) {
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
      if (writing(c) && c->tcp->write_queue_size != c->stall_mark) {
        c->stall_mark = c->tcp->write_queue_size;
        lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, LC_HTTP_DL_SEND);
        break;
      }
      lc_http_conn_close(c);
      break;
    case LC_HTTP_T_LINGER:
      lc_http_conn_close(c);
      break;
    case LC_HTTP_T_SEND: /* a handler waits in res:write: the client must take some bytes each send_timeout */
      if (writing(c) && c->tcp->write_queue_size == c->stall_mark) { lc_http_conn_close(c); break; }
      c->stall_mark = c->tcp->write_queue_size;
      /* a WebSocket's queue that went down with no sender waiting: its own deadline again */
      if (c->req && c->req->ws && c->drain_ref == LUA_NOREF && lc_http_conn_queued(c) <= LC_WS_MAX_QUEUED / 2) {
        lc_ws_conn_arm(c);
        break;
      }
      lc_http_conn_deadline(c, LC_HTTP_T_SEND, LC_HTTP_DL_SEND);
      break;
    case LC_HTTP_T_WS:
      lc_ws_conn_expire(c);
      break;
  }
}

void lc_http_server_timer_cb(uv_timer_t *t) {
  http_server *s = t->data;
  uint64_t now = uv_now(t->loop);
  /* How many are due is counted first, then each list's head is expired that many times at
   * most: an expiry may run Lua (a WebSocket's "close"), which may set or clear the deadline of
   * any other connection, one that is due too included, so no chain of due connections is kept
   * across expiries (one through dl_next was relinked under the loop and lost the rest of it).
   * A deadline set due at once (a timeout of 0) waits for the next run: the count bounds it. */
  size_t ndue[LC_HTTP_DL_COUNT];
  for (int k = 0; k < LC_HTTP_DL_COUNT; k++) {
    ndue[k] = 0;
    for (http_conn *c = s->dl[k].head; c && c->deadline <= now; c = c->dl_next) ndue[k]++;
  }
  for (int k = 0; k < LC_HTTP_DL_COUNT; k++) {
    for (size_t i = 0; i < ndue[k] && s->dl[k].head && s->dl[k].head->deadline <= now; i++) {
      http_conn *c = s->dl[k].head;
      dl_unlink(c);
      int mode = c->timer_mode;
      c->timer_mode = LC_HTTP_T_NONE;
      expire(c, mode);
    }
  }
  uint64_t next = UINT64_MAX;
  for (int k = 0; k < LC_HTTP_DL_COUNT; k++)
    if (s->dl[k].head && s->dl[k].head->deadline < next) next = s->dl[k].head->deadline;
  if (next != UINT64_MAX) {
    s->timer_due = next;
    uv_timer_start(t, lc_http_server_timer_cb, next > now ? next - now : 1, 0);
  }
}

/* ---- writing ---- */

size_t lc_http_conn_queued(http_conn *c) {
  return c->wq ? lc_wq_queued(c->wq) : 0;
}

/* a queue with nothing left to write, between requests: freed (an idle connection keeps none).
 * A WebSocket's stays, without a buffer bigger than LC_WS_IDLE_KEEP: a burst, or one big
 * message, once written leaves nothing behind (each idle socket kept its peak, 1 MiB and more) */
static void maybe_drop_wq(http_conn *c) {
  lc_wq *q = c->wq;
  if (q == NULL || c->closed || c->ending || !lc_wq_idle(q)) return;
  if (c->state == LC_HTTP_S_HANDLER && c->req && c->req->ws) {
    if (q->out.cap > LC_WS_IDLE_KEEP || q->spare) lc_wq_trim(q);
    return;
  }
  if (c->state != LC_HTTP_S_HEAD) return;
  lc_wq_close(q);
  free(q);
  c->wq = NULL;
}

/* the queue wrote what it had (status 0) or failed */
static void http_conn_written_cb(lc_wq *q, int status) {
  http_conn *c = q->data;
  /* the client is gone (a reset, a broken pipe): closed now, not at the next write, read or
   * timer; a handler waiting in res:write resumes once it is freed (free_conn) and its next
   * write answers that the connection is closed. */
  if (status < 0) { lc_http_conn_close(c); return; }
  write_done(c);
  if (!c->closed && lc_http_conn_queued(c) <= LC_HTTP_MAX_QUEUED_OUTPUT / 2) {
    lc_http_fire_drain(c);
    /* a WebSocket's send timeout is over once its queue is down (no sender waited) */
    if (!c->closed && c->timer_mode != LC_HTTP_T_WS && c->req && c->req->ws) lc_ws_conn_arm(c);
  }
  maybe_drop_wq(c);
}

void lc_http_conn_flush(http_conn *c) {
  if (c->wq == NULL || c->closed) return;
  int r = lc_wq_flush(c->wq);
  if (r != 0) { lc_http_conn_close(c); return; }
  maybe_drop_wq(c);
}

/* Appends to the queue, which the end of the parse loop or the loop turn writes. */
int lc_http_conn_write(http_conn *c, const char *a, size_t alen, const char *b, size_t blen) {
  if (c->closed || c->ending == 2) return UV_EPIPE;
  if (alen + blen == 0) return 0;
  int r = c->tls ? lc_http_tls_write(c, a, alen, b, blen) : lc_http_conn_queue(c, a, alen, b, blen);
  if (r != 0) return r;
  if (lc_wq_queued(c->wq) > LC_HTTP_MAX_QUEUED_OUTPUT && !c->out_paused) {
    /* written now: what is left is in libuv's hands, and its completion resumes reading */
    lc_http_conn_flush(c);
    if (!c->closed && lc_http_conn_queued(c) > LC_HTTP_MAX_QUEUED_OUTPUT) pause_reading(c, 1);
  }
  return 0;
}

int lc_http_conn_queue(http_conn *c, const char *a, size_t alen, const char *b, size_t blen) {
  if (c->closed) return UV_EPIPE;
  if (alen + blen == 0) return 0;
  if (c->wq == NULL) {
    lc_wq *q = malloc(sizeof *q);
    if (q == NULL) { lc_http_conn_close(c); return UV_ENOMEM; }
    lc_wq_init(q, (uv_stream_t *)c->tcp, &c->srv->base.rt->flusher, 0, http_conn_written_cb, c);
    q->notify_flush = 1;   /* backpressure, drain and the end wait for what the flusher writes */
    c->wq = q;
  }
  uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)alen), uv_buf_init((char *)b, (unsigned)blen)};
  int r = lc_wq_write(c->wq, bufs, blen ? 2 : 1);
  if (r != 0) { lc_http_conn_close(c); return r; }
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
  lc_http_conn_deadline(c, LC_HTTP_T_LINGER, LC_HTTP_DL_LINGER);
}

void lc_http_conn_end(http_conn *c) {
  if (c->closed || c->ending) return;
  c->ending = 1;
  c->state = LC_HTTP_S_CLOSING;
  lc_http_conn_no_deadline(c);
  uv_read_stop((uv_stream_t *)c->tcp);
  if (c->tls) lc_http_tls_close_notify(c);
  if (c->closed) return;
  if (c->wq == NULL || lc_wq_end(c->wq)) write_done(c);
  /* a client that stops taking its last answer is not kept forever */
  else { c->stall_mark = SIZE_MAX; lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, LC_HTTP_DL_SEND); }
}

/* everything queued so far is written: shut down an ending connection, or resume reading
 * from one paused for its queue */
static void write_done(http_conn *c) {
  if (c->closed) return;
  if (c->ending == 1 && (c->wq == NULL || lc_wq_idle(c->wq))) {
    c->ending = 2; /* shutting down */
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req == NULL) { lc_http_conn_close(c); return; }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)c->tcp, http_conn_shutdown_cb) != 0) { free(req); lc_http_conn_close(c); }
    return;
  }
  if (c->out_paused && c->state != LC_HTTP_S_CLOSING && update_pauses(c)) {
    /* pipelined requests that waited for the client to read its answers (parse_input) */
    if (c->state == LC_HTTP_S_HEAD && c->in_off < c->in_len) parse_input(c);
  }
}

/* ---- the input ---- */

/* The bytes that must stay past this read: the head of a request that is read or answered
 * (it is parsed in place, and Lua reads its fields until the answer ends), then the bytes not
 * parsed yet. */
static size_t kept_head(http_conn *c) {
  return c->req && c->state != LC_HTTP_S_CLOSING ? c->req->head_len : 0;
}

static size_t kept(http_conn *c) {
  return c->state == LC_HTTP_S_CLOSING ? 0 : kept_head(c) + (c->in_len - c->in_off);
}

/* moves what must stay to the start of dst (which may be c->in): the head, then the unparsed
 * bytes; dst becomes the input */
static void keep_into(http_conn *c, char *dst) {
  size_t hl = kept_head(c), rest = c->state == LC_HTTP_S_CLOSING ? 0 : c->in_len - c->in_off;
  if (hl > 0) memmove(dst, c->in + c->req->head_off, hl);
  if (rest > 0) memmove(dst + hl, c->in + c->in_off, rest);
  if (c->req) c->req->head_off = 0;
  c->in = dst;
  c->in_off = hl;
  c->in_len = hl + rest;
}

/* the end of a read in the shared buffer: what must stay is copied into a buffer of the
 * connection's own (the only copy of input the runtime makes, and only when it must) */
static void leave_shared(http_conn *c) {
  size_t n = kept(c);
  if (n == 0) {
    c->in = NULL;
    c->in_len = c->in_off = c->in_cap = 0;
    return;
  }
  char *own = malloc(n + LC_HTTP_READ_CHUNK);
  if (own == NULL) {
    lc_http_conn_close(c);   /* first: it logs a pending request, whose head is still in the shared buffer */
    c->in = NULL;
    c->in_len = c->in_off = c->in_cap = 0;
    return;
  }
  keep_into(c, own);
  c->in_cap = n + LC_HTTP_READ_CHUNK;
}

/* a connection's own buffer with nothing to keep is freed */
static void drop_own(http_conn *c) {
  if (c->in == NULL || c->in == c->srv->rbuf || kept(c) > 0) return;
  free(c->in);
  c->in = NULL;
  c->in_len = c->in_off = c->in_cap = 0;
}

void lc_http_conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  http_conn *c = h->data;
  http_server *s = c->srv;
  (void)suggested;
  drop_own(c);
  if (c->in == NULL) {
    if (s->rbuf == NULL) s->rbuf = malloc(LC_HTTP_READ_BUF);
    if (s->rbuf != NULL) {
      c->in = s->rbuf;
      c->in_len = c->in_off = 0;
      c->in_cap = LC_HTTP_READ_BUF;
      *buf = uv_buf_init(c->in, LC_HTTP_READ_BUF);
      return;
    }
  }
  /* what is kept moves to the front; the buffer grows to take a read after it */
  if (c->in != NULL && (c->in_off > kept_head(c) || (c->req && c->req->head_off > 0))) keep_into(c, c->in);
  size_t need = c->in_len + LC_HTTP_READ_CHUNK;
  if (c->in_cap < need) {
    size_t cap = c->in_cap ? c->in_cap : LC_HTTP_READ_CHUNK;
    while (cap < need) cap *= 2;
    char *q = realloc(c->in, cap);
    if (q == NULL) { *buf = uv_buf_init(NULL, 0); return; }   /* libuv reports UV_ENOBUFS */
    c->in = q;
    c->in_cap = cap;
  }
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

void lc_http_conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = st->data;
  (void)buf;
  if (nread < 0) {
    c->peer_closed = 1;
    uv_read_stop(st);
    if (c->in == c->srv->rbuf) leave_shared(c);
    /* a client that half-closed after its requests still gets its answers, pipelined ones
     * already read included (the connection ends once they have been answered) */
    if (c->state == LC_HTTP_S_HANDLER && nread == UV_EOF && !(c->req && c->req->ws)) return;
    /* a WebSocket's peer gone without a close frame: closed now (its "close" is told 1006) */
    lc_http_conn_close(c);
    return;
  }
  c->in_len += (size_t)nread;
  if (nread > 0) {
    /* a body may take its time, but not stall: header_timeout between reads */
    if (c->state == LC_HTTP_S_BODY) lc_http_conn_deadline(c, LC_HTTP_T_BODY, LC_HTTP_DL_HEADER);
    if (c->state == LC_HTTP_S_HANDLER && c->req && c->req->ws) {
      lc_ws_conn_input(c);
    } else if (c->state == LC_HTTP_S_HANDLER) {
      if (c->in_len - c->in_off >= LC_HTTP_MAX_BUFFERED_INPUT) pause_reading(c, 0);
    } else {
      parse_input(c);
    }
  }
  if (c->in == c->srv->rbuf) leave_shared(c);
  else drop_own(c);   /* a WebSocket's buffer, once a big frame is read, is not kept while it idles */
}

static int start_reading(http_conn *c) {
  if (c->tls) return uv_read_start((uv_stream_t *)c->tcp, lc_http_tls_alloc_cb, lc_http_tls_read_cb);
  return uv_read_start((uv_stream_t *)c->tcp, lc_http_conn_alloc_cb, lc_http_conn_read_cb);
}

static void resume_reading(http_conn *c) {
  if (c->closed || c->state == LC_HTTP_S_CLOSING || c->peer_closed) return;
  if (start_reading(c) != 0) lc_http_conn_close(c);
}

/* stops reading for one reason (out: the output queue, else the input behind a handler);
 * reading stays stopped until neither holds */
static void pause_reading(http_conn *c, int out) {
  if (!c->in_paused && !c->out_paused) uv_read_stop((uv_stream_t *)c->tcp);
  if (out) c->out_paused = 1;
  else c->in_paused = 1;
}

/* clears the pauses that no longer hold and resumes reading when none is left; 1 if it did */
static int update_pauses(http_conn *c) {
  if (!c->in_paused && !c->out_paused) return 0;
  /* a WebSocket's input waits for its Lua side (lc_ws_conn_paused), an HTTP request's for its handler */
  if (c->in_paused && !(c->state == LC_HTTP_S_HANDLER &&
                        (c->req && c->req->ws ? lc_ws_conn_paused(c) : c->in_len - c->in_off >= LC_HTTP_MAX_BUFFERED_INPUT)))
    c->in_paused = 0;
  if (c->out_paused && lc_http_conn_queued(c) < LC_HTTP_MAX_QUEUED_OUTPUT / 2) c->out_paused = 0;
  if (c->in_paused || c->out_paused) return 0;
  resume_reading(c);
  return 1;
}

void lc_http_conn_pause_input(http_conn *c) {
  if (!c->closed && !c->in_paused && c->state != LC_HTTP_S_CLOSING) pause_reading(c, 0);
}

void lc_http_conn_update_pauses(http_conn *c) {
  if (!c->closed && c->state != LC_HTTP_S_CLOSING) update_pauses(c);
  drop_own(c);   /* (the input a WebSocket's Lua side has taken meanwhile) */
}

/* ---- a request ---- */

/* The head is complete and valid: how the connection goes on after this request, and how its
 * body is framed. 0, or the status to refuse the request with. */
static int start_body(http_conn *c) {
  http_req *r = c->req;
  lc_http_head *h = &r->h;
  /* RFC 9112 9.3: HTTP/1.1 persists unless `close`, HTTP/1.0 only with `keep-alive`; a
   * chunked HTTP/1.0 request ends its connection (6.1) */
  c->keepalive = (h->minor == 1 || h->connection_keep_alive) && !h->connection_close &&
                 !(h->minor == 0 && h->has_transfer_encoding);
  /* CONNECT, or an Upgrade the client asks for (Upgrade and Connection: upgrade): what
   * follows this request is not HTTP; the runtime answers it and closes */
  c->upgrade = h->is_connect || (h->upgrade && h->connection_upgrade);
  int st = lc_http_body_init(&r->framer, h->has_transfer_encoding, h->has_content_length ? h->content_length : 0,
                             c->srv->max_body);
  if (st >= 400) return st;
  if (h->expect_continue && h->minor == 1 && (h->has_content_length || h->has_transfer_encoding)) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    lc_http_conn_write(c, cont, sizeof cont - 1, NULL, 0);
    lc_http_conn_flush(c);   /* the client waits for it before it sends the body */
    if (c->closed) return 0; /* it could not be written (a reset): parse_input stops */
  }
  /* CONNECT has no body, whatever its head says */
  if (h->is_connect) lc_http_body_init(&r->framer, 0, 0, 0);
  c->state = LC_HTTP_S_BODY;
  return 0;
}

/* the body's data, copied once out of the input; 0 or UV_ENOMEM */
static int append_body(http_req *r, const char *at, size_t len) {
  if (r->body_cap - r->body_len < len) {
    if (len > SIZE_MAX / 4 - r->body_len) return UV_ENOMEM;   /* the doubling cannot wrap */
    size_t cap = r->body_cap ? r->body_cap : 1024;
    while (cap - r->body_len < len) cap *= 2;
    char *q = realloc(r->body, cap);
    if (q == NULL) return UV_ENOMEM;
    r->body = q;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  return 0;
}

/* Parses buffered input until a request is complete (and answered) or the input runs out;
 * then the answers written meanwhile leave in one write. */
static void parse_input(http_conn *c) {
  if (c->in_parse) return;
  c->in_parse = 1;
  http_server *s = c->srv;
  while (!c->closed && c->state != LC_HTTP_S_CLOSING && c->state != LC_HTTP_S_HANDLER && c->in_off < c->in_len) {
    if (c->state == LC_HTTP_S_HEAD) {
      /* a client that sends requests but does not read the answers: the next request waits
       * until the queue is half empty (write_done), so memory stays bounded */
      if (lc_http_conn_queued(c) > LC_HTTP_MAX_QUEUED_OUTPUT) {
        lc_http_conn_flush(c);
        if (c->closed) break;
        if (lc_http_conn_queued(c) > LC_HTTP_MAX_QUEUED_OUTPUT) {
          if (!c->out_paused) pause_reading(c, 1);
          break;
        }
      }
      if (c->req == NULL) {
        while (c->in_off < c->in_len && (c->in[c->in_off] == '\r' || c->in[c->in_off] == '\n')) c->in_off++;
        if (c->in_off == c->in_len) break;
        if ((c->req = lc_http_server_req(s)) == NULL) { lc_http_conn_close(c); break; }
        c->req->head_off = c->in_off;
        c->req->start = uv_hrtime();
        c->got_bytes = 1;
        if (c->timer_mode != LC_HTTP_T_HEADER) lc_http_conn_deadline(c, LC_HTTP_T_HEADER, LC_HTTP_DL_HEADER);
      }
      http_req *r = c->req;
      size_t hl;
      int status = lc_http_head_parse(c->in + r->head_off, c->in_len - r->head_off, s->max_header, &r->h, &hl);
      if (status != 0) { lc_http_reject(c, status); break; }
      if (hl == 0) break;
      r->head_len = hl;
      c->in_off = r->head_off + hl;
      lc_http_conn_deadline(c, LC_HTTP_T_BODY, LC_HTTP_DL_HEADER);
      status = start_body(c);
      if (status != 0) { lc_http_reject(c, status); break; }
      if (c->closed) break;   /* no body is framed and no handler runs for a closed connection */
    }
    /* the body: framed as it arrives, its data copied once into the request */
    http_req *r = c->req;
    int st;
    for (;;) {
      size_t used, doff, dlen;
      char *p = c->in + c->in_off;
      st = lc_http_body_frame(&r->framer, p, c->in_len - c->in_off, s->max_body, s->max_header, &used, &doff, &dlen);
      if (st >= 400) break;
      if (dlen > 0 && append_body(r, p + doff, dlen) != 0) { st = 413; break; }
      c->in_off += used;
      if (st == LC_HTTP_BODY_DONE || c->in_off == c->in_len) break;
    }
    if (st >= 400) { lc_http_reject(c, st); break; }
    if (st != LC_HTTP_BODY_DONE) break;
    /* the request is complete: the handler answers it before anything more is parsed */
    c->state = LC_HTTP_S_HANDLER;
    lc_http_conn_no_deadline(c);
    /* what follows an upgrade is not HTTP: never parsed as requests; after a WebSocket's
     * 101 it is its first frames (a client may send them before it reads the 101), else it
     * is dropped when the connection ends */
    if (c->upgrade) c->keepalive = 0;
    if (c->upgrade && c->req->h.is_connect) c->in_off = c->in_len;
    lc_http_call_handler(c);
  }
  c->in_parse = 0;
  /* the client has half-closed and every complete request it sent has been answered */
  if (c->peer_closed && c->state == LC_HTTP_S_HEAD && !c->closed) lc_http_conn_end(c);
  lc_http_conn_flush(c);
  drop_own(c);
}

void lc_http_conn_finish(http_conn *c) {
  http_req *r = c->req;
  if (!c->closed) lc_http_account(c, r->resp_status, r->resp_body, 1); /* else lc_http_conn_close did */
  c->seq = ++c->srv->base.rt->http_seq;   /* the next request's: this one's calls are refused */
  if (c->closed) return;
  if (!c->keepalive || r->resp_close || c->srv->draining) { lc_http_conn_end(c); return; }
  c->state = LC_HTTP_S_HEAD;
  c->got_bytes = 0;
  c->req = NULL;
  lc_http_server_req_done(c->srv, r);
  c->stall_mark = SIZE_MAX;
  lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, LC_HTTP_DL_KEEPALIVE);
  update_pauses(c);   /* no handler runs now: the input's pause is over, the output's maybe */
  parse_input(c);
}

/* ---- a new connection ---- */

void lc_http_conn_new(http_server *s, uv_tcp_t *tcp) {
  lc_rt *rt = s->base.rt;
  http_conn *c = rt->http_spares;
  if (c) {
    rt->http_spares = c->dl_next;
    rt->http_nspares--;
    memset(c, 0, sizeof *c);
  } else {
    c = calloc(1, sizeof *c);
    if (c == NULL) { uv_close((uv_handle_t *)tcp, lc_free_handle_cb); return; }
  }
  c->tcp = tcp;
  c->srv = s;
  c->seq = c->first_seq = ++rt->http_seq;
  c->drain_ref = LUA_NOREF;
  tcp->data = c;
  c->state = LC_HTTP_S_HEAD;
  s->nconns++;
  s->conns_total++;
  c->srv->base.rt->http.conns_open++;
  c->srv->base.rt->http.conns_total++;
  uv_tcp_nodelay(tcp, 1);
  if (s->alog) lc_http_peer(c, NULL, 0, NULL);  /* while the client is surely there (a reset loses its address) */
  /* HTTPS: the handshake is bounded by the same header_timeout as a request's head */
  lc_http_conn_deadline(c, LC_HTTP_T_HEADER, LC_HTTP_DL_HEADER);
  if (s->tls && lc_http_tls_start(c) != 0) { lc_http_conn_close(c); return; }
  if (start_reading(c) != 0) lc_http_conn_close(c);
}
