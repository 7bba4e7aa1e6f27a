/* tcp.c: TCP sockets accepted by a server and listening sockets, bound to Lua (the net module's
 * mechanism, and the listening side of every server; outbound sockets are conn.c's).
 * Owns: the uv_tcp_t (heap, pointed to by the lc_tcp struct so that a socket received over
 * IPC is adopted as it is), its callback reference, its write queue (write_queue.c), its
 * timers (send, accept pause) and, for a dispatching listener, its lc_dispatch (dispatch.c:
 * the connections waiting for a worker and the copies not yet acknowledged). All freed in
 * tcp_close_cb. A socket sent over IPC leaves as a dup of its fd in a standalone uv_tcp_t that
 * ipc.c closes once written; the Lua side then closes its own copy (ownership moves).
 * A listening socket is created by the master (tcp_listen, with SO_REUSEPORT when asked) and
 * is then either held (to be passed to workers), dispatched (the master accepts and sends
 * each connection to the worker its Lua picker names), or accepted from in this process by
 * a C taker (an HTTP server) or by Lua (a net server).
 * Every entry into Lua from a libuv callback goes through lc_call_with (rt.c), its arguments
 * built inside the protected call: out of memory there is logged, never thrown through libuv.
 * What Lua must not miss waits for memory instead of being dropped: a read event (read_hold.h),
 * a dispatched connection (queued, flushed later). */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "tcp.h"
#include "conn.h"
#include "dispatch.h"
#include "write_queue.h"
#include "read_hold.h"
#include "tls.h"
#include "tls_lua.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MT "luacluster.tcp"
#define DEFAULT_SEND_TIMEOUT 60000  /* ms, as an HTTP server's send_timeout */
#define ACCEPT_PAUSE_MS 500      /* accepting pauses this long out of descriptors (as nginx) */
#define TLS_SLICE ((size_t)64 << 10)   /* a TLS write is encrypted and queued this much at a time */
#define FD_HEADROOM 32           /* a dispatcher pauses within this many descriptors of the limit */

typedef struct lc_tcp {
  lc_handle_base base;
  uv_tcp_t *tcp;
  int is_server, closing, reading, close_after_writes, listening;
  lc_wq wq;                 /* what is written and not yet taken by the socket (write_queue.c) */
  int want_read;            /* Lua asked to read (read_start, not read_stop since) */
  read_hold hold;           /* a read event Lua had no memory for, delivered later (read_hold.h) */
  int backlog;              /* a listener's: what tcp_listen gave listen(); 0 = read it back */
  uint64_t send_timeout;    /* ms a close() waits for its peer to take some written bytes; 0: forever */
  uv_timer_t *send_timer;   /* running while a close waits for pending writes */
  size_t stall_mark;        /* bytes still to send when send_timer was last armed */
  int reserve_fd;           /* a listener's spare descriptor, given up to pause accepting on EMFILE */
  int accept_failing;       /* accepts fail (EMFILE...): logged once until one succeeds */
  int accept_stopped;       /* an upgrade's old master: accepts no more (accept_stop) */
  int accept_paused;        /* libuv holds one accepted connection, and stops accepting, until */
  uv_timer_t *pause_timer;  /* this timer takes it (ACCEPT_PAUSE_MS) */
  long fd_limit;            /* RLIMIT_NOFILE's soft limit (0: none), read at fd_limit_at (loop ms) */
  uint64_t fd_limit_at;
  /* a listener's taker: C (http server), Lua (base.cb_ref), or dispatch to workers */
  void (*take)(void *ctx, uv_tcp_t *conn);
  void *take_ctx;
  lc_dispatch dispatch;     /* a listener's dispatch to workers (dispatch.c) */
  lc_tls *tls;              /* a TLS server's accepted socket: its session (tls.c), else NULL */
  uv_timer_t *hs_timer;     /* its handshake's deadline (closes a client that stalls) */
  lc_buf tls_early;         /* plaintext written before the handshake's end, sent at its end */
} lc_tcp;

static void close_timer(uv_timer_t *timer) {
  if (timer) uv_close((uv_handle_t *)timer, lc_free_handle_cb);
}

static void tcp_close_cb(uv_handle_t *h) {
  lc_tcp *t = h->data;
  if (!t->is_server) lc_call_cb_str(&t->base, "close", NULL);
  hold_close(&t->hold);
  lc_wq_close(&t->wq);
  lc_dispatch_free(&t->dispatch);
  close_timer(t->send_timer);
  close_timer(t->pause_timer);
  close_timer(t->hs_timer);
  lc_tls_free(t->tls);
  lc_buf_free(&t->tls_early);
  if (t->reserve_fd >= 0) close(t->reserve_fd);
  lc_handle_release(&t->base);
  free(t->tcp);
  free(t);
}

static void close_now(lc_tcp *t) {
  if (t->closing) return;
  t->closing = 1;
  lc_dispatch_closing(&t->dispatch);
  if (t->send_timer) uv_timer_stop(t->send_timer);
  if (t->pause_timer) uv_timer_stop(t->pause_timer);
  if (t->hs_timer) uv_timer_stop(t->hs_timer);
  hold_clear(&t->hold);   /* a held read event goes with its socket */
  lc_wq_close(&t->wq);    /* unsent bytes go; those in flight end with UV_ECANCELED */
  uv_close((uv_handle_t *)t->tcp, tcp_close_cb);
}

static size_t write_queued(lc_tcp *t) { return lc_wq_queued(&t->wq); }

static void arm_send_timer(lc_tcp *t);

/* send_timeout has passed since the close's wait began or last saw progress: a peer that took
 * some bytes meanwhile (the queue shrank, as stream.c measures it) gets another send_timeout;
 * one that took nothing loses the socket, unsent bytes too */
static void tcp_send_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (write_queued(t) < t->stall_mark) arm_send_timer(t);
  else close_now(t);
}

/* (re)starts the wait of a close for its pending writes: send_timeout without progress */
static void arm_send_timer(lc_tcp *t) {
  if (t->send_timeout == 0 || t->closing) return;
  if (t->send_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return;
    if (uv_timer_init(t->tcp->loop, timer) != 0) { free(timer); return; }
    timer->data = t;
    t->send_timer = timer;
  }
  t->stall_mark = write_queued(t);
  uv_timer_start(t->send_timer, tcp_send_timer_cb, t->send_timeout, 0);
}

static void tls_close_notify(lc_tcp *t);

static void tcp_close(lc_tcp *t) {
  if (t->closing) return;
  if (t->tls && !lc_tls_done(t->tls) && t->tls_early.len > 0) {
    /* what was written waits for the handshake's end (tls_read), bounded by send_timeout */
    if (!t->close_after_writes) arm_send_timer(t);
    t->close_after_writes = 1;
    return;
  }
  if (t->tls) tls_close_notify(t);
  if (!lc_wq_end(&t->wq)) {
    if (!t->close_after_writes) arm_send_timer(t);
    t->close_after_writes = 1;
    return;
  }
  close_now(t);
}

/* a write of t's queue is done: a close waiting for it goes on */
static void tcp_written_cb(lc_wq *q, int status) {
  lc_tcp *t = q->data;
  if (t->close_after_writes && !t->closing) {
    if (status < 0 || lc_wq_idle(q)) close_now(t);
    else arm_send_timer(t);  /* progress: the peer takes bytes */
  }
}

static lc_tcp *wrap(lua_State *L, uv_tcp_t *tcp, int is_server) {
  lc_tcp *t = lc_handle_new(L, sizeof *t, MT);
  t->tcp = tcp;
  t->is_server = is_server;
  lc_dispatch_init(&t->dispatch, t->base.rt, tcp->loop);
  t->send_timeout = DEFAULT_SEND_TIMEOUT;
  t->reserve_fd = -1;
  tcp->data = t;
  lc_wq_init(&t->wq, (uv_stream_t *)tcp, NULL, 0, tcp_written_cb, t);
  return t;
}

int lc_tcp_push_received(lua_State *L, lc_rt *rt, uv_stream_t *accepted, int is_server) {
  (void)rt;
  wrap(L, (uv_tcp_t *)accepted, is_server);
  return 1;
}

/* (an outbound socket, conn.c's, travels the same way: its descriptor is dup'ed) */
uv_stream_t *lc_tcp_stream_for_send(lua_State *L, int idx, int *is_server) {
  uv_tcp_t *src = lc_conn_tcp_for_send(L, idx);
  *is_server = 0;
  if (src == NULL) {
    lc_tcp *t = lc_handle_check(L, idx, MT);
    if (t->tls) luaL_error(L, "cannot send this socket: it speaks TLS (its session cannot move)");
    src = t->tcp;
    *is_server = t->is_server;
  }
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)src, &fd);
  if (r != 0) luaL_error(L, "cannot send this socket: %s", uv_strerror(r));
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) luaL_error(L, "cannot send this socket: %s", strerror(errno));
  uv_tcp_t *out = malloc(sizeof *out);
  r = out == NULL ? UV_ENOMEM : uv_tcp_init(src->loop, out);
  if (r != 0) {
    close(copy);
    free(out);  /* never initialised: not known to the loop */
    luaL_error(L, "cannot send this socket: %s", uv_strerror(r));
  }
  if ((r = uv_tcp_open(out, copy)) != 0) {
    close(copy);  /* uv_tcp_open did not take it */
    uv_close((uv_handle_t *)out, lc_free_handle_cb);
    luaL_error(L, "cannot send this socket: %s", uv_strerror(r));
  }
  return (uv_stream_t *)out;
}

/* ---- reading and writing ---- */

static void tcp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[65536];
  *buf = uv_buf_init(slab, sizeof slab);
}

typedef struct read_args { lc_tcp *t; ssize_t nread; const char *data; } read_args;

/* run by lc_call_with, protected: cb("data", bytes) | cb("end") | cb("error", message) */
static int tcp_push_read(lua_State *L, void *ud) {
  read_args *a = ud;
  if (!lc_handle_push_cb(&a->t->base)) return -1;
  if (a->nread > 0) {
    lua_pushliteral(L, "data");
    lua_pushlstring(L, a->data, (size_t)a->nread);
    return 2;
  }
  if (a->nread == UV_EOF) {
    lua_pushliteral(L, "end");
    return 1;
  }
  lua_pushliteral(L, "error");
  lua_pushfstring(L, "%s: %s", uv_err_name((int)a->nread), uv_strerror((int)a->nread));
  return 2;
}

/* 1 when Lua got the event (or has no callback for it), 0 when its arguments could not be built */
static int deliver_read(lc_tcp *t, ssize_t nread, const char *data) {
  read_args a = {t, nread, data};
  return lc_call_with(t->base.rt, tcp_push_read, &a) <= 0;
}

static void tcp_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void stop_reading(lc_tcp *t) {
  if (t->reading) uv_read_stop((uv_stream_t *)t->tcp);
  t->reading = 0;
}

/* the socket reads (once: a second call while it reads does nothing): 0 or UV_E* */
static int start_reading(lc_tcp *t) {
  if (t->reading) return 0;
  int r = uv_read_start((uv_stream_t *)t->tcp, tcp_alloc_cb, tcp_read_cb);
  if (r == 0) t->reading = 1;
  return r;
}

/* reads again once a held event is delivered, if Lua still wants to */
static void resume_reading(lc_tcp *t) {
  if (t->reading || !t->want_read || t->closing || hold_active(&t->hold)) return;
  int r = start_reading(t);
  if (r != 0) {
    lc_log(t->base.rt, "error: tcp: reading cannot resume: %s; the socket is closed", uv_strerror(r));
    tcp_close(t);
    return;
  }
  t->reading = 1;
}

static void tcp_hold_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (!hold_active(&t->hold) || t->closing || !t->want_read) return;  /* read_start retries it */
  ssize_t nread = t->hold.nread;
  if (!deliver_read(t, nread, t->hold.data)) {
    hold_retry_later(&t->hold, tcp_hold_timer_cb);
    return;
  }
  hold_clear(&t->hold);
  if (nread > 0) resume_reading(t);
}

/* Lua had no memory for this event: it waits (reading stops behind it) and is retried */
static void hold_read(lc_tcp *t, ssize_t nread, const char *data) {
  stop_reading(t);
  if (hold_put(&t->hold, t->tcp->loop, nread, data, tcp_hold_timer_cb, t) != 0) {
    lc_log(t->base.rt, "error: tcp: a read event could not be kept for a retry (out of memory); the socket is closed");
    tcp_close(t);
    return;
  }
  if (nread > 0)
    lc_log(t->base.rt, "warn: tcp: Lua had no memory for %zd bytes a socket read; they wait, and reading with them", nread);
  else
    lc_log(t->base.rt, "warn: tcp: Lua had no memory for a socket's %s event; it waits", nread == UV_EOF ? "end" : "error");
}

static void tls_read(lc_tcp *t, ssize_t nread, const char *p);

static void tcp_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lc_tcp *t = st->data;
  if (nread == 0) return;
  if (t->tls) { tls_read(t, nread, buf->base); return; }
  if (nread < 0) stop_reading(t);   /* the end, or an error: nothing more to read */
  if (!deliver_read(t, nread, buf->base)) hold_read(t, nread, buf->base);
}

/* ---- TLS on an accepted socket (net.create_server's opts.tls) ----
 * The socket reads from its acceptance on for the handshake, whether Lua reads or not; once
 * it is done, reading follows Lua's read_start / read_stop as for a plain socket. Plaintext is
 * delivered as "data" events; what Lua writes before the handshake's end waits (tls_early) and
 * leaves at its end. A failed handshake is an "error" event (EPROTO), then the socket closes.
 * The ciphertext read goes to the session lent (the slab), what is left of a cut record kept. */

/* the session's output into the write queue: 0 or a UV_E* code */
static int tls_push(lc_tcp *t) {
  const char *p;
  size_t n = lc_tls_out(t->tls, &p);
  if (n == 0) return 0;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = lc_wq_write(&t->wq, &b, 1);
  lc_tls_out_consume(t->tls, n);
  return r;
}

/* the plaintext the session holds, up to cap bytes into buf: the count, or < 0 (the end:
 * UV_EOF close_notify, or a failure) when nothing came */
static ssize_t tls_take(lc_tcp *t, char *buf, size_t cap) {
  size_t got = 0;
  int r = 0;
  while (got < cap) {
    size_t n = 0;
    r = lc_tls_read(t->tls, buf + got, cap - got, &n);
    if (r != 0) break;
    got += n;
  }
  (void)tls_push(t);
  if (got > 0) return (ssize_t)got;
  return r == LC_TLS_WANT_READ ? 0 : (r == UV_EOF ? UV_EOF : UV_EPROTO);
}

/* what the session holds goes to Lua while it reads: 0, or -1 when it must wait (held) */
static int tls_deliver(lc_tcp *t) {
  static __thread char plain[65536];
  while (t->want_read && !t->closing && !hold_active(&t->hold)) {
    ssize_t n = tls_take(t, plain, sizeof plain);
    if (n == 0) return 0;
    if (n < 0) stop_reading(t);
    if (!deliver_read(t, n, plain)) { hold_read(t, n, plain); return -1; }
    if (n < 0) return -1;
  }
  if (!t->want_read) stop_reading(t);   /* (the handshake read on its own) */
  return 0;
}

static void tls_read(lc_tcp *t, ssize_t nread, const char *p) {
  if (nread < 0) {
    stop_reading(t);
    if (!lc_tls_done(t->tls)) { tcp_close(t); return; }   /* gone mid-handshake: nothing was said */
    if (!deliver_read(t, nread, NULL)) hold_read(t, nread, NULL);
    return;
  }
  if (lc_tls_feed_lend(t->tls, p, (size_t)nread) != 0) { close_now(t); return; }
  if (!lc_tls_done(t->tls)) {
    int hs = lc_tls_handshake(t->tls);
    int w = tls_push(t);   /* the next flight, or an alert */
    if (hs < 0 || w != 0) {
      stop_reading(t);
      if (!deliver_read(t, UV_EPROTO, NULL)) { /* no memory to say so: it closes all the same */ }
      close_now(t);
      return;
    }
    if (hs == 0 && t->tls_early.len > 0) {   /* what Lua wrote meanwhile */
      int r = lc_tls_write(t->tls, t->tls_early.data, t->tls_early.len);
      lc_buf_free(&t->tls_early);
      if (r != 0 || tls_push(t) != 0) { close_now(t); return; }
      if (t->close_after_writes) {   /* a close waited for them */
        tls_close_notify(t);
        if (lc_wq_end(&t->wq)) { close_now(t); return; }
      }
    }
    if (hs == 0 && t->hs_timer) uv_timer_stop(t->hs_timer);
  }
  if (lc_tls_done(t->tls) && tls_deliver(t) == 0 && t->closing) return;
  if (!t->closing && lc_tls_feed_keep(t->tls) != 0) close_now(t);
}

static void tls_close_notify(lc_tcp *t) {
  if (!lc_tls_done(t->tls)) return;
  if (lc_tls_shutdown(t->tls) == 0) (void)tls_push(t);
  else lc_tls_out_consume(t->tls, lc_tls_out(t->tls, &(const char *){NULL}));   /* never sent on another session */
}

static void tcp_hs_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (!lc_tls_done(t->tls)) close_now(t);
}

/* sock:tls_accept(ctx, ms): an accepted socket speaks TLS with a core.tls_server_new's
 * certificates; the handshake starts (reading) at once and must end within ms (0: no limit) */
static int m_tls_accept(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lc_tls_server *srv = lc_tls_server_check(L, 2);
  lua_Number ms = luaL_optnumber(L, 3, 10000);
  if (t->tls || t->is_server || t->closing) return luaL_error(L, "tls_accept: not a plain accepted socket");
  t->tls = lc_tls_server_session(srv);
  if (t->tls == NULL) return lc_push_error(L, UV_ENOMEM);
  if (ms > 0) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return lc_push_error(L, UV_ENOMEM);
    if (uv_timer_init(t->tcp->loop, timer) != 0) { free(timer); return lc_push_error(L, UV_ENOMEM); }
    timer->data = t;
    t->hs_timer = timer;
    uv_timer_start(timer, tcp_hs_timer_cb, (uint64_t)ms, 0);
  }
  int r = start_reading(t);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:tls_info() -> { protocol, cipher, server_name, session_reused } | nil */
static int m_tls_info(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  if (!t->tls || !lc_tls_done(t->tls)) return 0;
  lc_tls_push_info(L, t->tls);
  return 1;
}

static int m_write(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (t->closing || t->close_after_writes || t->is_server) return lc_push_error(L, UV_EPIPE);
  int r;
  if (t->tls && !lc_tls_done(t->tls)) {
    r = lc_buf_append(&t->tls_early, data, len);   /* sent at the handshake's end */
  } else if (t->tls) {
    /* a slice at a time: the session's output (shared by the process's server sessions) never
     * holds a copy of a big write */
    r = 0;
    for (size_t off = 0; r == 0 && off < len; off += TLS_SLICE) {
      size_t k = len - off < TLS_SLICE ? len - off : TLS_SLICE;
      r = lc_tls_write(t->tls, data + off, k);
      if (r == 0) r = tls_push(t);
      else lc_tls_out_consume(t->tls, lc_tls_out(t->tls, &(const char *){NULL}));   /* never another's */
    }
  } else {
    uv_buf_t b;
    b.base = (char *)data;
    b.len = len;
    r = lc_wq_write(&t->wq, &b, 1);
  }
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_read_start(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lc_handle_set_cb(L, &t->base, 2);
  t->want_read = 1;
  if (hold_active(&t->hold)) {   /* the held event comes first; reading resumes after it */
    hold_retry_now(&t->hold, tcp_hold_timer_cb);
  } else if (t->tls && lc_tls_done(t->tls) && !t->closing) {
    /* plaintext that came while Lua did not read waits in the session: it comes next turn
     * (held, as an event Lua could not take), reading resumes after it */
    static __thread char plain[65536];
    ssize_t n = tls_take(t, plain, sizeof plain);
    if (n != 0) {
      if (hold_put(&t->hold, t->tcp->loop, n, plain, tcp_hold_timer_cb, t) != 0) return lc_push_error(L, UV_ENOMEM);
      hold_retry_now(&t->hold, tcp_hold_timer_cb);
    } else {
      int r = start_reading(t);
      if (r != 0) return lc_push_error(L, r);
    }
  } else if (!t->closing) {
    int r = start_reading(t);
    if (r != 0) return lc_push_error(L, r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int m_read_stop(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  t->want_read = 0;
  stop_reading(t);
  return 0;
}

static int m_close(lua_State *L) {
  lc_tcp *t = lc_handle_test(L, 1, MT);
  if (t) tcp_close(t);
  return 0;
}

int lc_tcp_push_addr(lua_State *L, const struct sockaddr_storage *ss) {
  char ip[64];
  int port;
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

static int m_peername(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getpeername(t->tcp, (struct sockaddr *)&ss, &len);
  if (r != 0) return lc_push_error(L, r);
  return lc_tcp_push_addr(L, &ss);
}

static int m_sockname(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getsockname(t->tcp, (struct sockaddr *)&ss, &len);
  if (r != 0) return lc_push_error(L, r);
  return lc_tcp_push_addr(L, &ss);
}

static int m_is_server(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lua_pushboolean(L, t->is_server);
  return 1;
}

/* ---- listening ---- */

/* a listening address: an IP literal, or "localhost" (outbound names are resolve.c's) */
static int parse_addr(const char *host, int port, struct sockaddr_storage *ss) {
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (strchr(host, ':')) return uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *)ss);
}

/* the system's limit of a listen backlog (net.core.somaxconn): the default backlog, which
 * the administrator tunes with sysctl */
static int system_backlog(void) {
  int n = 0;
  FILE *f = fopen("/proc/sys/net/core/somaxconn", "re");
  if (f) {
    if (fscanf(f, "%d", &n) != 1) n = 0;
    fclose(f);
  }
  return n > 0 ? n : SOMAXCONN;
}

/* the backlog a listening socket already has (it came from another process: a worker's copy
 * of the master's socket), so that accepting on it keeps it; 0 when it cannot be read */
static int current_backlog(uv_tcp_t *tcp) {
  uv_os_fd_t fd;
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (uv_fileno((uv_handle_t *)tcp, &fd) != 0) return 0;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ti.tcpi_state != 10 /* TCP_LISTEN */) return 0;
  return (int)ti.tcpi_sacked;  /* for a listening socket: its maximum backlog (sk_max_ack_backlog) */
}

/* core.tcp_listen(host, port, {reuseport=, backlog=}) -> server | nil, "listen EADDRINUSE 127.0.0.1:8080", name
 * backlog: the system's (net.core.somaxconn) unless given */
static int f_tcp_listen(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  int reuseport = 0, backlog = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "reuseport");
    reuseport = lua_toboolean(L, -1);
    lua_getfield(L, 3, "backlog");
    backlog = (int)luaL_optinteger(L, -1, 0);
    lua_pop(L, 2);
  }
  if (backlog <= 0) backlog = system_backlog();
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int err = parse_addr(host, port, &ss);
  int fd = -1;
  if (err == 0) {
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) err = uv_translate_sys_error(errno);
  }
  if (err == 0) {
    int one = 1;
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, backlog) != 0)
      err = uv_translate_sys_error(errno);
  }
  uv_tcp_t *tcp = NULL;
  if (err == 0) {
    tcp = malloc(sizeof *tcp);
    if (tcp == NULL) err = UV_ENOMEM;
    else if ((err = uv_tcp_init(&rt->loop, tcp)) != 0) {
      free(tcp);  /* never initialised: not known to the loop */
      tcp = NULL;
    } else if ((err = uv_tcp_open(tcp, fd)) != 0) {
      uv_close((uv_handle_t *)tcp, lc_free_handle_cb);  /* fd is still ours: closed below */
      tcp = NULL;
    }
  }
  if (err != 0) {
    if (fd >= 0) close(fd);
    return lc_push_fail(L, err, strchr(host, ':') ? "listen %s [%s]:%d" : "listen %s %s:%d", uv_err_name(err), host, port);
  }
  lc_tcp *t = wrap(L, tcp, 1);
  t->backlog = backlog;
  return 1;
}

uv_tcp_t *lc_tcp_listener(lua_State *L, int idx) {
  lc_tcp *t = lc_handle_check(L, idx, MT);
  if (!t->is_server) luaL_argerror(L, idx, "not a listening socket");
  return t->tcp;
}

typedef struct conn_args { lc_handle_base *owner; uv_tcp_t *conn; int handed; } conn_args;

/* run by lc_call_with, protected: the owner's callback and the connection as a Lua socket */
static int tcp_push_conn(lua_State *L, void *ud) {
  conn_args *a = ud;
  if (!lc_handle_push_cb(a->owner)) return -1;
  wrap(L, a->conn, 0);
  a->handed = 1;  /* last: until here, a raise leaves the connection to give_conn */
  return 1;
}

/* cb(sock) for a new connection (a net server's accept, a worker's sink); a connection no
 * callback can take (none set, or out of memory making its Lua object) is closed */
void lc_tcp_give_conn(lc_handle_base *owner, uv_tcp_t *conn) {
  conn_args a = {owner, conn, 0};
  int r = lc_call_with(owner->rt, tcp_push_conn, &a);
  if (a.handed) return;
  if (r > 0) lc_log(owner->rt, "warn: tcp: a new connection was closed: no memory for its Lua object");
  uv_close((uv_handle_t *)conn, lc_free_handle_cb);
}

static void tcp_pause_timer_cb(uv_timer_t *timer);

/* Accepting pauses ACCEPT_PAUSE_MS (as nginx does out of descriptors): the next connection
 * that comes is left to libuv, which keeps it and stops watching the listener until uv_accept
 * takes it (tcp_pause_timer_cb). Meanwhile new connections wait in the kernel's accept queue, and
 * the loop serves everything else (a control request, the workers). 0 when it cannot pause. */
static int pause_accepting(lc_tcp *t) {
  if (t->accept_paused) return 1;
  if (t->pause_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return 0;
    if (uv_timer_init(t->tcp->loop, timer) != 0) { free(timer); return 0; }
    timer->data = t;
    t->pause_timer = timer;
  }
  t->accept_paused = 1;
  uv_timer_start(t->pause_timer, tcp_pause_timer_cb, ACCEPT_PAUSE_MS, 0);
  return 1;
}

/* the soft limit of open descriptors, 0 if none; read again once a second (prlimit can change it) */
static long fd_limit(lc_tcp *t) {
  uint64_t now = uv_now(t->tcp->loop);
  if (t->fd_limit_at == 0 || now - t->fd_limit_at >= 1000) {
    struct rlimit rl;
    int known = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= LONG_MAX;
    t->fd_limit = known ? (long)rl.rlim_cur : 0;
    t->fd_limit_at = now > 0 ? now : 1;
  }
  return t->fd_limit;
}

/* a new connection goes to its taker: C (HTTP), the dispatch, or Lua (a net server) */
static void take_conn(lc_tcp *t, uv_tcp_t *conn) {
  if (t->take) {
    t->take(t->take_ctx, conn);
  } else if (lc_dispatch_on(&t->dispatch)) {
    /* the master holds the connections it dispatches (a copy until acknowledged, the queue):
     * near its descriptor limit it stops accepting for a while rather than reaching it, so
     * that its control socket, its workers' pipes and a restart still have descriptors */
    uv_os_fd_t fd = -1;
    long limit = fd_limit(t);
    if (limit > 2 * FD_HEADROOM && uv_fileno((uv_handle_t *)conn, &fd) == 0 && fd >= limit - FD_HEADROOM) {
      if (!t->accept_failing) {
        t->accept_failing = 1;
        lc_log(t->base.rt, "warn: dispatch: %ld descriptors open (limit %ld); accepting pauses %d ms at a time"
               " until some close", (long)fd + 1, limit, ACCEPT_PAUSE_MS);
      }
      pause_accepting(t);
    } else if (limit <= 2 * FD_HEADROOM || fd < limit - 2 * FD_HEADROOM) {
      t->accept_failing = 0;
    }
    lc_dispatch_take(&t->dispatch, conn);
  } else {
    lc_tcp_give_conn(&t->base, conn);
  }
}

/* the pause is over: the connection libuv kept (if any) is taken, and libuv watches again */
static void tcp_pause_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (t->closing) return;
  uv_tcp_t *conn = malloc(sizeof *conn);
  if (conn == NULL || uv_tcp_init(t->tcp->loop, conn) != 0) {
    free(conn);
    uv_timer_start(timer, tcp_pause_timer_cb, ACCEPT_PAUSE_MS, 0);  /* still paused: again later */
    return;
  }
  t->accept_paused = 0;
  if (uv_accept((uv_stream_t *)t->tcp, (uv_stream_t *)conn) != 0) {  /* libuv kept none */
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
    conn = NULL;
  }
  if (t->reserve_fd < 0 && (t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0 && conn) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);  /* its descriptor is the spare now */
    conn = NULL;
    t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  if (conn) take_conn(t, conn);
}

static void tcp_connection_cb(uv_stream_t *server, int status) {
  lc_tcp *t = server->data;
  if (status != 0) {
    /* one line per burst, not one per failed accept: a flood must not flood the log too */
    if (!t->accept_failing) {
      t->accept_failing = 1;
      lc_log(t->base.rt, "warn: accept: %s (%s); accepting pauses %d ms at a time until some descriptors close",
             uv_strerror(status), uv_err_name(status), ACCEPT_PAUSE_MS);
    }
    /* Out of descriptors, with libuv's own spare gone (ENFILE, a lowered limit): libuv calls
     * back for each failed accept until one succeeds or none waits. The listener's spare is
     * given up so that the next accept succeeds: libuv keeps that connection for the pause. */
    if ((status == UV_EMFILE || status == UV_ENFILE) && t->reserve_fd >= 0 && pause_accepting(t)) {
      close(t->reserve_fd);
      t->reserve_fd = -1;
    }
    return;
  }
  if (t->accept_paused) return;  /* libuv keeps this one, and stops accepting, until the pause ends */
  uv_tcp_t *conn = malloc(sizeof *conn);
  if (conn == NULL || uv_tcp_init(server->loop, conn) != 0) {
    free(conn);
    pause_accepting(t);  /* libuv keeps it: taken when the pause ends */
    return;
  }
  if (uv_accept(server, (uv_stream_t *)conn) != 0) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
    return;
  }
  if (!lc_dispatch_on(&t->dispatch)) t->accept_failing = 0;
  take_conn(t, conn);
}

static int start_listening(lua_State *L, lc_tcp *t) {
  if (t->listening || t->accept_stopped) return 0;
  if (t->reserve_fd < 0) t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  /* uv_listen calls listen() again: with the backlog the socket was made with, not another */
  int backlog = t->backlog > 0 ? t->backlog : current_backlog(t->tcp);
  if (backlog <= 0) backlog = system_backlog();
  int r = uv_listen((uv_stream_t *)t->tcp, backlog, tcp_connection_cb);
  if (r != 0) return r;
  t->listening = 1;
  (void)L;
  return 0;
}

/* A listener has one taker at a time: a C function (an HTTP server), a Lua callback (a net
 * server) or a dispatch picker. Setting one clears the others, so that a listening socket
 * handed to a server of another kind (a reload's new code, listen.lua) stops feeding the old
 * one, which may be freed once it has drained. */
static void clear_takers(lua_State *L, lc_tcp *t) {
  t->take = NULL;
  t->take_ctx = NULL;
  lc_handle_set_cb(L, &t->base, 0);
  lc_dispatch_stop(L, &t->dispatch);
}

/* Makes a C function the taker of this listener's connections (the HTTP server). */
int lc_tcp_accept_with(lua_State *L, int idx, void (*take)(void *ctx, uv_tcp_t *conn), void *ctx) {
  lc_tcp *t = lc_handle_check(L, idx, MT);
  if (!t->is_server) luaL_argerror(L, idx, "not a listening socket");
  clear_takers(L, t);
  t->take = take;
  t->take_ctx = ctx;
  return start_listening(L, t);
}

/* server:accept(cb): cb(sock) for each connection (a net server in this process) */
static int m_accept(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  if (!t->is_server) return luaL_argerror(L, 1, "not a listening socket");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  clear_takers(L, t);
  lc_handle_set_cb(L, &t->base, 2);
  int r = start_listening(L, t);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* server:dispatch(key, picker, want_addr): the master accepts and sends each connection to the
 * worker picker(prev, how, [ip, port]) names (see dispatch_one) */
static int m_dispatch(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  if (!t->is_server) return luaL_argerror(L, 1, "not a listening socket");
  int key = (int)luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  clear_takers(L, t);
  lua_pushvalue(L, 3);
  lc_dispatch_start(L, &t->dispatch, key, lua_toboolean(L, 4));
  int r = start_listening(L, t);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* server:dispatch_flush(): hands queued connections to workers that became ready -> sent, left */
static int m_dispatch_flush(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  size_t sent = lc_dispatch_flush(&t->dispatch);
  lua_pushinteger(L, (lua_Integer)sent);
  lua_pushinteger(L, (lua_Integer)t->dispatch.nqueued);
  return 2;
}

/* server:dispatch_requeue(serial) -> requeued, closed: the worker whose channel has this serial
 * is gone; what it had not acknowledged goes to the front of the queue, in the order it was
 * sent (then dispatch_flush hands it to other workers), unless that worker had begun on it
 * (read or written: conn_pristine), which is closed instead: a connection is never served twice */
static int m_dispatch_requeue(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  uint64_t serial = (uint64_t)luaL_checknumber(L, 2);
  size_t closed = 0;
  size_t n = lc_dispatch_requeue(&t->dispatch, serial, &closed);
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushinteger(L, (lua_Integer)closed);
  return 2;
}

/* server:accept_stop() -> true | nil, err: this process accepts no more on this listening
 * socket, which stays open (its dispatch goes on handing out what it accepted already, until
 * it is closed). A binary upgrade's old master (master/upgrade.lua): the new master holds the
 * same socket and starts accepting once this one has stopped, so exactly one master accepts
 * at a time and what waits in the kernel's accept queue stays there for the new one.
 * libuv has no way to stop watching a listener but closing it, which would also close the
 * connections its dispatch still holds: the socket leaves the loop's epoll set instead. libuv
 * still counts it as watched, never changes its events (a listener's are POLLIN or none), and
 * its close's EPOLL_CTL_DEL ignores the ENOENT. Linux (epoll) only, as luacluster is. */
static int m_accept_stop(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  if (!t->is_server) return luaL_argerror(L, 1, "not a listening socket");
  t->accept_stopped = 1;
  if (!t->listening) { lua_pushboolean(L, 1); return 1; }
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)t->tcp, &fd);
  if (r != 0) return lc_push_error(L, r);
  struct epoll_event dummy;
  memset(&dummy, 0, sizeof dummy);
  if (epoll_ctl(uv_backend_fd(t->tcp->loop), EPOLL_CTL_DEL, fd, &dummy) != 0 && errno != ENOENT)
    return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* server:accept_resume() -> true | nil, err: undoes accept_stop (an upgrade whose new master
 * died before it accepted): the socket goes back into the epoll set as libuv registered it
 * (EPOLLIN, data.fd = the fd), which libuv still counts as watched */
static int m_accept_resume(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  if (!t->is_server) return luaL_argerror(L, 1, "not a listening socket");
  if (!t->accept_stopped) { lua_pushboolean(L, 1); return 1; }
  t->accept_stopped = 0;
  if (!t->listening) { lua_pushboolean(L, 1); return 1; }
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)t->tcp, &fd);
  if (r != 0) return lc_push_error(L, r);
  struct epoll_event e;
  memset(&e, 0, sizeof e);
  e.events = EPOLLIN;
  e.data.fd = fd;
  if (epoll_ctl(uv_backend_fd(t->tcp->loop), EPOLL_CTL_ADD, fd, &e) != 0 && errno != EEXIST)
    return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

/* server:dispatch_pending() -> queued, in flight: the connections this dispatcher holds (waiting
 * for a worker; sent and not acknowledged yet) */
static int m_dispatch_pending(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lua_pushinteger(L, (lua_Integer)t->dispatch.nqueued);
  lua_pushinteger(L, (lua_Integer)t->dispatch.ninflight);
  return 2;
}

/* Hands a connected socket's uv handle to a C owner (an HTTP server); the Lua object is
 * closed without closing the socket. NULL when it cannot be moved (writes in flight, or a read
 * event held for Lua). */
uv_tcp_t *lc_tcp_detach(lua_State *L, int idx) {
  lc_tcp *t = lc_handle_check(L, idx, MT);
  if (t->is_server || !lc_wq_idle(&t->wq) || t->closing || t->close_after_writes || hold_active(&t->hold) || t->tls)
    return NULL;   /* (a TLS socket's session cannot move with it) */
  lc_wq_close(&t->wq);
  if (t->send_timer) uv_close((uv_handle_t *)t->send_timer, lc_free_handle_cb);
  hold_close(&t->hold);
  if (t->reserve_fd >= 0) close(t->reserve_fd);
  if (t->reading) uv_read_stop((uv_stream_t *)t->tcp);
  uv_tcp_t *tcp = t->tcp;
  tcp->data = NULL;
  lc_dispatch_free(&t->dispatch);
  lc_handle_release(&t->base);
  free(t);
  return tcp;
}

/* sock:set_send_timeout(ms): how long a close() waits for the peer to take some of what is
 * still to send before the socket is closed anyway (0: forever) */
static int m_set_send_timeout(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lua_Number ms = luaL_checknumber(L, 2);
  luaL_argcheck(L, ms >= 0 && ms <= 1e12, 2, "a number of ms >= 0");
  t->send_timeout = (uint64_t)ms;
  if (t->close_after_writes) {
    if (t->send_timeout == 0) { if (t->send_timer) uv_timer_stop(t->send_timer); }
    else arm_send_timer(t);
  }
  return 0;
}

static int m_nodelay(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  uv_tcp_nodelay(t->tcp, lua_toboolean(L, 2));
  return 0;
}

static int m_fileno(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)t->tcp, &fd) != 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

void lc_open_tcp(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", m_write}, {"read_start", m_read_start}, {"read_stop", m_read_stop},
    {"close", m_close}, {"peername", m_peername}, {"sockname", m_sockname},
    {"is_server", m_is_server}, {"accept", m_accept}, {"dispatch", m_dispatch},
    {"dispatch_flush", m_dispatch_flush}, {"dispatch_requeue", m_dispatch_requeue},
    {"accept_stop", m_accept_stop}, {"accept_resume", m_accept_resume}, {"dispatch_pending", m_dispatch_pending},
    {"nodelay", m_nodelay}, {"fileno", m_fileno},
    {"set_send_timeout", m_set_send_timeout}, {"tls_accept", m_tls_accept}, {"tls_info", m_tls_info},
    {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  static const luaL_Reg fns[] = {
    {"tcp_listen", f_tcp_listen},
    {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
}
