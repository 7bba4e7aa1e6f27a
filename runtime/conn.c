/* conn.c: outbound TCP connections, the one socket type under net.connect, http.request and
 * ngx.socket.tcp (the Lua faces: net/outbound.lua, net/pool.lua).
 * Owns, per connection (lc_conn, freed once its three handles are closed: conn_handle_closed_cb):
 * the uv_tcp_t, two timers, the read buffer (`in`, an lc_buf: buf.c), the pending read's copy of
 * its delimiter, and the write queue (write_queue.c).
 *   rtimer: a pending read's timeout (read_timeout), or the retry of a read's answer Lua had no
 *           memory for.
 *   wtimer: one use at a time: the connect's timeout, then a waiting send's (send_timeout), a
 *           close's wait for its writes, or a pooled connection's idle time.
 * The read timeout and the idle time are lazy: each has its deadline (rdeadline, idle_deadline),
 * and its timer is started only when it is not running or would fire after that deadline; a
 * timer that fires early (for a read answered since, or a connection taken out of its pool)
 * finds nothing due and starts itself again for what is. A request/response round trip on a
 * pooled connection then starts and stops no timer (libuv's timer heap per read and per park).
 * Reading: bytes are read as they come, from the connect on, into `in`, and reads by pattern
 * (recv: read_buffer.h's kinds) are served from it: one that the buffer satisfies returns in the
 * same C call, without the Lua side yielding (the hot path of a request/response driver);
 * otherwise it is pending, at most one at a time, and its answer goes to the Lua callback as
 * cb("read", ...). Reading pauses while HIGH_WATER bytes wait and no read is pending.
 * A read that times out answers nil, "timeout" and leaves the buffer as it was: the socket stays
 * usable, and what comes later is read by the next call. A read that the end of the read side cuts
 * short (the peer's end, an error) closes the socket, as OpenResty's cosockets do; so does an end
 * with nothing left unread and no read pending.
 * TLS seam: every byte from the socket enters `in` through conn_input(), and every byte the user
 * writes leaves through conn_output(); a filter (conn.h: TLS) goes between those two and the
 * socket, and nothing else touches `in` or `wq`.
 * Pools: park() makes a connection idle (its read buffer freed, reading on as the watch): a byte,
 * the peer's end, an error or idle_ms without use closes it, and the Lua callback then gets
 * cb("close"), so the pool drops it. unpark() takes it out again.
 * Every entry into Lua goes through lc_call_with (rt.c): out of memory building an answer is never
 * thrown through libuv; a read's answer is retried, other events close the connection. */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "read_buffer.h"
#include "conn.h"
#include "tcp.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MT "luacluster.conn"
#define HIGH_WATER (64u * 1024u)            /* buffered bytes with no read pending: reading pauses */
#define MAX_BUFFER (64u * 1024u * 1024u)    /* the most a read buffer holds (a line with no end) */
#define CLOSE_WAIT_MS 60000                 /* close(): the longest wait for its writes to leave */
#define RETRY_MS 50                         /* a read's answer Lua had no memory for: again then */

struct lc_conn {
  lc_handle_base base;
  uv_tcp_t tcp;
  uv_timer_t rtimer, wtimer;
  uv_connect_t creq;
  lc_wq wq;
  lc_buf in;                 /* read buffer: the unread bytes are in[roff, in.len) */
  size_t roff;
  int open_handles;          /* handles not yet closed (tcp and the two timers) */
  int rerr;                  /* 0, or UV_EOF / an error once the read side has ended */
  const char *rmsg;          /* the filter's words for rerr (lc_conn_read_error), or NULL */
  unsigned char closing, reading, connecting, connected, parked;
  unsigned char send_waiting, close_after_writes, retrying;
  lc_rb_want want;           /* the pending read; want.kind 0: none */
  char *delim;               /* its delimiter (heap copy) */
  uint64_t read_timeout, send_timeout;   /* ms; 0: none */
  uint64_t rdeadline, idle_deadline;     /* loop time; UINT64_MAX: none */
  const lc_conn_filter *filter;          /* between the socket and `in` / `wq` (conn.h), or NULL */
  void *filter_ctx;
};

static size_t buffered(const lc_conn *c) { return c->in.len - c->roff; }
static const char *unread(const lc_conn *c) { return c->in.data ? c->in.data + c->roff : ""; }

static void consume(lc_conn *c, size_t n) {
  c->roff += n;
  if (c->roff >= c->in.len) c->roff = c->in.len = 0;
}

static void clear_pending(lc_conn *c) {
  c->want.kind = 0;
  free(c->delim);
  c->delim = NULL;
  c->retrying = 0;
  c->rdeadline = UINT64_MAX;   /* the timer may run on: it finds nothing pending (lazy, above) */
}

/* ---- closing ---- */

static void conn_handle_closed_cb(uv_handle_t *h) {
  lc_conn *c = h->data;
  if (--c->open_handles > 0) return;
  lc_call_cb_str(&c->base, "close", NULL);
  if (c->filter && c->filter->free) c->filter->free(c->filter_ctx);
  lc_wq_close(&c->wq);
  lc_buf_free(&c->in);
  free(c->delim);
  lc_handle_release(&c->base);
  free(c);
}

static void close_now(lc_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  c->want.kind = 0;
  uv_timer_stop(&c->rtimer);
  uv_timer_stop(&c->wtimer);
  lc_wq_close(&c->wq);    /* unsent bytes go; those in flight end with UV_ECANCELED */
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
  uv_close((uv_handle_t *)&c->rtimer, conn_handle_closed_cb);
  uv_close((uv_handle_t *)&c->wtimer, conn_handle_closed_cb);
}

static void conn_wtimer_cb(uv_timer_t *t);

/* close(): what was written leaves first (CLOSE_WAIT_MS at most), then the socket closes */
static void conn_close(lc_conn *c) {
  if (c->closing || c->close_after_writes) return;
  if (c->connected && c->filter && c->filter->close) c->filter->close(c->filter_ctx, c);
  if (!c->connected || lc_wq_end(&c->wq)) { close_now(c); return; }
  c->close_after_writes = 1;
  c->send_waiting = 0;
  uv_timer_start(&c->wtimer, conn_wtimer_cb, CLOSE_WAIT_MS, 0);
}

/* ---- answers to Lua ---- */

/* Pushes the answer to the pending read w when the buffer (or the read side's end) settles it,
 * consuming its bytes last (nothing is lost if a push raises): the count of values pushed, or 0
 * when it must wait. data [, found] | nil, "closed" | reason, partial | nil, "too large" */
static int settle(lua_State *L, lc_conn *c, lc_rb_want *w) {
  lc_rb_take t;
  size_t len = buffered(c);
  if (w->kind == LC_RB_ALL && w->n > 0 && len > w->n) {
    lua_pushnil(L);
    lua_pushliteral(L, "too large");
    return 2;
  }
  if (lc_rb_match(unread(c), len, w, c->rerr == UV_EOF, &t)) {
    lua_pushlstring(L, unread(c), t.give);
    int n = 1;
    if (w->kind == LC_RB_UNTIL) { lua_pushboolean(L, t.found); n = 2; }
    consume(c, t.drop);
    w->scanned = 0;
    if (c->rerr != 0 && buffered(c) == 0) conn_close(c);   /* the last bytes of an ended socket */
    return n;
  }
  if (c->rerr == 0 && !c->closing) return 0;
  lua_pushnil(L);
  if (c->rerr == 0 || c->rerr == UV_EOF) lua_pushliteral(L, "closed");
  else lua_pushstring(L, c->rmsg ? c->rmsg : uv_strerror(c->rerr));
  lua_pushlstring(L, unread(c), len);
  consume(c, len);
  conn_close(c);   /* as OpenResty's cosockets: a read that fails closes (what was written leaves) */
  return 3;
}

typedef struct event_args { lc_conn *c; const char *name; const char *err; } event_args;

/* run by lc_call_with, protected: cb("read", <settle's values>); declines when not settled */
static int conn_push_read(lua_State *L, void *ud) {
  lc_conn *c = ud;
  if (!lc_handle_push_cb(&c->base)) return -1;
  lua_pushliteral(L, "read");
  int n = settle(L, c, &c->want);
  if (n == 0) return -1;
  clear_pending(c);   /* last: the callback may ask for the next read */
  return n + 1;
}

/* run by lc_call_with, protected: cb("read", nil, "timeout"); the buffer is left as it was */
static int conn_push_timeout(lua_State *L, void *ud) {
  lc_conn *c = ud;
  if (!lc_handle_push_cb(&c->base)) return -1;
  lua_pushliteral(L, "read");
  lua_pushnil(L);
  lua_pushliteral(L, "timeout");
  clear_pending(c);
  return 3;
}

/* run by lc_call_with, protected: cb(name [, err]) ("connect", "sent") */
static int conn_push_event(lua_State *L, void *ud) {
  event_args *a = ud;
  if (!lc_handle_push_cb(&a->c->base)) return -1;
  lua_pushstring(L, a->name);
  if (a->err == NULL) return 1;
  lua_pushstring(L, a->err);
  return 2;
}

/* an event Lua must not miss: when its arguments cannot be built the connection closes (the
 * close event then wakes whoever waits) */
static void deliver_event(lc_conn *c, const char *name, const char *err) {
  event_args a = {c, name, err};
  if (lc_call_with(c->base.rt, conn_push_event, &a) > 0) {
    lc_log(c->base.rt, "error: conn: no memory for a socket's %s event; the socket is closed", name);
    close_now(c);
  }
}

void lc_conn_event(lc_conn *c, const char *name, const char *err) {
  if (!c->closing) deliver_event(c, name, err);
}

static void conn_rtimer_cb(uv_timer_t *t);

/* the pending read's answer, if the buffer settles it now; retried later when Lua had no memory */
static void try_answer(lc_conn *c) {
  if (c->want.kind == 0 || c->closing) return;
  if (lc_call_with(c->base.rt, conn_push_read, c) > 0) {
    c->retrying = 1;
    uv_timer_start(&c->rtimer, conn_rtimer_cb, RETRY_MS, 0);
  }
}

static void conn_rtimer_cb(uv_timer_t *t) {
  lc_conn *c = t->data;
  if (c->want.kind == 0 || c->closing) return;
  if (c->retrying) { try_answer(c); return; }
  uint64_t now = uv_now(t->loop);
  if (now < c->rdeadline) {   /* an earlier read's timer: this read's deadline is later */
    if (c->rdeadline != UINT64_MAX) uv_timer_start(&c->rtimer, conn_rtimer_cb, c->rdeadline - now, 0);
    return;
  }
  if (lc_call_with(c->base.rt, conn_push_timeout, c) > 0) {
    c->retrying = 1;   /* the timeout could not be told: the answer is retried as it stands */
    uv_timer_start(&c->rtimer, conn_rtimer_cb, RETRY_MS, 0);
  }
}

/* ---- reading ---- */

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[65536];   /* consumed (copied into `in`) before the next read */
  *buf = uv_buf_init(slab, sizeof slab);
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void stop_reading(lc_conn *c) {
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static int start_reading(lc_conn *c) {
  if (c->reading || c->closing || c->rerr != 0 || !c->connected) return 0;
  int r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
  if (r == 0) c->reading = 1;
  return r;
}

/* The read side has ended (UV_EOF) or failed: a pending read gets what is left. */
static void conn_ended(lc_conn *c, int err) {
  stop_reading(c);
  if (c->rerr == 0) c->rerr = err;
  try_answer(c);
  /* nothing left to read and no one reading: closed now, not whenever its owner thinks of it
   * (a read later gets nil, "closed" all the same) */
  if (c->want.kind == 0 && buffered(c) == 0) conn_close(c);
}

/* The seam for what the socket delivers (a TLS filter hands its plaintext here): the bytes join
 * the buffer, and a pending read is answered if they settle it. */
static void conn_input(lc_conn *c, const char *p, size_t n) {
  if (c->rerr != 0) return;   /* the read side has ended (a gap): nothing after it joins */
  if (buffered(c) == 0) c->roff = c->in.len = 0;
  if (c->roff > 0 && lc_buf_room(&c->in) < n) {    /* room by moving the unread bytes down */
    memmove(c->in.data, c->in.data + c->roff, buffered(c));
    c->in.len -= c->roff;
    c->roff = 0;
  }
  int r = lc_buf_append(&c->in, p, n);
  if (r != 0) {
    lc_log(c->base.rt, "warn: conn: a socket's read buffer is full (%zu bytes unread): %s; its reading ends",
           buffered(c), uv_strerror(r));
    conn_ended(c, r == UV_E2BIG ? UV_ENOBUFS : r);
    return;
  }
  try_answer(c);
  if (!c->closing && c->want.kind == 0 && buffered(c) >= HIGH_WATER) stop_reading(c);
}

void lc_conn_read_error(lc_conn *c, const char *msg) {
  c->rmsg = msg;
}

void lc_conn_input(lc_conn *c, const char *p, size_t n) {
  if (c->closing || n == 0) return;
  if (c->parked) close_now(c);   /* a filter's data for a pooled connection: never handed out */
  else conn_input(c, p, n);
}

static void conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lc_conn *c = st->data;
  if (nread == 0 || c->closing) return;
  if (c->parked) {   /* a pooled connection that speaks, ends or fails is not handed out again */
    if (nread > 0 && c->filter && c->filter->idle &&
        c->filter->idle(c->filter_ctx, c, buf->base, (size_t)nread) == 0)
      return;          /* the filter's own bytes (TLS session tickets), nothing for the user */
    close_now(c);
    return;
  }
  if (nread < 0) {
    int err = (int)nread;
    /* a filter decides whether the end is clean (TLS: a close_notify came before it) */
    if (err == UV_EOF && c->filter && c->filter->end) {
      int r = c->filter->end(c->filter_ctx, c);
      if (r != 0) err = r;
    }
    if (!c->closing) conn_ended(c, err);
  } else if (c->filter) {
    int r = c->filter->read(c->filter_ctx, c, buf->base, (size_t)nread);
    if (r != 0 && !c->closing) conn_ended(c, r);
  } else {
    conn_input(c, buf->base, (size_t)nread);
  }
}

/* ---- writing ---- */

static void conn_written_cb(lc_wq *q, int status) {
  lc_conn *c = q->data;
  if (c->closing) return;
  if (c->close_after_writes) {
    if (status < 0 || lc_wq_idle(q)) close_now(c);
    return;
  }
  if (c->send_waiting && (status < 0 || lc_wq_idle(q))) {
    c->send_waiting = 0;
    uv_timer_stop(&c->wtimer);
    deliver_event(c, "sent", status < 0 ? uv_strerror(status) : NULL);
  }
}

int lc_conn_send_raw(lc_conn *c, const char *p, size_t n) {
  if (c->closing) return UV_EPIPE;
  if (n > UINT32_MAX) return UV_E2BIG;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  return lc_wq_write(&c->wq, &b, 1);
}

/* The seam for what the user writes (a filter encrypts it): 0 or a UV_E* code. */
static int conn_output(lc_conn *c, const char *p, size_t n) {
  if (c->filter) return c->filter->write(c->filter_ctx, c, p, n);
  return lc_conn_send_raw(c, p, n);
}

/* ---- connecting ---- */

static void conn_connect_cb(uv_connect_t *req, int status) {
  lc_conn *c = req->handle->data;
  c->connecting = 0;
  if (c->closing) return;          /* timed out (already told), or closed meanwhile */
  uv_timer_stop(&c->wtimer);
  if (status != 0) {
    deliver_event(c, "connect", uv_strerror(status));
    close_now(c);
    return;
  }
  c->connected = 1;
  int r = start_reading(c);
  if (r != 0) {
    deliver_event(c, "connect", uv_strerror(r));
    close_now(c);
    return;
  }
  deliver_event(c, "connect", NULL);
}

static void conn_wtimer_cb(uv_timer_t *t) {
  lc_conn *c = t->data;
  if (c->closing) return;
  if (c->connecting) {
    deliver_event(c, "connect", "timeout");
    close_now(c);
  } else if (c->close_after_writes) {
    close_now(c);
  } else if (c->parked) {
    uint64_t now = uv_now(t->loop);
    if (now >= c->idle_deadline) close_now(c);
    else if (c->idle_deadline != UINT64_MAX) uv_timer_start(&c->wtimer, conn_wtimer_cb, c->idle_deadline - now, 0);
  } else if (c->send_waiting) {
    c->send_waiting = 0;
    deliver_event(c, "sent", "timeout");
  }
}

/* ---- Lua bindings ---- */

lc_conn *lc_conn_check(lua_State *L, int idx) { return lc_handle_check(L, idx, MT); }

uv_tcp_t *lc_conn_tcp_for_send(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  luaL_getmetatable(L, MT);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return NULL;
  lc_conn *c = lc_conn_check(L, idx);
  if (c->closing || c->close_after_writes || !c->connected || c->parked || c->rerr != 0)
    luaL_error(L, "cannot send this socket: it is closed");
  if (buffered(c) > 0 || c->want.kind != 0)
    luaL_error(L, "cannot send this socket: it holds unread bytes or a pending read");
  if (c->filter) luaL_error(L, "cannot send this socket: its TLS state cannot move");
  return &c->tcp;
}

void lc_conn_set_filter(lc_conn *c, const lc_conn_filter *f, void *ctx) {
  c->filter = f;
  c->filter_ctx = ctx;
}

void *lc_conn_filter_ctx(lc_conn *c, const lc_conn_filter *f) {
  return c->filter == f ? c->filter_ctx : NULL;
}

/* core.conn_new(cb) -> conn: a TCP socket not yet connected; cb(event, ...) gets its events:
 * "connect" [, err], "read", <recv's values>, "sent" [, err], "close" */
static int f_conn_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lc_conn *c = lc_handle_new(L, sizeof *c, MT);
  uv_loop_t *loop = &c->base.rt->loop;
  int r = uv_tcp_init(loop, &c->tcp);
  if (r != 0) {
    lc_handle_release(&c->base);
    free(c);
    return luaL_error(L, "uv_tcp_init: %s", uv_strerror(r));
  }
  uv_timer_init(loop, &c->rtimer);   /* cannot fail on a live loop */
  uv_timer_init(loop, &c->wtimer);
  c->open_handles = 3;
  c->tcp.data = c->rtimer.data = c->wtimer.data = c;
  c->rdeadline = c->idle_deadline = UINT64_MAX;
  lc_buf_init(&c->in, MAX_BUFFER);
  lc_wq_init(&c->wq, (uv_stream_t *)&c->tcp, NULL, 0, conn_written_cb, c);
  lc_handle_set_cb(L, &c->base, 1);
  return 1;
}

/* conn:connect(ip, port, timeout_ms) -> true (then cb("connect" [, err])) | nil, err. A failed or
 * timed-out connect closes the socket: another address takes a new one. */
static int m_connect(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  const char *ip = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  lua_Number ms = luaL_optnumber(L, 4, 0);
  luaL_argcheck(L, port > 0 && port < 65536, 3, "a port 1-65535");
  luaL_argcheck(L, ms >= 0 && ms <= 1e12, 4, "a number of ms >= 0");
  if (c->connecting || c->connected || c->closing) return luaL_error(L, "conn:connect: already used");
  struct sockaddr_storage ss;
  int r = strchr(ip, ':') ? uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&ss)
                          : uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&ss);
  if (r == 0) r = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss, conn_connect_cb);
  if (r != 0) {
    close_now(c);
    return lc_push_fail(L, r, "%s", uv_strerror(r));
  }
  c->connecting = 1;
  if (ms > 0) uv_timer_start(&c->wtimer, conn_wtimer_cb, (uint64_t)ms, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:recv(kind, n, delim, inclusive) -> read_buffer.h's kinds (1 ANY, 2 EXACT, 3 LINE, 4 UNTIL,
 * 5 ALL; n: ANY's max, EXACT's count, UNTIL's max chunk, ALL's limit, 0 none):
 *   data [, found (UNTIL)]          the buffer settles it: at once, nothing waits
 *   nil, "closed" | reason, partial the read side ended first (partial: what was left, consumed)
 *   nil, "too large"                ALL: more than n bytes came
 *   true                            pending: the answer comes as cb("read", <the same values>),
 *                                   or cb("read", nil, "timeout") after read_timeout
 * Raises when a read is already pending (one reader at a time). */
static int m_recv(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  lc_rb_want w;
  memset(&w, 0, sizeof w);
  w.kind = (int)luaL_checkinteger(L, 2);
  lua_Number n = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, w.kind >= LC_RB_ANY && w.kind <= LC_RB_ALL, 2, "a read kind 1-5");
  luaL_argcheck(L, n >= 0 && n <= 1e15, 3, "a count >= 0");
  w.n = (size_t)n;
  if (w.kind == LC_RB_EXACT && w.n == 0) { lua_pushliteral(L, ""); return 1; }
  if (w.kind == LC_RB_UNTIL) {
    w.delim = luaL_checklstring(L, 4, &w.dlen);
    luaL_argcheck(L, w.dlen > 0, 4, "an empty delimiter");
    w.inclusive = lua_toboolean(L, 5);
  }
  if (c->want.kind != 0) return luaL_error(L, "another coroutine is already reading this socket");
  if (c->parked) return luaL_error(L, "conn:recv: the socket is in a pool");
  int got = settle(L, c, &w);
  if (got > 0) {
    if (c->rerr == 0 && !c->reading && buffered(c) < HIGH_WATER) {
      int r = start_reading(c);
      if (r != 0) conn_ended(c, r);
    }
    return got;
  }
  if (c->closing || c->close_after_writes) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (w.kind == LC_RB_UNTIL) {
    char *copy = malloc(w.dlen);
    if (copy == NULL) return luaL_error(L, "out of memory");
    memcpy(copy, w.delim, w.dlen);
    w.delim = c->delim = copy;
  }
  c->want = w;
  int r = start_reading(c);
  if (r != 0) {
    clear_pending(c);
    conn_ended(c, r);
    return lc_push_fail(L, r, "%s", uv_strerror(r));
  }
  if (c->read_timeout > 0) {   /* lazy (above): a running timer due first is left to run */
    c->rdeadline = uv_now(&c->base.rt->loop) + c->read_timeout;
    if (!uv_is_active((uv_handle_t *)&c->rtimer) || uv_timer_get_due_in(&c->rtimer) > c->read_timeout)
      uv_timer_start(&c->rtimer, conn_rtimer_cb, c->read_timeout, 0);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:cancel_read(): forgets the pending read (its reader went away); the buffer stays */
static int m_cancel_read(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  clear_pending(c);
  return 0;
}

/* conn:write(data [, wait]) -> true (the socket took it all) | false (queued: with wait, the
 * end comes as cb("sent" [, err]), err "timeout" after send_timeout) | nil, err */
static int m_write(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int wait = lua_toboolean(L, 3);
  if (c->closing || c->close_after_writes || !c->connected) return lc_push_fail(L, UV_EPIPE, "closed");
  if (c->parked) return luaL_error(L, "conn:write: the socket is in a pool");
  if (wait && c->send_waiting) return luaL_error(L, "another coroutine is already sending on this socket");
  int r = conn_output(c, data, len);
  if (r != 0) {
    /* part of it may be gone already (write_queue.c: the caller closes), and a TLS record
     * stream with a hole is broken: the socket closes; only a write too big to start leaves
     * nothing behind */
    if (r != UV_E2BIG) close_now(c);
    return lc_push_fail(L, r, "%s", uv_strerror(r));
  }
  if (lc_wq_idle(&c->wq)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (wait) {
    c->send_waiting = 1;
    if (c->send_timeout > 0) uv_timer_start(&c->wtimer, conn_wtimer_cb, c->send_timeout, 0);
    else uv_timer_stop(&c->wtimer);   /* a pooled time's timer still running: not this send's */
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* conn:set_timeouts(send_ms, read_ms): 0 is no limit (the connect's is given to connect) */
static int m_set_timeouts(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  lua_Number s = luaL_checknumber(L, 2), r = luaL_checknumber(L, 3);
  luaL_argcheck(L, s >= 0 && s <= 1e12, 2, "a number of ms >= 0");
  luaL_argcheck(L, r >= 0 && r <= 1e12, 3, "a number of ms >= 0");
  c->send_timeout = (uint64_t)s;
  c->read_timeout = (uint64_t)r;
  return 0;
}

/* conn:park(idle_ms) -> true | nil, err: the connection waits in a pool, its read buffer freed;
 * refused (nothing closed) while it holds unread bytes, a read or a send is pending, or it ended */
static int m_park(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  lua_Number ms = luaL_optnumber(L, 2, 0);
  luaL_argcheck(L, ms >= 0 && ms <= 1e12, 2, "a number of ms >= 0");
  const char *why = NULL;
  if (c->closing || c->close_after_writes || !c->connected) why = "closed";
  else if (c->rerr == UV_EOF) why = "closed";
  else if (c->rerr != 0) why = uv_strerror(c->rerr);
  else if (c->want.kind != 0) why = "a read is pending";
  else if (c->send_waiting || !lc_wq_idle(&c->wq)) why = "a send is pending";
  else if (buffered(c) > 0) why = "unread data in the buffer";
  if (why) return lc_push_fail(L, 0, "%s", why);
  int r = start_reading(c);   /* the watch: a byte or an end closes it */
  if (r != 0) return lc_push_fail(L, r, "%s", uv_strerror(r));
  c->parked = 1;
  lc_buf_free(&c->in);
  c->roff = 0;
  lc_wq_trim(&c->wq);
  if (c->filter && c->filter->park) c->filter->park(c->filter_ctx);
  /* lazy (above): the timer of an earlier stay in the pool, due first, is left to run */
  c->idle_deadline = ms > 0 ? uv_now(&c->base.rt->loop) + (uint64_t)ms : UINT64_MAX;
  if (ms > 0 && (!uv_is_active((uv_handle_t *)&c->wtimer) || uv_timer_get_due_in(&c->wtimer) > (uint64_t)ms))
    uv_timer_start(&c->wtimer, conn_wtimer_cb, (uint64_t)ms, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:unpark() -> true | nil, "closed": takes a pooled connection out of its pool */
static int m_unpark(lua_State *L) {
  lc_conn *c = lc_handle_test(L, 1, MT);
  if (c == NULL || c->closing || !c->parked) return lc_push_fail(L, 0, "closed");
  c->parked = 0;
  c->idle_deadline = UINT64_MAX;   /* its timer may run on: it finds the connection in use */
  lua_pushboolean(L, 1);
  return 1;
}

/* conn:close(): after what was written (CLOSE_WAIT_MS at most); close_now with true: at once */
static int m_close(lua_State *L) {
  lc_conn *c = lc_handle_test(L, 1, MT);
  if (c == NULL) return 0;
  if (lua_toboolean(L, 2)) close_now(c);
  else conn_close(c);
  return 0;
}

static int m_buffered(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  lua_pushinteger(L, (lua_Integer)buffered(c));
  lua_pushinteger(L, (lua_Integer)c->in.cap);
  return 2;
}

static int m_peername(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
  if (r != 0) return lc_push_error(L, r);
  return lc_tcp_push_addr(L, &ss);
}

static int m_nodelay(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  uv_tcp_nodelay(&c->tcp, lua_toboolean(L, 2));
  return 0;
}

static int m_fileno(lua_State *L) {
  lc_conn *c = lc_handle_check(L, 1, MT);
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

void lc_open_conn(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"connect", m_connect}, {"recv", m_recv}, {"cancel_read", m_cancel_read},
    {"write", m_write}, {"set_timeouts", m_set_timeouts}, {"park", m_park}, {"unpark", m_unpark},
    {"close", m_close}, {"buffered", m_buffered}, {"peername", m_peername},
    {"nodelay", m_nodelay}, {"fileno", m_fileno},
    {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_conn_new);
  lua_setfield(L, -2, "conn_new");
}
