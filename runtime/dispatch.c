/* dispatch.c: the master's dispatch of accepted connections to workers (dispatch mode), and
 * the sinks that take them in a worker without Lua.
 * Owns, per dispatching listener (an lc_dispatch inside its lc_tcp): the connections accepted
 * and waiting for a ready worker, the copies of those sent and not yet acknowledged, the Lua
 * picker's reference and two timers (the queue's deadline, the retry of the queue). All freed
 * by lc_dispatch_free, from the listener's close callback. The listener (tcp.c) accepts and
 * hands each connection to lc_dispatch_take; a worker's channel (ipc.c) acknowledges each
 * CONN frame (lc_tcp_conn_ack) and reports one never written (lc_tcp_conn_unsent).
 * In a worker, rt->sinks maps a server key to the C function that takes its connections (an
 * HTTP server, or a Lua net server through a luacluster.sink object made here). */
#include "lc.h"
#include "bindings.h"
#include "dispatch.h"
#include "ipc.h"
#include "tcp.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MT_SINK "luacluster.sink"
#define MAX_QUEUED_CONNS 4096
#define QUEUE_TIMEOUT_MS 10000   /* a connection waits this long in the master for a ready worker */
#define MAX_INFLIGHT_CONNS 4096  /* per listener; beyond, a connection is sent without a copy */
#define MAX_UNACKED_PER_WORKER 128  /* a worker with this many not acknowledged counts as busy */

/* ---- connection sinks (a worker) ---- */

int lc_sink_add(lc_rt *rt, int key, lc_conn_sink_fn fn, void *data) {
  for (int i = 0; i < rt->nsinks; i++)
    if (rt->sinks[i].key == key) { rt->sinks[i].fn = fn; rt->sinks[i].data = data; return 0; }
  if (rt->nsinks == LC_MAX_SINKS) return UV_ENOBUFS;
  rt->sinks[rt->nsinks++] = (lc_sink){key, fn, data};
  return 0;
}

void lc_sink_remove(lc_rt *rt, int key, void *data) {
  for (int i = 0; i < rt->nsinks; i++) {
    if (rt->sinks[i].key == key && rt->sinks[i].data == data) {
      rt->sinks[i] = rt->sinks[--rt->nsinks];
      return;
    }
  }
}

int lc_sink_deliver(lc_rt *rt, int key, uv_tcp_t *conn) {
  for (int i = 0; i < rt->nsinks; i++) {
    if (rt->sinks[i].key == key) {
      rt->sinks[i].fn(rt->sinks[i].data, conn);
      return 1;
    }
  }
  return 0;
}

/* ---- the master's dispatch ---- */

/* grows *arr (of elements of size sz) to hold at least want; 0, or UV_ENOMEM */
static int dispatch_grow(void **arr, size_t *cap, size_t want, size_t sz) {
  if (want <= *cap) return 0;
  size_t n = *cap ? *cap : 16;
  while (n < want) {
    if (n > SIZE_MAX / 2 / sz) return UV_ENOMEM;
    n *= 2;
  }
  void *p = realloc(*arr, n * sz);
  if (p == NULL) return UV_ENOMEM;
  *arr = p;
  *cap = n;
  return 0;
}

static void dispatch_flush_later(lc_dispatch *d, uint64_t ms);

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

static void dispatch_queue_timer_cb(uv_timer_t *timer);

/* queues conn, accepted at loop time since, for a worker that becomes ready: at the back (a
 * new connection), or at the front (one a worker did not take, so it goes first). A full queue
 * closes the connection; one QUEUE_TIMEOUT_MS after its accept is closed too (the queue timer). */
static void dispatch_queue(lc_dispatch *d, uv_tcp_t *conn, int front, uint64_t since) {
  if ((!front && d->nqueued >= MAX_QUEUED_CONNS) || d->closing ||
      dispatch_grow((void **)&d->queued, &d->queued_cap, d->nqueued + 1, sizeof *d->queued) != 0) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
    return;
  }
  struct lc_dispatch_queued q = {conn, since};
  if (front) {
    memmove(d->queued + 1, d->queued, d->nqueued * sizeof *d->queued);
    d->queued[0] = q;
  } else {
    d->queued[d->nqueued] = q;
  }
  d->nqueued++;
  if (d->queue_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return;   /* no deadline then: they wait for a worker */
    if (uv_timer_init(d->loop, timer) != 0) { free(timer); return; }
    timer->data = d;
    d->queue_timer = timer;
  }
  if (!uv_is_active((uv_handle_t *)d->queue_timer))
    uv_timer_start(d->queue_timer, dispatch_queue_timer_cb, QUEUE_TIMEOUT_MS / 10, QUEUE_TIMEOUT_MS / 10);
}

/* every tenth of QUEUE_TIMEOUT_MS while connections wait: those that waited it all are closed
 * (their clients see the end, instead of waiting forever for a worker that may never come) */
static void dispatch_queue_timer_cb(uv_timer_t *timer) {
  lc_dispatch *d = timer->data;
  uint64_t now = uv_now(d->loop);
  size_t j = 0, closed = 0;
  for (size_t i = 0; i < d->nqueued; i++) {
    if (now - d->queued[i].since >= QUEUE_TIMEOUT_MS) {
      uv_close((uv_handle_t *)d->queued[i].conn, lc_free_handle_cb);
      closed++;
    } else {
      d->queued[j++] = d->queued[i];
    }
  }
  d->nqueued = j;
  if (closed > 0)
    lc_log(d->rt, "warn: dispatch: %zu connection%s waited %d ms for a ready worker; closed", closed,
           closed == 1 ? "" : "s", QUEUE_TIMEOUT_MS);
  if (d->nqueued == 0) uv_timer_stop(timer);
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

typedef struct pick_args { lc_dispatch *d; int prev; const char *how; int id, raised; const char *ip; int port; uint64_t serial; } pick_args;

/* run by lc_call_with, protected (the address string allocates): calls the picker here, as it
 * has a result, and declines the call lc_call_with would make */
static int dispatch_push_pick(lua_State *L, void *ud) {
  pick_args *a = ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->d->picker_ref);
  if (a->prev) lua_pushinteger(L, a->prev); else lua_pushnil(L);
  if (a->how) lua_pushstring(L, a->how); else lua_pushnil(L);
  int nargs = 2;
  if (a->serial != 0) {  /* "returned": by which channel */
    lua_pushnumber(L, (lua_Number)a->serial);
    nargs = 3;
  } else if (a->d->want_addr && a->ip) {
    lua_pushstring(L, a->ip);
    lua_pushinteger(L, a->port);
    nargs = 4;
  }
  if (lua_pcall(L, nargs, 1, 0) == 0) {
    a->id = (int)lua_tointeger(L, -1);
  } else {
    a->raised = 1;
    lc_log(a->d->rt, "error: dispatch picker: %s", lua_tostring(L, -1));
  }
  return -1;
}

/* tells the picker that worker id, by its channel serial (a reload's new worker has the same
 * id), did not take a connection it was counted for */
static void picker_uncount(lc_dispatch *d, int id, uint64_t serial) {
  if (d->picker_ref == LUA_NOREF || id <= 0) return;
  pick_args a = {d, id, "returned", 0, 0, NULL, 0, serial};
  lc_call_with(d->rt, dispatch_push_pick, &a);
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
static int dispatch_one(lc_dispatch *d, uv_tcp_t *conn, uint64_t since) {
  lc_rt *rt = d->rt;
  char ip[64] = "";
  int port = 0;
  if (d->want_addr) {
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
  for (int attempt = 0; attempt < 1024 && d->picker_ref != LUA_NOREF; attempt++) {
    pick_args a = {d, prev, how, 0, 0, ip, port, 0};
    if (lc_call_with(rt, dispatch_push_pick, &a) > 0 || a.raised) return -1;
    int id = a.id;
    if (id <= 0) return 0;
    prev = id;
    how = "gone";
    lc_ipc *ch = lc_ipc_route(rt, id);
    if (ch == NULL) continue;
    if (lc_ipc_unacked(ch) >= MAX_UNACKED_PER_WORKER) { how = "busy"; continue; }
    /* kept until the worker acknowledges it; sent as it is (seq 0) when it cannot be kept */
    uv_tcp_t *copy = NULL;
    if (d->ninflight < MAX_INFLIGHT_CONNS &&
        dispatch_grow((void **)&d->inflight, &d->inflight_cap, d->ninflight + 1, sizeof *d->inflight) == 0)
      copy = copy_conn(conn);
    if (copy == NULL) {
      if (lc_ipc_send_conn(ch, d->key, conn, 0) != 0) {
        lc_log(rt, "warn: dispatch: a connection could not be sent to worker %d; closed", id);
      }
      return 1;
    }
    uint32_t seq = ++d->next_seq;
    if (seq == 0) seq = ++d->next_seq;
    if (lc_ipc_send_conn(ch, d->key, copy, seq) != 0) continue; /* copy closed by ipc.c */
    d->inflight[d->ninflight].serial = lc_ipc_serial(ch);
    d->inflight[d->ninflight].seq = seq;
    d->inflight[d->ninflight].id = id;
    d->inflight[d->ninflight].conn = conn;
    d->inflight[d->ninflight].since = since;
    d->ninflight++;
    return 1;
  }
  return 0;
}

static void dispatch_flush_timer_cb(uv_timer_t *timer);

/* the queue is tried again in ms: the picker could not answer (nothing else may come to flush
 * it), a worker gave connections back (not at full speed: it may be the only one ready), or a
 * busy worker has room again (ms = 0: from the loop, not from inside a channel's read) */
static void dispatch_flush_later(lc_dispatch *d, uint64_t ms) {
  if (d->closing) return;
  if (d->flush_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer == NULL) return;
    if (uv_timer_init(d->loop, timer) != 0) { free(timer); return; }
    timer->data = d;
    d->flush_timer = timer;
  }
  if (!uv_is_active((uv_handle_t *)d->flush_timer) || (ms == 0 && uv_timer_get_due_in(d->flush_timer) > 0))
    uv_timer_start(d->flush_timer, dispatch_flush_timer_cb, ms, 0);
}

size_t lc_dispatch_flush(lc_dispatch *d) {
  size_t sent = 0;
  int r = 1;
  while (sent < d->nqueued && d->picker_ref != LUA_NOREF && (r = dispatch_one(d, d->queued[sent].conn, d->queued[sent].since)) == 1) sent++;
  if (sent > 0) memmove(d->queued, d->queued + sent, (d->nqueued - sent) * sizeof *d->queued);
  d->nqueued -= sent;
  if (r < 0) dispatch_flush_later(d, 200);
  return sent;
}

static void dispatch_flush_timer_cb(uv_timer_t *timer) {
  lc_dispatch *d = timer->data;
  if (!d->closing) lc_dispatch_flush(d);
}

void lc_dispatch_take(lc_dispatch *d, uv_tcp_t *conn) {
  uint64_t now = uv_now(d->loop);
  int r = d->nqueued > 0 ? 0 : dispatch_one(d, conn, now);
  if (r != 1) dispatch_queue(d, conn, 0, now);
  if (r < 0) dispatch_flush_later(d, 200);
}

/* a copy the master kept goes to another worker, when it is still as accepted; otherwise it
 * was in the hands of a worker that is gone (or gave it back after acting on it), and it is
 * closed: never served twice. 1 when queued. */
static int requeue_copy(lc_dispatch *d, uv_tcp_t *conn, uint64_t since) {
  if (!conn_pristine(conn)) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
    return 0;
  }
  dispatch_queue(d, conn, 1, since);
  return 1;
}

/* the index of the copy kept for CONN frame seq sent on channel serial, or ninflight */
static size_t find_inflight(lc_dispatch *d, uint64_t serial, uint32_t seq) {
  for (size_t i = 0; i < d->ninflight; i++)
    if (d->inflight[i].serial == serial && d->inflight[i].seq == seq) return i;
  return d->ninflight;
}

static void remove_inflight(lc_dispatch *d, size_t i) {
  memmove(d->inflight + i, d->inflight + i + 1, (d->ninflight - i - 1) * sizeof *d->inflight);
  d->ninflight--;
}

static lc_dispatch *dispatcher_of(lc_rt *rt, int key) {
  for (lc_dispatch *d = rt->dispatchers; d; d = d->next)
    if (d->key == key && !d->closing) return d;
  return NULL;
}

/* one copy kept for channel ch is settled: a worker that was busy (MAX_UNACKED_PER_WORKER)
 * and has room again gets what waits */
static void settle_unacked(lc_rt *rt, lc_ipc *ch) {
  int was_busy = lc_ipc_unacked(ch) >= MAX_UNACKED_PER_WORKER;
  lc_ipc_acked(ch);
  if (was_busy && lc_ipc_unacked(ch) < MAX_UNACKED_PER_WORKER)
    for (lc_dispatch *d = rt->dispatchers; d; d = d->next)
      if (d->nqueued > 0) dispatch_flush_later(d, 0);
}

/* ipc.c: a worker acknowledged a CONN frame (see dispatch.h); one that matches no copy (its
 * dispatcher closed, or its copy was settled already) changes nothing */
void lc_tcp_conn_ack(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq, int taken) {
  lc_dispatch *d = dispatcher_of(rt, key);
  if (d == NULL) return;
  size_t i = find_inflight(d, lc_ipc_serial(ch), seq);
  if (i == d->ninflight) return;
  uv_tcp_t *conn = d->inflight[i].conn;
  int id = d->inflight[i].id;
  uint64_t since = d->inflight[i].since;
  remove_inflight(d, i);
  if (taken) {
    uv_close((uv_handle_t *)conn, lc_free_handle_cb);
  } else {
    picker_uncount(d, id, lc_ipc_serial(ch));
    if (requeue_copy(d, conn, since)) dispatch_flush_later(d, 200);
  }
  settle_unacked(rt, ch);
}

/* ipc.c: a CONN frame with a copy kept was never written (see dispatch.h) */
void lc_tcp_conn_unsent(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq) {
  lc_dispatch *d = dispatcher_of(rt, key);
  if (d == NULL) return;
  uint64_t serial = lc_ipc_serial(ch);
  size_t i = find_inflight(d, serial, seq);
  if (i == d->ninflight) return;
  uv_tcp_t *conn = d->inflight[i].conn;
  uint64_t since = d->inflight[i].since;
  int id = d->inflight[i].id;
  remove_inflight(d, i);
  picker_uncount(d, id, serial);
  if (requeue_copy(d, conn, since)) dispatch_flush_later(d, 0);
  settle_unacked(rt, ch);
}

size_t lc_dispatch_requeue(lc_dispatch *d, uint64_t serial, size_t *closed_out) {
  size_t j = 0, n = 0, closed = 0;
  for (size_t i = d->ninflight; i-- > 0;) {  /* newest first, each to the front */
    if (d->inflight[i].serial != serial) continue;
    lc_ipc *ch = lc_ipc_by_serial(d->rt, d->inflight[i].id, serial);
    if (ch != NULL) settle_unacked(d->rt, ch);   /* (its channel is normally closed already) */
    if (requeue_copy(d, d->inflight[i].conn, d->inflight[i].since)) n++;
    else closed++;
  }
  for (size_t i = 0; i < d->ninflight; i++)
    if (d->inflight[i].serial != serial) d->inflight[j++] = d->inflight[i];
  d->ninflight = j;
  if (closed > 0)
    lc_log(d->rt, "warn: dispatch: %zu connection%s a gone worker had begun to serve %s closed, not sent to"
           " another worker", closed, closed == 1 ? "" : "s", closed == 1 ? "was" : "were");
  *closed_out = closed;
  return n;
}

/* ---- a dispatcher's life ---- */

void lc_dispatch_init(lc_dispatch *d, lc_rt *rt, uv_loop_t *loop) {
  memset(d, 0, sizeof *d);
  d->rt = rt;
  d->loop = loop;
  d->picker_ref = LUA_NOREF;
}

void lc_dispatch_start(lua_State *L, lc_dispatch *d, int key, int want_addr) {
  luaL_unref(L, LUA_REGISTRYINDEX, d->picker_ref);
  d->picker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  d->key = key;
  d->want_addr = want_addr;
  if (!d->listed) {
    d->next = d->rt->dispatchers;
    d->rt->dispatchers = d;
    d->listed = 1;
  }
}

void lc_dispatch_stop(lua_State *L, lc_dispatch *d) {
  luaL_unref(L, LUA_REGISTRYINDEX, d->picker_ref);
  d->picker_ref = LUA_NOREF;
}

/* a closing dispatcher's copies (closed by lc_dispatch_free) are no longer its workers'
 * unacked: their late acks match nothing */
void lc_dispatch_closing(lc_dispatch *d) {
  d->closing = 1;
  for (size_t i = 0; i < d->ninflight; i++) {
    lc_ipc *ch = lc_ipc_by_serial(d->rt, d->inflight[i].id, d->inflight[i].serial);
    if (ch != NULL) settle_unacked(d->rt, ch);
  }
  if (d->flush_timer) uv_timer_stop(d->flush_timer);
  if (d->queue_timer) uv_timer_stop(d->queue_timer);
}

static void dispatch_unlist(lc_dispatch *d) {
  if (!d->listed) return;
  lc_dispatch **pp = &d->rt->dispatchers;
  while (*pp && *pp != d) pp = &(*pp)->next;
  if (*pp) *pp = d->next;
  d->next = NULL;
  d->listed = 0;
}

void lc_dispatch_free(lc_dispatch *d) {
  dispatch_unlist(d);
  if (d->flush_timer) uv_close((uv_handle_t *)d->flush_timer, lc_free_handle_cb);
  if (d->queue_timer) uv_close((uv_handle_t *)d->queue_timer, lc_free_handle_cb);
  d->flush_timer = d->queue_timer = NULL;
  for (size_t i = 0; i < d->nqueued; i++) uv_close((uv_handle_t *)d->queued[i].conn, lc_free_handle_cb);
  free(d->queued);
  for (size_t i = 0; i < d->ninflight; i++) uv_close((uv_handle_t *)d->inflight[i].conn, lc_free_handle_cb);
  free(d->inflight);
  d->queued = NULL;
  d->inflight = NULL;
  d->nqueued = d->ninflight = d->queued_cap = d->inflight_cap = 0;
  lc_dispatch_stop(d->rt->L, d);
}

/* ---- Lua sinks: a net server in a worker takes dispatched connections ---- */

typedef struct lua_sink { lc_handle_base base; int key; } lua_sink;

static void lua_sink_take(void *data, uv_tcp_t *conn) {
  lua_sink *s = data;
  lc_tcp_give_conn(&s->base, conn);
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

void lc_open_dispatch(lua_State *L) {
  static const luaL_Reg sink_methods[] = {{"close", m_sink_close}, {NULL, NULL}};
  lc_newmetatable(L, MT_SINK, sink_methods);
  lua_pushcfunction(L, f_sink_new);
  lua_setfield(L, -2, "sink_new");
}
