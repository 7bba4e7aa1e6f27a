/* dispatch.h: the master's dispatch of accepted connections to workers, and the sinks that
 * take them in a worker (see dispatch.c). */
#ifndef LC_DISPATCH_H
#define LC_DISPATCH_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

typedef struct lc_rt lc_rt;
typedef struct lc_ipc lc_ipc;

/* A connection sink takes accepted connections for one server key: a worker's HTTP or net
 * server registers one so that connections the master dispatches reach it without Lua. */
typedef void (*lc_conn_sink_fn)(void *data, uv_tcp_t *conn);
typedef struct lc_sink { int key; lc_conn_sink_fn fn; void *data; } lc_sink;
#define LC_MAX_SINKS 64

int lc_sink_add(lc_rt *rt, int key, lc_conn_sink_fn fn, void *data);
void lc_sink_remove(lc_rt *rt, int key, void *data);
int lc_sink_deliver(lc_rt *rt, int key, uv_tcp_t *conn);   /* 0 when no sink took it */

/* One listener's dispatch (embedded in the listener, tcp.c): the connections accepted and
 * waiting for a ready worker, and the copies of those sent and not yet acknowledged by the
 * worker's channel. Owned by the listener; lc_dispatch_free in its close callback frees it. */
typedef struct lc_dispatch {
  lc_rt *rt;
  uv_loop_t *loop;
  int key;                  /* the server key the workers' sinks take */
  int picker_ref;           /* the Lua picker; LUA_NOREF: not dispatching */
  int want_addr;            /* the picker gets the peer's address */
  int closing, listed;
  /* accepted, waiting for a ready worker (oldest first), each for QUEUE_TIMEOUT_MS at most from
   * its accept (queue_timer sweeps; since is kept when a worker gives it back, so one that
   * bounces between workers that cannot take it still ends) */
  struct lc_dispatch_queued { uv_tcp_t *conn; uint64_t since; } *queued;
  size_t nqueued, queued_cap;
  uv_timer_t *queue_timer;
  /* sent to a worker, which has not yet acknowledged its CONN frame (ipc.c). The master keeps
   * its own copy of each, keyed by the channel's serial (unique per worker process: a reload's
   * new worker reuses the old one's id) and the frame's seq: if the worker goes without taking
   * it, the connection goes to another worker, but only while nobody has read from it or
   * written to it (conn_pristine). */
  struct lc_dispatch_inflight { uint64_t serial; uint32_t seq; int id; uv_tcp_t *conn; uint64_t since; } *inflight;
  size_t ninflight, inflight_cap;
  uint32_t next_seq;        /* the seq of the last CONN frame sent with a copy (never 0) */
  uv_timer_t *flush_timer;  /* retries the queue when the picker could not answer */
  struct lc_dispatch *next; /* rt->dispatchers, while listed */
} lc_dispatch;

void lc_dispatch_init(lc_dispatch *d, lc_rt *rt, uv_loop_t *loop);
/* dispatches with the Lua picker at the top of L's stack (popped) under key */
void lc_dispatch_start(lua_State *L, lc_dispatch *d, int key, int want_addr);
void lc_dispatch_stop(lua_State *L, lc_dispatch *d);     /* drops the picker (another taker) */
static inline int lc_dispatch_on(const lc_dispatch *d) { return d->picker_ref != LUA_NOREF; }
void lc_dispatch_take(lc_dispatch *d, uv_tcp_t *conn);   /* a new connection */
size_t lc_dispatch_flush(lc_dispatch *d);                /* queued ones to ready workers: how many */
/* the worker whose channel has this serial is gone: its unacknowledged connections are
 * requeued (returned) or closed (begun on: *closed) */
size_t lc_dispatch_requeue(lc_dispatch *d, uint64_t serial, size_t *closed);
void lc_dispatch_closing(lc_dispatch *d);  /* the listener closes: its copies are settled */
void lc_dispatch_free(lc_dispatch *d);     /* its close callback: every connection held closes */

/* ipc.c, the master: a worker acknowledged CONN frame seq of key on channel ch: taken (the
 * master's copy is closed) or not (lost: its socket did not arrive, or no server takes key
 * there; the copy goes to another worker) */
void lc_tcp_conn_ack(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq, int taken);
/* ipc.c: CONN frame seq of key, sent with a copy kept, was never written to channel ch */
void lc_tcp_conn_unsent(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq);

void lc_open_dispatch(lua_State *L);

#endif
