/* lc.h: the runtime's core: the per-Lua-state runtime (lc_rt), the calls from libuv into Lua,
 * the handle boxes, the one shape of a failure in Lua, and the log line (rt.c, log.c).
 * Every exported symbol of the C runtime starts with lc_; everything else is static in its file.
 * Each concept has its own header (ipc.h, tcp.h, dispatch.h, stream.h, log.h, access_log.h,
 * write_queue.h, buf.h, ...): a file includes the ones it uses.
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
#include "dispatch.h"

#define LC_VERSION "0.1.0"

typedef struct lc_ipc lc_ipc;
typedef struct lc_alog lc_alog;

/* HTTP counters of the whole process (every server of this Lua state), kept in C per response
 * (http_account.c) and read by the metrics (core.http_stats). Durations go into fixed buckets. */
#define LC_HTTP_BUCKETS 14
extern const double lc_http_bounds[LC_HTTP_BUCKETS];   /* upper bounds in seconds */
typedef struct lc_http_stats {
  double status[6];                 /* [1..5] responses by class 1xx..5xx, [0] any other */
  double dur[LC_HTTP_BUCKETS + 1];  /* responses by duration bucket; the last is +Inf */
  double dur_sum;                   /* seconds */
  double body_bytes;
  double conns_open, conns_total;
  double ws_open, ws_in, ws_out;    /* WebSockets open, messages received and sent (ws_conn.c) */
} lc_http_stats;

typedef struct lc_rt {
  uv_loop_t loop;
  lua_State *L;           /* the main thread: every callback from the loop runs on it */
  int traceback_ref;      /* the message handler of every callback's pcall, made once */
  lc_wq_flusher flusher;  /* flushes batched writes (IPC frames) once per loop turn */
  lc_ipc **routes;        /* ipc.c: worker id -> channel, for frames routed without Lua (master) */
  int nroutes;
  lc_sink sinks[LC_MAX_SINKS];  /* dispatch.c: server key -> the taker of its connections */
  int nsinks;
  char log_prefix[64];    /* "[master] " or "" (a worker's lines are prefixed by its master) */
  int log_json;           /* --log-format json: log lines (and forwarded worker lines) are JSON */
  int log_worker;         /* this process's worker id (0: the master or a forked child) */
  lc_http_stats http;
  struct http_conn *http_spares; /* http_conn.c: closed connections' memory, kept for reuse */
  size_t http_nspares;    /* how many (core.http_stats's spare_connections) */
  uint64_t http_seq;      /* http_conn.c: the last request number given (unique per state) */
  lc_alog *alogs;         /* the access logs of this state (access_log.c), flushed at exit */
  int call_ref;           /* lc_call_with's protected trampoline, made once */
  lc_dispatch *dispatchers; /* dispatch.c: the listeners that dispatch (master), for IPC's acks */
  uint64_t ipc_serials;   /* ipc.c: the last serial given to a channel (unique per process) */
  struct lc_ps *ps;       /* ps_route.c: publish/subscribe (made on first use, freed by rt_gc) */
  struct lc_tls_store *tls_store; /* conn_tls.c: TLS contexts and client sessions, made on the
                                   * first TLS connect; rt_gc lets go of it (tls.h) */
  struct lc_tls_tickets *tls_tickets; /* tls_lua.c: the servers' session ticket keys, made with
                                   * the first TLS server or core.tls_ticket_keys; rt_gc lets go */
} lc_rt;

/* rt.c */
lc_rt *lc_rt_get(lua_State *L);                 /* the runtime of this Lua state; raises if absent */
int lc_rt_open(lua_State *L);                   /* creates it (idempotent), leaves nothing on the stack */
void lc_call(lc_rt *rt, int nargs);             /* pcall function+args pushed on rt->L; logs errors */
void lc_http_free_spares(lc_rt *rt);            /* http_conn.c: frees rt->http_spares (the state closes) */
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
/* The one shape of a failure in Lua: nil, message [, code]. lc_push_fail formats the message
 * (lua_pushfstring's formats) and adds the UV_E* name of uverr (< 0; none for 0);
 * lc_push_error(L, uverr) is nil, "ENAME: message", "ENAME". Both return the count pushed. */
int lc_push_fail(lua_State *L, int uverr, const char *fmt, ...);
int lc_push_error(lua_State *L, int uverr);
void lc_free_handle_cb(uv_handle_t *h);         /* close callback that frees a bare handle */

/* log.c: one line on stderr with the log prefix (never waits: log.c's writer thread) */
void lc_log(lc_rt *rt, const char *fmt, ...);

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

#endif
