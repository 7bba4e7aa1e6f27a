/* tcp.c: TCP sockets and listening sockets bound to Lua (the net module's mechanism, and the
 * listening side of every server).
 * Owns: the uv_tcp_t (heap, pointed to by the lc_tcp struct so that a socket received over
 * IPC is adopted as it is), its callback reference, its write requests and, for a
 * dispatching listener, the accepted connections waiting for a ready worker and the copies of
 * those sent and not yet acknowledged by the worker's channel (ipc.c calls lc_tcp_conn_ack),
 * its timers (send, flush, queue deadline, accept pause). All freed in close_cb. A socket sent over IPC leaves as a dup of its fd in a standalone uv_tcp_t that
 * ipc.c closes once written; the Lua side then closes its own copy (ownership moves).
 * A listening socket is created by the master (tcp_listen, with SO_REUSEPORT when asked) and
 * is then either held (to be passed to workers), dispatched (the master accepts and sends
 * each connection to the worker its Lua picker names), or accepted from in this process by
 * a C taker (an HTTP server) or by Lua (a net server).
 * Every entry into Lua from a libuv callback goes through lc_call_with (rt.c), its arguments
 * built inside the protected call: out of memory there is logged, never thrown through libuv.
 * What Lua must not miss waits for memory instead of being dropped: a read event (read_hold.h),
 * a connect's callback (retried on a timer), a dispatched connection (queued, flushed later). */
#define _GNU_SOURCE
#include "lc.h"
#include "read_hold.h"

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
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MT "luacluster.tcp"
#define MT_SINK "luacluster.sink"
#define MAX_QUEUED_CONNS 4096
#define QUEUE_TIMEOUT_MS 10000   /* a connection waits this long in the master for a ready worker */
#define DEFAULT_SEND_TIMEOUT 60000  /* ms, as an HTTP server's send_timeout */
#define MAX_INFLIGHT_CONNS 4096  /* per listener; beyond, a connection is sent without a copy */
#define MAX_UNACKED_PER_WORKER 128  /* a worker with this many not acknowledged counts as busy */
#define ACCEPT_PAUSE_MS 500      /* accepting pauses this long out of descriptors (as nginx) */
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
  uv_timer_t *flush_timer;  /* a dispatching listener's: retries its queue when the picker could not answer */
  int reserve_fd;           /* a listener's spare descriptor, given up to pause accepting on EMFILE */
  int accept_failing;       /* accepts fail (EMFILE...): logged once until one succeeds */
  int accept_paused;        /* libuv holds one accepted connection, and stops accepting, until */
  uv_timer_t *pause_timer;  /* this timer takes it (ACCEPT_PAUSE_MS) */
  long fd_limit;            /* RLIMIT_NOFILE's soft limit (0: none), read at fd_limit_at (loop ms) */
  uint64_t fd_limit_at;
  /* a listener's taker: C (http server), Lua (base.cb_ref), or dispatch to workers */
  void (*take)(void *ctx, uv_tcp_t *conn);
  void *take_ctx;
  int dispatch_key, picker_ref, want_addr;
  /* dispatch: accepted, waiting for a ready worker (oldest first), each for QUEUE_TIMEOUT_MS
   * at most from its accept (queue_timer sweeps; since is kept when a worker gives it back, so
   * one that bounces between workers that cannot take it still ends) */
  struct queued { uv_tcp_t *conn; uint64_t since; } *queued;
  size_t nqueued, queued_cap;
  uv_timer_t *queue_timer;
  /* dispatch: sent to a worker, which has not yet acknowledged its CONN frame (ipc.c). The
   * master keeps its own copy of each, keyed by the channel's serial (unique per worker
   * process: a reload's new worker reuses the old one's id) and the frame's seq: if the worker
   * goes without taking it, the connection goes to another worker (dispatch_requeue), but only
   * while nobody has read from it or written to it (conn_pristine). */
  struct inflight { uint64_t serial; uint32_t seq; int id; uv_tcp_t *conn; uint64_t since; } *inflight;
  size_t ninflight, inflight_cap;
  uint32_t next_seq;        /* the seq of the last CONN frame sent with a copy (never 0) */
  struct lc_tcp *next_dispatcher;  /* rt->dispatchers, while dispatching */
  int dispatching;
} lc_tcp;

/* takes t off its runtime's list of dispatching listeners */
static void unlink_dispatcher(lc_tcp *t) {
  if (!t->dispatching) return;
  struct lc_tcp **pp = &t->base.rt->dispatchers;
  while (*pp && *pp != t) pp = &(*pp)->next_dispatcher;
  if (*pp) *pp = t->next_dispatcher;
  t->next_dispatcher = NULL;
  t->dispatching = 0;
}

static void close_timer(uv_timer_t *timer) {
  if (timer) uv_close((uv_handle_t *)timer, lc_free_handle_cb);
}

static void close_cb(uv_handle_t *h) {
  lc_tcp *t = h->data;
  lua_State *L = t->base.rt->L;
  if (!t->is_server) lc_call_cb_str(&t->base, "close", NULL);
  hold_close(&t->hold);
  lc_wq_close(&t->wq);
  unlink_dispatcher(t);
  close_timer(t->send_timer);
  close_timer(t->flush_timer);
  close_timer(t->queue_timer);
  close_timer(t->pause_timer);
  if (t->reserve_fd >= 0) close(t->reserve_fd);
  for (size_t i = 0; i < t->nqueued; i++) uv_close((uv_handle_t *)t->queued[i].conn, lc_free_handle_cb);
  free(t->queued);
  for (size_t i = 0; i < t->ninflight; i++) uv_close((uv_handle_t *)t->inflight[i].conn, lc_free_handle_cb);
  free(t->inflight);
  luaL_unref(L, LUA_REGISTRYINDEX, t->picker_ref);
  lc_handle_release(&t->base);
  free(t->tcp);
  free(t);
}

static void settle_unacked(lc_rt *rt, lc_ipc *ch);

static void close_now(lc_tcp *t) {
  if (t->closing) return;
  t->closing = 1;
  /* a closing dispatcher's copies (closed in close_cb) are no longer its workers' unacked:
   * their late acks match nothing */
  for (size_t i = 0; i < t->ninflight; i++) {
    lc_ipc *ch = lc_ipc_by_serial(t->base.rt, t->inflight[i].id, t->inflight[i].serial);
    if (ch != NULL) settle_unacked(t->base.rt, ch);
  }
  if (t->send_timer) uv_timer_stop(t->send_timer);
  if (t->flush_timer) uv_timer_stop(t->flush_timer);
  if (t->queue_timer) uv_timer_stop(t->queue_timer);
  if (t->pause_timer) uv_timer_stop(t->pause_timer);
  hold_clear(&t->hold);   /* a held read event goes with its socket */
  lc_wq_close(&t->wq);    /* unsent bytes go; those in flight end with UV_ECANCELED */
  uv_close((uv_handle_t *)t->tcp, close_cb);
}

static size_t write_queued(lc_tcp *t) { return lc_wq_queued(&t->wq); }

static void arm_send_timer(lc_tcp *t);

/* send_timeout has passed since the close's wait began or last saw progress: a peer that took
 * some bytes meanwhile (the queue shrank, as stream.c measures it) gets another send_timeout;
 * one that took nothing loses the socket, unsent bytes too */
static void send_timer_cb(uv_timer_t *timer) {
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
  uv_timer_start(t->send_timer, send_timer_cb, t->send_timeout, 0);
}

static void tcp_close(lc_tcp *t) {
  if (t->closing) return;
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
  t->picker_ref = LUA_NOREF;
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

uv_stream_t *lc_tcp_stream_for_send(lua_State *L, int idx, int *is_server) {
  lc_tcp *t = lc_handle_check(L, idx, MT);
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)t->tcp, &fd);
  if (r != 0) luaL_error(L, "cannot send this socket: %s", uv_strerror(r));
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) luaL_error(L, "cannot send this socket: %s", strerror(errno));
  uv_tcp_t *out = malloc(sizeof *out);
  r = out == NULL ? UV_ENOMEM : uv_tcp_init(&t->base.rt->loop, out);
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
  *is_server = t->is_server;
  return (uv_stream_t *)out;
}

/* ---- reading and writing ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[65536];
  *buf = uv_buf_init(slab, sizeof slab);
}

typedef struct read_args { lc_tcp *t; ssize_t nread; const char *data; } read_args;

/* run by lc_call_with, protected: cb("data", bytes) | cb("end") | cb("error", message) */
static int push_read(lua_State *L, void *ud) {
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
  return lc_call_with(t->base.rt, push_read, &a) <= 0;
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void stop_reading(lc_tcp *t) {
  if (t->reading) uv_read_stop((uv_stream_t *)t->tcp);
  t->reading = 0;
}

/* reads again once a held event is delivered, if Lua still wants to */
static void resume_reading(lc_tcp *t) {
  if (t->reading || !t->want_read || t->closing || hold_active(&t->hold)) return;
  int r = uv_read_start((uv_stream_t *)t->tcp, alloc_cb, read_cb);
  if (r != 0) {
    lc_log(t->base.rt, "error: tcp: reading cannot resume: %s; the socket is closed", uv_strerror(r));
    tcp_close(t);
    return;
  }
  t->reading = 1;
}

static void hold_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (!hold_active(&t->hold) || t->closing || !t->want_read) return;  /* read_start retries it */
  ssize_t nread = t->hold.nread;
  if (!deliver_read(t, nread, t->hold.data)) {
    hold_retry_later(&t->hold, hold_timer_cb);
    return;
  }
  hold_clear(&t->hold);
  if (nread > 0) resume_reading(t);
}

/* Lua had no memory for this event: it waits (reading stops behind it) and is retried */
static void hold_read(lc_tcp *t, ssize_t nread, const char *data) {
  stop_reading(t);
  if (hold_put(&t->hold, t->tcp->loop, nread, data, hold_timer_cb, t) != 0) {
    lc_log(t->base.rt, "error: tcp: a read event could not be kept for a retry (out of memory); the socket is closed");
    tcp_close(t);
    return;
  }
  if (nread > 0)
    lc_log(t->base.rt, "warn: tcp: Lua had no memory for %zd bytes a socket read; they wait, and reading with them", nread);
  else
    lc_log(t->base.rt, "warn: tcp: Lua had no memory for a socket's %s event; it waits", nread == UV_EOF ? "end" : "error");
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lc_tcp *t = st->data;
  if (nread == 0) return;
  if (nread < 0) stop_reading(t);   /* the end, or an error: nothing more to read */
  if (!deliver_read(t, nread, buf->base)) hold_read(t, nread, buf->base);
}

static int m_write(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (t->closing || t->close_after_writes || t->is_server) return lc_push_error(L, UV_EPIPE);
  uv_buf_t b;
  b.base = (char *)data;
  b.len = len;
  int r = lc_wq_write(&t->wq, &b, 1);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_read_start(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lc_handle_set_cb(L, &t->base, 2);
  t->want_read = 1;
  if (hold_active(&t->hold)) {   /* the held event comes first; reading resumes after it */
    hold_retry_now(&t->hold, hold_timer_cb);
  } else if (!t->reading && !t->closing) {
    int r = uv_read_start((uv_stream_t *)t->tcp, alloc_cb, read_cb);
    if (r != 0) return lc_push_error(L, r);
    t->reading = 1;
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

static int push_addr(lua_State *L, const struct sockaddr_storage *ss) {
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
  return push_addr(L, &ss);
}

static int m_sockname(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getsockname(t->tcp, (struct sockaddr *)&ss, &len);
  if (r != 0) return lc_push_error(L, r);
  return push_addr(L, &ss);
}

static int m_is_server(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lua_pushboolean(L, t->is_server);
  return 1;
}

/* ---- listening ---- */

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
    lua_pushnil(L);
    lua_pushfstring(L, strchr(host, ':') ? "listen %s [%s]:%d" : "listen %s %s:%d", uv_err_name(err), host, port);
    lua_pushstring(L, uv_err_name(err));
    return 3;
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

/* grows *arr (of elements of size sz) to hold at least want; 0, or UV_ENOMEM */
static int grow(void **arr, size_t *cap, size_t want, size_t sz) {
  if (want <= *cap) return 0;
  size_t n = *cap ? *cap * 2 : 16;
  while (n < want) n *= 2;
  void *p = realloc(*arr, n * sz);
  if (p == NULL) return UV_ENOMEM;
  *arr = p;
  *cap = n;
  return 0;
}

/* ---- dispatch: the master accepts, a worker serves ---- */

static void flush_later(lc_tcp *t, uint64_t ms);
static size_t flush_queue(lc_tcp *t);

/* Whether nobody has read from or written to conn since it was accepted, so that another
 * worker can be given it as new: every byte received waits unread in its receive queue (the
 * peer's FIN, counted in tcpi_bytes_received, is not in SIOCINQ), and nothing was ever sent
 * (tcpi_bytes_acked counts from 0 on a passively opened socket; a FIN sent counts 1). Checked
 * on this kernel by a probe: a fresh socket reads 0/0/0/0; 10 bytes in, 5 read: received 10,
 * inq 5; a FIN after 10 bytes: received 11, inq 10; 5 bytes written: acked 5. When it cannot
 * be known, it is not pristine (closed rather than maybe served twice). */
/* Linux's struct tcp_info (<linux/tcp.h>, which cannot be included beside glibc's
 * <netinet/tcp.h>) as far as tcpi_bytes_received (Linux 4.1): glibc's struct is its prefix */
struct lc_tcp_info {
  struct tcp_info ti;
  uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
};
_Static_assert(offsetof(struct lc_tcp_info, bytes_received) == 128, "Linux's tcp_info layout");

static int conn_pristine(uv_tcp_t *conn) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)conn, &fd) != 0) return 0;
  struct lc_tcp_info info;
  socklen_t len = sizeof info;
  memset(&info, 0, sizeof info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
  if (len < sizeof info) return 0;   /* a kernel older than 4.1: cannot tell */
  int inq = 0, outq = 0;
  if (ioctl(fd, SIOCINQ, &inq) != 0 || ioctl(fd, SIOCOUTQ, &outq) != 0 || inq < 0) return 0;
  int state = info.ti.tcpi_state;
  if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT) return 0;
  uint64_t unread = (uint64_t)inq + (state == TCP_CLOSE_WAIT ? 1 : 0);   /* the FIN */
  return outq == 0 && info.bytes_acked == 0 && info.bytes_received == unread;
}

static void queue_timer_cb(uv_timer_t *timer);

/* queues conn, accepted at loop time since, for a worker that becomes ready: at the back (a
 * new connection), or at the front (one a worker did not take, so it goes first). A full queue
 * closes the connection; one QUEUE_TIMEOUT_MS after its accept is closed too (queue_timer_cb). */
static void queue_conn(lc_tcp *t, uv_tcp_t *conn, int front, uint64_t since) {
  if ((!front && t->nqueued >= MAX_QUEUED_CONNS) || t->closing ||
      grow((void **)&t->queued, &t->queued_cap, t->nqueued + 1, sizeof *t->queued) != 0) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
    return;
  }
  struct queued q = {conn, since};
  if (front) {
    memmove(t->queued + 1, t->queued, t->nqueued * sizeof *t->queued);
    t->queued[0] = q;
  } else {
    t->queued[t->nqueued] = q;
  }
  t->nqueued++;
  if (t->queue_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return;   /* no deadline then: they wait for a worker */
    if (uv_timer_init(t->tcp->loop, timer) != 0) { free(timer); return; }
    timer->data = t;
    t->queue_timer = timer;
  }
  if (!uv_is_active((uv_handle_t *)t->queue_timer))
    uv_timer_start(t->queue_timer, queue_timer_cb, QUEUE_TIMEOUT_MS / 10, QUEUE_TIMEOUT_MS / 10);
}

/* every tenth of QUEUE_TIMEOUT_MS while connections wait: those that waited it all are closed
 * (their clients see the end, instead of waiting forever for a worker that may never come) */
static void queue_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  uint64_t now = uv_now(t->tcp->loop);
  size_t j = 0, closed = 0;
  for (size_t i = 0; i < t->nqueued; i++) {
    if (now - t->queued[i].since >= QUEUE_TIMEOUT_MS) {
      uv_close((uv_handle_t *)t->queued[i].conn, lc_free_handle_cb);
      closed++;
    } else {
      t->queued[j++] = t->queued[i];
    }
  }
  t->nqueued = j;
  if (closed > 0)
    lc_log(t->base.rt, "warn: dispatch: %zu connection%s waited %d ms for a ready worker; closed", closed,
           closed == 1 ? "" : "s", QUEUE_TIMEOUT_MS);
  if (t->nqueued == 0) uv_timer_stop(timer);
}

/* a copy of conn (its own fd and handle) to send, so that the master keeps conn itself */
static uv_tcp_t *copy_conn(uv_tcp_t *conn) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)conn, &fd) != 0) return NULL;
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return NULL;
  uv_tcp_t *out = malloc(sizeof *out);
  if (out == NULL) { close(copy); return NULL; }
  if (uv_tcp_init(conn->loop, out) != 0) { close(copy); free(out); return NULL; }
  if (uv_tcp_open(out, copy) != 0) {
    close(copy);
    uv_close((uv_handle_t *)out, lc_free_handle_cb);
    return NULL;
  }
  return out;
}

typedef struct pick_args { lc_tcp *t; int prev; const char *how; int id, raised; const char *ip; int port; uint64_t serial; } pick_args;

/* run by lc_call_with, protected (the address string allocates): calls the picker here, as it
 * has a result, and declines the call lc_call_with would make */
static int push_pick(lua_State *L, void *ud) {
  pick_args *a = ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->t->picker_ref);
  if (a->prev) lua_pushinteger(L, a->prev); else lua_pushnil(L);
  if (a->how) lua_pushstring(L, a->how); else lua_pushnil(L);
  int nargs = 2;
  if (a->serial != 0) {  /* "returned": by which channel */
    lua_pushnumber(L, (lua_Number)a->serial);
    nargs = 3;
  } else if (a->t->want_addr && a->ip) {
    lua_pushstring(L, a->ip);
    lua_pushinteger(L, a->port);
    nargs = 4;
  }
  if (lua_pcall(L, nargs, 1, 0) == 0) {
    a->id = (int)lua_tointeger(L, -1);
  } else {
    a->raised = 1;
    lc_log(a->t->base.rt, "error: dispatch picker: %s", lua_tostring(L, -1));
  }
  return -1;
}

/* tells the picker that worker id, by its channel serial (a reload's new worker has the same
 * id), did not take a connection it was counted for */
static void picker_uncount(lc_tcp *t, int id, uint64_t serial) {
  if (t->picker_ref == LUA_NOREF || id <= 0) return;
  pick_args a = {t, id, "returned", 0, 0, NULL, 0, serial};
  lc_call_with(t->base.rt, push_pick, &a);
}

/* Asks the Lua picker which worker takes conn and sends it there: 1 when sent, 0 when no worker
 * is ready (or every ready one is busy), -1 when the picker could not answer (it raised, or out
 * of memory calling it); conn is then still the caller's.
 * picker(prev, how, [ip, port]) -> worker id: how says what became of the worker prev it named
 * last for this connection: "gone" (its channel could not take it: the picker uncounts it and
 * drops that worker), "busy" (MAX_UNACKED_PER_WORKER of its connections are not acknowledged:
 * uncounted, and not named again for this connection). prev and how are nil on the first call;
 * "returned" (a connection sent to prev came back) is only a notice (picker_uncount), with a
 * third argument: the serial of the channel it came back by. */
static int dispatch_one(lc_tcp *t, uv_tcp_t *conn, uint64_t since) {
  lc_rt *rt = t->base.rt;
  char ip[64] = "";
  int port = 0;
  if (t->want_addr) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(conn, (struct sockaddr *)&ss, &len) == 0) {
      if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
      } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      }
    }
  }
  int prev = 0;
  const char *how = NULL;
  for (int attempt = 0; attempt < 1024 && t->picker_ref != LUA_NOREF; attempt++) {
    pick_args a = {t, prev, how, 0, 0, ip, port, 0};
    if (lc_call_with(rt, push_pick, &a) > 0 || a.raised) return -1;
    int id = a.id;
    if (id <= 0) return 0;
    prev = id;
    how = "gone";
    lc_ipc *ch = lc_ipc_route(rt, id);
    if (ch == NULL) continue;
    if (lc_ipc_unacked(ch) >= MAX_UNACKED_PER_WORKER) { how = "busy"; continue; }
    /* kept until the worker acknowledges it; sent as it is (seq 0) when it cannot be kept */
    uv_tcp_t *copy = NULL;
    if (t->ninflight < MAX_INFLIGHT_CONNS &&
        grow((void **)&t->inflight, &t->inflight_cap, t->ninflight + 1, sizeof *t->inflight) == 0)
      copy = copy_conn(conn);
    if (copy == NULL) {
      if (lc_ipc_send_conn(ch, t->dispatch_key, conn, 0) != 0) {
        lc_log(rt, "warn: dispatch: a connection could not be sent to worker %d; closed", id);
      }
      return 1;
    }
    uint32_t seq = ++t->next_seq;
    if (seq == 0) seq = ++t->next_seq;
    if (lc_ipc_send_conn(ch, t->dispatch_key, copy, seq) != 0) continue; /* copy closed by ipc.c */
    t->inflight[t->ninflight].serial = lc_ipc_serial(ch);
    t->inflight[t->ninflight].seq = seq;
    t->inflight[t->ninflight].id = id;
    t->inflight[t->ninflight].conn = conn;
    t->inflight[t->ninflight].since = since;
    t->ninflight++;
    return 1;
  }
  return 0;
}

static void flush_timer_cb(uv_timer_t *timer);

/* the queue is tried again in ms: the picker could not answer (nothing else may come to flush
 * it), a worker gave connections back (not at full speed: it may be the only one ready), or a
 * busy worker has room again (ms = 0: from the loop, not from inside a channel's read) */
static void flush_later(lc_tcp *t, uint64_t ms) {
  if (t->closing) return;
  if (t->flush_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return;
    if (uv_timer_init(t->tcp->loop, timer) != 0) { free(timer); return; }
    timer->data = t;
    t->flush_timer = timer;
  }
  if (!uv_is_active((uv_handle_t *)t->flush_timer) || (ms == 0 && uv_timer_get_due_in(t->flush_timer) > 0))
    uv_timer_start(t->flush_timer, flush_timer_cb, ms, 0);
}

/* hands queued connections to ready workers, oldest first; how many went */
static size_t flush_queue(lc_tcp *t) {
  size_t sent = 0;
  int r = 1;
  while (sent < t->nqueued && t->picker_ref != LUA_NOREF && (r = dispatch_one(t, t->queued[sent].conn, t->queued[sent].since)) == 1) sent++;
  if (sent > 0) memmove(t->queued, t->queued + sent, (t->nqueued - sent) * sizeof *t->queued);
  t->nqueued -= sent;
  if (r < 0) flush_later(t, 200);
  return sent;
}

static void flush_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (!t->closing) flush_queue(t);
}

/* a copy the master kept goes to another worker, when it is still as accepted; otherwise it
 * was in the hands of a worker that is gone (or gave it back after acting on it), and it is
 * closed: never served twice. 1 when queued. */
static int requeue_copy(lc_tcp *t, uv_tcp_t *conn, uint64_t since) {
  if (!conn_pristine(conn)) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
    return 0;
  }
  queue_conn(t, conn, 1, since);
  return 1;
}

/* the index of the copy kept for CONN frame seq sent on channel serial, or ninflight */
static size_t find_inflight(lc_tcp *t, uint64_t serial, uint32_t seq) {
  for (size_t i = 0; i < t->ninflight; i++)
    if (t->inflight[i].serial == serial && t->inflight[i].seq == seq) return i;
  return t->ninflight;
}

static void remove_inflight(lc_tcp *t, size_t i) {
  memmove(t->inflight + i, t->inflight + i + 1, (t->ninflight - i - 1) * sizeof *t->inflight);
  t->ninflight--;
}

static lc_tcp *dispatcher_of(lc_rt *rt, int key) {
  for (lc_tcp *t = rt->dispatchers; t; t = t->next_dispatcher)
    if (t->dispatch_key == key && !t->closing) return t;
  return NULL;
}

/* one copy kept for channel ch is settled: a worker that was busy (MAX_UNACKED_PER_WORKER)
 * and has room again gets what waits */
static void settle_unacked(lc_rt *rt, lc_ipc *ch) {
  int was_busy = lc_ipc_unacked(ch) >= MAX_UNACKED_PER_WORKER;
  lc_ipc_acked(ch);
  if (was_busy && lc_ipc_unacked(ch) < MAX_UNACKED_PER_WORKER)
    for (lc_tcp *d = rt->dispatchers; d; d = d->next_dispatcher)
      if (d->nqueued > 0) flush_later(d, 0);
}

/* ipc.c: a worker acknowledged a CONN frame (see lc.h); one that matches no copy (its
 * dispatcher closed, or its copy was settled already) changes nothing */
void lc_tcp_conn_ack(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq, int taken) {
  lc_tcp *t = dispatcher_of(rt, key);
  if (t == NULL) return;
  size_t i = find_inflight(t, lc_ipc_serial(ch), seq);
  if (i == t->ninflight) return;
  uv_tcp_t *conn = t->inflight[i].conn;
  int id = t->inflight[i].id;
  uint64_t since = t->inflight[i].since;
  remove_inflight(t, i);
  if (taken) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
  } else {
    picker_uncount(t, id, lc_ipc_serial(ch));
    if (requeue_copy(t, conn, since)) flush_later(t, 200);
  }
  settle_unacked(rt, ch);
}

/* ipc.c: a CONN frame with a copy kept was never written (see lc.h) */
void lc_tcp_conn_unsent(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq) {
  lc_tcp *t = dispatcher_of(rt, key);
  if (t == NULL) return;
  uint64_t serial = lc_ipc_serial(ch);
  size_t i = find_inflight(t, serial, seq);
  if (i == t->ninflight) return;
  uv_tcp_t *conn = t->inflight[i].conn;
  uint64_t since = t->inflight[i].since;
  int id = t->inflight[i].id;
  remove_inflight(t, i);
  picker_uncount(t, id, serial);
  if (requeue_copy(t, conn, since)) flush_later(t, 0);
  settle_unacked(rt, ch);
}

typedef struct conn_args { lc_handle_base *owner; uv_tcp_t *conn; int handed; } conn_args;

/* run by lc_call_with, protected: the owner's callback and the connection as a Lua socket */
static int push_conn(lua_State *L, void *ud) {
  conn_args *a = ud;
  if (!lc_handle_push_cb(a->owner)) return -1;
  wrap(L, a->conn, 0);
  a->handed = 1;  /* last: until here, a raise leaves the connection to give_conn */
  return 1;
}

/* cb(sock) for a new connection (a net server's accept, a worker's sink); a connection no
 * callback can take (none set, or out of memory making its Lua object) is closed */
static void give_conn(lc_handle_base *owner, uv_tcp_t *conn) {
  conn_args a = {owner, conn, 0};
  int r = lc_call_with(owner->rt, push_conn, &a);
  if (a.handed) return;
  if (r > 0) lc_log(owner->rt, "warn: tcp: a new connection was closed: no memory for its Lua object");
  uv_close((uv_handle_t *)conn, lc_free_handle_cb);
}

static void pause_timer_cb(uv_timer_t *timer);

/* Accepting pauses ACCEPT_PAUSE_MS (as nginx does out of descriptors): the next connection
 * that comes is left to libuv, which keeps it and stops watching the listener until uv_accept
 * takes it (pause_timer_cb). Meanwhile new connections wait in the kernel's accept queue, and
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
  uv_timer_start(t->pause_timer, pause_timer_cb, ACCEPT_PAUSE_MS, 0);
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
  } else if (t->picker_ref != LUA_NOREF) {
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
    uint64_t now = uv_now(t->tcp->loop);
    int r = t->nqueued > 0 ? 0 : dispatch_one(t, conn, now);
    if (r != 1) queue_conn(t, conn, 0, now);
    if (r < 0) flush_later(t, 200);
  } else {
    give_conn(&t->base, conn);
  }
}

/* the pause is over: the connection libuv kept (if any) is taken, and libuv watches again */
static void pause_timer_cb(uv_timer_t *timer) {
  lc_tcp *t = timer->data;
  if (t->closing) return;
  uv_tcp_t *conn = malloc(sizeof *conn);
  if (conn == NULL || uv_tcp_init(t->tcp->loop, conn) != 0) {
    free(conn);
    uv_timer_start(timer, pause_timer_cb, ACCEPT_PAUSE_MS, 0);  /* still paused: again later */
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

static void connection_cb(uv_stream_t *server, int status) {
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
  if (t->picker_ref == LUA_NOREF) t->accept_failing = 0;
  take_conn(t, conn);
}

static int start_listening(lua_State *L, lc_tcp *t) {
  if (t->listening) return 0;
  if (t->reserve_fd < 0) t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  /* uv_listen calls listen() again: with the backlog the socket was made with, not another */
  int backlog = t->backlog > 0 ? t->backlog : current_backlog(t->tcp);
  if (backlog <= 0) backlog = system_backlog();
  int r = uv_listen((uv_stream_t *)t->tcp, backlog, connection_cb);
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
  luaL_unref(L, LUA_REGISTRYINDEX, t->picker_ref);
  t->picker_ref = LUA_NOREF;
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
  t->dispatch_key = key;
  lua_pushvalue(L, 3);
  t->picker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->want_addr = lua_toboolean(L, 4);
  if (!t->dispatching) {
    t->next_dispatcher = t->base.rt->dispatchers;
    t->base.rt->dispatchers = t;
    t->dispatching = 1;
  }
  int r = start_listening(L, t);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* server:dispatch_flush(): hands queued connections to workers that became ready -> sent, left */
static int m_dispatch_flush(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  size_t sent = flush_queue(t);
  lua_pushinteger(L, (lua_Integer)sent);
  lua_pushinteger(L, (lua_Integer)t->nqueued);
  return 2;
}

/* server:dispatch_requeue(serial) -> requeued, closed: the worker whose channel has this serial
 * is gone; what it had not acknowledged goes to the front of the queue, in the order it was
 * sent (then dispatch_flush hands it to other workers), unless that worker had begun on it
 * (read or written: conn_pristine), which is closed instead: a connection is never served twice */
static int m_dispatch_requeue(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  uint64_t serial = (uint64_t)luaL_checknumber(L, 2);
  size_t j = 0, n = 0, closed = 0;
  for (size_t i = t->ninflight; i-- > 0;) {  /* newest first, each to the front */
    if (t->inflight[i].serial != serial) continue;
    lc_ipc *ch = lc_ipc_by_serial(t->base.rt, t->inflight[i].id, serial);
    if (ch != NULL) settle_unacked(t->base.rt, ch);   /* (its channel is normally closed already) */
    if (requeue_copy(t, t->inflight[i].conn, t->inflight[i].since)) n++;
    else closed++;
  }
  for (size_t i = 0; i < t->ninflight; i++)
    if (t->inflight[i].serial != serial) t->inflight[j++] = t->inflight[i];
  t->ninflight = j;
  if (closed > 0)
    lc_log(t->base.rt, "warn: dispatch: %zu connection%s a gone worker had begun to serve %s closed, not sent to"
           " another worker", closed, closed == 1 ? "" : "s", closed == 1 ? "was" : "were");
  lua_pushinteger(L, (lua_Integer)n);
  lua_pushinteger(L, (lua_Integer)closed);
  return 2;
}

/* ---- outbound connections ---- */

typedef struct tconnect {
  uv_connect_t req;
  lc_rt *rt;
  int cb_ref, status;
  uv_tcp_t *tcp;            /* NULL once handed to Lua (or closed, on a failed connect) */
  uv_timer_t *retry;        /* made when Lua had no memory for the callback's arguments */
  uint64_t delay;
} tconnect;

/* run by lc_call_with, protected: cb(sock) or cb(nil, "connect ECONNREFUSED: ...") */
static int push_connect(lua_State *L, void *ud) {
  tconnect *c = ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->cb_ref);
  if (c->status != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "connect %s: %s", uv_err_name(c->status), uv_strerror(c->status));
    return 2;
  }
  wrap(L, c->tcp, 0);
  c->tcp = NULL;  /* last: until here, a raise leaves the socket to connect_deliver */
  return 1;
}

static void connect_retry_cb(uv_timer_t *timer);

/* Calls the connect's callback; when its arguments cannot be built (out of memory) it is tried
 * again later rather than never called (a coroutine waits on it). Frees c once called. */
static void connect_deliver(tconnect *c) {
  if (lc_call_with(c->rt, push_connect, c) > 0) {
    if (c->retry == NULL && (c->retry = malloc(sizeof *c->retry)) != NULL) {
      if (uv_timer_init(&c->rt->loop, c->retry) != 0) { free(c->retry); c->retry = NULL; }
      else { c->retry->data = c; c->delay = 25; }
    }
    if (c->retry) {
      c->delay = c->delay * 2 > 2000 ? 2000 : c->delay * 2;
      uv_timer_start(c->retry, connect_retry_cb, c->delay, 0);
      return;
    }
    lc_log(c->rt, "error: tcp: a connect's callback could not be called (out of memory); it never will be");
  }
  if (c->tcp) uv_close((uv_handle_t *)c->tcp, lc_free_handle_cb);
  if (c->retry) uv_close((uv_handle_t *)c->retry, lc_free_handle_cb);
  luaL_unref(c->rt->L, LUA_REGISTRYINDEX, c->cb_ref);
  free(c);
}

static void connect_retry_cb(uv_timer_t *timer) { connect_deliver(timer->data); }

static void connect_cb(uv_connect_t *req, int status) {
  tconnect *c = (tconnect *)req;
  c->status = status;
  if (status != 0) {
    uv_close((uv_handle_t *)c->tcp, lc_free_handle_cb);
    c->tcp = NULL;
  }
  connect_deliver(c);
}

/* core.tcp_connect(host, port, cb): cb(sock) or cb(nil, err) */
static int f_tcp_connect(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int r = parse_addr(host, port, &ss);
  if (r != 0) return lc_push_error(L, r);
  lua_pushvalue(L, 3);
  int cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* (what can raise comes before the allocations) */
  tconnect *c = calloc(1, sizeof *c);
  uv_tcp_t *tcp = malloc(sizeof *tcp);
  r = c == NULL || tcp == NULL ? UV_ENOMEM : uv_tcp_init(&rt->loop, tcp);
  if (r != 0) {
    free(c);
    free(tcp);  /* never initialised: not known to the loop */
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    return lc_push_error(L, r);
  }
  c->rt = rt;
  c->tcp = tcp;
  c->cb_ref = cb_ref;
  r = uv_tcp_connect(&c->req, tcp, (struct sockaddr *)&ss, connect_cb);
  if (r != 0) {
    uv_close((uv_handle_t *)tcp, lc_free_handle_cb);
    free(c);
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    return lc_push_error(L, r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- Lua sinks: a net server in a worker takes dispatched connections ---- */

typedef struct lua_sink { lc_handle_base base; int key; } lua_sink;

static void lua_sink_take(void *data, uv_tcp_t *conn) {
  lua_sink *s = data;
  give_conn(&s->base, conn);
}

static int f_sink_new(lua_State *L) {
  int key = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_sink *s = lc_handle_new(L, sizeof *s, MT_SINK);
  lc_handle_set_cb(L, &s->base, 2);
  s->key = key;
  int r = lc_sink_add(s->base.rt, key, lua_sink_take, s);
  if (r != 0) {
    lc_handle_release(&s->base);
    free(s);
    return lc_push_error(L, r);
  }
  return 1;
}

static int m_sink_close(lua_State *L) {
  lua_sink *s = lc_handle_test(L, 1, MT_SINK);
  if (s == NULL) return 0;
  lc_sink_remove(s->base.rt, s->key, s);
  lc_handle_release(&s->base);
  free(s);
  return 0;
}

/* Hands a connected socket's uv handle to a C owner (an HTTP server); the Lua object is
 * closed without closing the socket. NULL when it cannot be moved (writes in flight, or a read
 * event held for Lua). */
uv_tcp_t *lc_tcp_detach(lua_State *L, int idx) {
  lc_tcp *t = lc_handle_check(L, idx, MT);
  if (t->is_server || !lc_wq_idle(&t->wq) || t->closing || t->close_after_writes || hold_active(&t->hold))
    return NULL;
  lc_wq_close(&t->wq);
  if (t->send_timer) uv_close((uv_handle_t *)t->send_timer, lc_free_handle_cb);
  hold_close(&t->hold);
  if (t->reserve_fd >= 0) close(t->reserve_fd);
  if (t->reading) uv_read_stop((uv_stream_t *)t->tcp);
  uv_tcp_t *tcp = t->tcp;
  tcp->data = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, t->picker_ref);
  lc_handle_release(&t->base);
  free(t->queued);
  free(t->inflight);
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
    {"nodelay", m_nodelay}, {"fileno", m_fileno},
    {"set_send_timeout", m_set_send_timeout},
    {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  static const luaL_Reg sink_methods[] = {{"close", m_sink_close}, {NULL, NULL}};
  lc_newmetatable(L, MT_SINK, sink_methods);
  static const luaL_Reg fns[] = {
    {"tcp_listen", f_tcp_listen}, {"tcp_connect", f_tcp_connect}, {"sink_new", f_sink_new},
    {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
}
