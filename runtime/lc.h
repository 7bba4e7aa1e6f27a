/* lc.h: the runtime's shared declarations.
 * Every exported symbol of the C runtime starts with lc_; everything else is static in its file.
 * One lc_rt exists per Lua state: it owns the event loop that state drives and the
 * registry references the handles use. Nothing here is process-global, so two Lua
 * states (a spec running the core module twice) never share runtime state by accident. */
#ifndef LC_H
#define LC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

#include "buf.h"
#include "write_queue.h"

#define LC_VERSION "0.1.0"

typedef struct lc_ipc lc_ipc;

/* A connection sink takes accepted connections for one server key: a worker's HTTP or net
 * server registers one so that connections the master dispatches reach it without Lua. */
typedef void (*lc_conn_sink_fn)(void *data, uv_tcp_t *conn);
typedef struct lc_sink { int key; lc_conn_sink_fn fn; void *data; } lc_sink;
#define LC_MAX_SINKS 64

/* HTTP counters of the whole process (every server of this Lua state), kept in C per response
 * (http.c) and read by the metrics (core.http_stats). Durations go into fixed buckets. */
#define LC_HTTP_BUCKETS 14
extern const double lc_http_bounds[LC_HTTP_BUCKETS];   /* upper bounds in seconds */
typedef struct lc_http_stats {
  double status[6];                 /* [1..5] responses by class 1xx..5xx, [0] any other */
  double dur[LC_HTTP_BUCKETS + 1];  /* responses by duration bucket; the last is +Inf */
  double dur_sum;                   /* seconds */
  double body_bytes;
  double conns_open, conns_total;
} lc_http_stats;

typedef struct lc_alog lc_alog;

typedef struct lc_rt {
  uv_loop_t loop;
  lua_State *L;           /* the main thread: every callback from the loop runs on it */
  int traceback_ref;      /* the message handler of every callback's pcall, made once */
  lc_wq_flusher flusher;  /* flushes batched writes (IPC frames) once per loop turn */
  lc_ipc **routes;        /* worker id -> channel, for frames routed without Lua (master) */
  int nroutes;
  lc_sink sinks[LC_MAX_SINKS];
  int nsinks;
  char log_prefix[64];    /* "[master] " or "" (a worker's lines are prefixed by its master) */
  int log_json;           /* --log-format json: log lines (and forwarded worker lines) are JSON */
  int log_worker;         /* this process's worker id (0: the master or a forked child) */
  lc_http_stats http;
  lc_alog *alogs;         /* the access logs of this state (access_log.c), flushed at exit */
  int call_ref;           /* lc_call_with's protected trampoline, made once */
  struct lc_tcp *dispatchers; /* tcp.c: the listeners that dispatch (master), for IPC's acks */
  uint64_t ipc_serials;   /* ipc.c: the last serial given to a channel (unique per process) */
} lc_rt;

/* rt.c */
int lc_sink_add(lc_rt *rt, int key, lc_conn_sink_fn fn, void *data);
void lc_sink_remove(lc_rt *rt, int key, void *data);
int lc_sink_deliver(lc_rt *rt, int key, uv_tcp_t *conn);   /* 0 when no sink took it */
lc_rt *lc_rt_get(lua_State *L);                 /* the runtime of this Lua state; raises if absent */
int lc_rt_open(lua_State *L);                   /* creates it (idempotent), leaves nothing on the stack */
void lc_call(lc_rt *rt, int nargs);             /* pcall function+args pushed on rt->L; logs errors */
/* A callback from libuv into Lua with its arguments built inside the protection: push(L, ud)
 * pushes the function and its arguments and returns how many arguments (or -1: call nothing).
 * Whatever raises in push (out of memory in lua_pushlstring, lua_newtable, luaL_ref, a handle
 * box) or in the callback is logged, never thrown through libuv. lc_call(rt, n) after pushes
 * made outside a protected call is only safe when those pushes cannot allocate.
 * Returns 0 when the callback was called (it may have raised: logged), -1 when push returned
 * -1, or a LUA_ERR* status when push raised: then the caller still owns what push was to hand
 * over (push should take ownership of a resource only as its last step). */
typedef int (*lc_push_fn)(lua_State *L, void *ud);
int lc_call_with(lc_rt *rt, lc_push_fn push, void *ud);
void lc_log(lc_rt *rt, const char *fmt, ...);   /* one line on stderr with the log prefix */
int lc_push_error(lua_State *L, int uverr);     /* nil, "ENAME: message", "ENAME" */
void lc_write_all(int fd, const char *buf, size_t len);  /* queued for log.c's writer: never waits */
int lc_signum(const char *name);                /* "SIGTERM" or "TERM" -> 15; 0 when unknown */
const char *lc_signame(int signum);             /* 15 -> "SIGTERM"; NULL when unknown */

/* A Lua-visible handle: a userdata box holding a pointer to a heap struct that starts with
 * lc_handle_base. The struct is freed in its close callback (the one place), after which
 * the box points to NULL and every method raises "closed". */
typedef struct lc_handle_base {
  lc_rt *rt;
  int self_ref;           /* keeps the box alive while the OS handle is open */
  int cb_ref;             /* the Lua callback for events, or LUA_NOREF */
  void **box;
} lc_handle_base;

void *lc_handle_new(lua_State *L, size_t size, const char *mt);   /* pushes the box */
void *lc_handle_check(lua_State *L, int idx, const char *mt);     /* raises when closed */
void *lc_handle_test(lua_State *L, int idx, const char *mt);      /* NULL when not that type or closed */
void lc_handle_set_cb(lua_State *L, lc_handle_base *h, int idx);
int lc_handle_push_cb(lc_handle_base *h);       /* pushes the callback; 0 when none */
/* calls h's callback with the string a (and b unless NULL) through lc_call_with; 1 when called */
int lc_call_cb_str(lc_handle_base *h, const char *a, const char *b);
void lc_handle_release(lc_handle_base *h);      /* drops refs, detaches the box; caller frees */
void lc_newmetatable(lua_State *L, const char *name, const luaL_Reg *methods);

/* log.c: the runtime's log lines ("level: message") as text or JSON, the master's forwarding
 * of a worker's output lines, and the writer thread of fds 1 and 2 (bounded queues, never waits) */
void lc_log_emit(lc_rt *rt, const char *msg, size_t len);
void lc_log_forward(lc_rt *rt, int fd, const char *prefix, int pid, const char *line, size_t len);
void lc_log_queue(int fd, const char *buf, size_t len);   /* whole lines; dropped (counted) when full */
void lc_log_flush(void);                                  /* before exit: waits (bounded) until written */

/* access_log.c: buffered access logs written off the loop (one per path and Lua state) */
typedef struct lc_alog_entry {
  const char *peer;                      /* remote address, or NULL */
  const char *method; size_t method_len; /* NULL: no request line was read */
  const char *target; size_t target_len;
  int minor, status;
  double body_bytes, seconds;
  const char *referer; size_t referer_len;  /* NULL: none */
  const char *agent; size_t agent_len;
} lc_alog_entry;
lc_alog *lc_alog_check(lua_State *L, int idx);
void lc_alog_request(lc_alog *a, const lc_alog_entry *e);
void lc_alog_flush_all_sync(lc_rt *rt);   /* before exit: what is buffered is written, log lines too */

/* the bindings each file registers into the core module table on the top of the stack */
void lc_open_rt(lua_State *L);
void lc_open_ipc(lua_State *L);
void lc_open_process(lua_State *L);
void lc_open_timer(lua_State *L);
void lc_open_signal(lua_State *L);
void lc_open_stream(lua_State *L);
void lc_open_tcp(lua_State *L);
void lc_open_http(lua_State *L);
void lc_open_fswatch(lua_State *L);
const char *lc_codec_check(const char *p, size_t len);  /* NULL: one complete, bounded value */
void lc_open_protect(lua_State *L);

void lc_open_log(lua_State *L);
void lc_open_access_log(lua_State *L);
void lc_open_notify(lua_State *L);

/* tcp.c */
uv_tcp_t *lc_tcp_listener(lua_State *L, int idx);    /* the uv handle of a listening tcp object */
uv_tcp_t *lc_tcp_detach(lua_State *L, int idx);
int lc_tcp_accept_with(lua_State *L, int idx, void (*take)(void *ctx, uv_tcp_t *conn), void *ctx);
void lc_free_handle_cb(uv_handle_t *h);               /* close callback that frees a bare handle */

/* ipc.c: used by process.c to spawn a child with a channel */
lc_ipc *lc_ipc_new(lua_State *L, int cb_idx);   /* pushes the box; pipe initialised, not open */
uv_pipe_t *lc_ipc_pipe(lc_ipc *ch);
int lc_ipc_start(lc_ipc *ch);                     /* starts reading once the pipe is open */
/* takes ownership of conn; seq != 0: the master keeps a copy, the peer acknowledges that frame */
int lc_ipc_send_conn(lc_ipc *ch, int key, uv_tcp_t *conn, uint32_t seq);
uint64_t lc_ipc_serial(const lc_ipc *ch);         /* unique per channel in this process */
int lc_ipc_unacked(const lc_ipc *ch);             /* CONN frames with a copy not acknowledged yet */
void lc_ipc_acked(lc_ipc *ch);                    /* tcp.c: one of those is settled (its copy dropped) */
lc_ipc *lc_ipc_by_serial(lc_rt *rt, int id, uint64_t serial); /* worker id's channel serial, if open */
lc_ipc *lc_ipc_route(lc_rt *rt, int id);          /* the channel registered for worker id */
void lc_ipc_flush_all(lc_rt *rt);                 /* best-effort synchronous flush (before exit) */

/* stream.c: used by process.c for a child's stdio pipes */
typedef struct lc_stream lc_stream;
lc_stream *lc_stream_new(lua_State *L, int cb_idx);   /* pushes the box */
uv_pipe_t *lc_stream_pipe(lc_stream *s);
int lc_stream_start(lc_stream *s);
void lc_stream_close_if_prefix(lc_stream *s);        /* a forwarder whose spawn failed */
lc_stream *lc_prefix_new(lc_rt *rt, int out_fd, const char *prefix); /* line-prefixing forwarder, owned by C */
void lc_prefix_set_pid(lc_stream *s, int pid);       /* the child whose lines it forwards */

/* tcp.c: a handle received over IPC becomes a Lua tcp object */
int lc_tcp_push_received(lua_State *L, lc_rt *rt, uv_stream_t *accepted, int is_server);
uv_stream_t *lc_tcp_stream_for_send(lua_State *L, int idx, int *is_server);
/* tcp.c, the master's dispatch: a worker acknowledged CONN frame seq of key on channel ch:
 * taken (the master's copy is closed) or not (lost: its socket did not arrive, or no server
 * takes key there; the copy goes to another worker) */
void lc_tcp_conn_ack(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq, int taken);
/* tcp.c: CONN frame seq of key, sent with a copy kept, was never written to channel ch */
void lc_tcp_conn_unsent(lc_rt *rt, lc_ipc *ch, int key, uint32_t seq);

#endif
