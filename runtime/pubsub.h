/* pubsub.h: publish/subscribe in the runtime (DESIGN.md: routed by the master in C like worker
 * messages; a worker frames a publish once for all its WebSockets).
 *   ps_topics.c   a table topic -> members (a chained hash), shared by both halves
 *   ps_route.c    the frames: the master's routing (topic -> worker channels), a worker's
 *                 registration with its master, the Lua binding (core.ps_*)
 *   ws_fanout.c   a worker's WebSockets per topic: one framing per publish, the backlog rule
 * Frames (ipc_frame.h): PS_PUB { peer = WebSocket opcode (1 text, 2 binary), seq = topic length,
 * payload = topic .. data }, forwarded by the master as the same bytes; PS_SUB / PS_UNSUB
 * { payload = topic }, worker -> master, when a topic gets its first / loses its last subscriber
 * in that worker (Lua subscribers and WebSockets together). */
#ifndef LC_PUBSUB_H
#define LC_PUBSUB_H

#include "lc.h"
#include "ipc_frame.h"

typedef struct lc_ps_topic {
  struct lc_ps_topic *next;   /* its bucket's chain */
  uint32_t hash;
  void **items;               /* master: lc_ipc * (worker channels); worker: lc_ws_sub * */
  size_t n, cap;
  unsigned local : 1;         /* this process's Lua has subscribers of it */
  size_t len;
  char name[];                /* the topic (len bytes, then a 0) */
} lc_ps_topic;

typedef struct lc_ps_table {
  lc_ps_topic **buckets;
  size_t nbuckets, count;
  int walking;                /* a walk of the buckets is under way: unlink does not shrink them */
} lc_ps_table;

/* ---- ps_topics.c ---- */
/* the topic, or NULL (not there and !create, or out of memory) */
lc_ps_topic *lc_ps_get(lc_ps_table *t, const char *name, size_t len, int create);
int lc_ps_add(lc_ps_topic *e, void *item);            /* 0 or UV_ENOMEM; item at e->n - 1 */
/* takes e out and frees it (not its items); the buckets shrink then, unless t->walking */
void lc_ps_unlink(lc_ps_table *t, lc_ps_topic *e);
void lc_ps_shrink(lc_ps_table *t);                     /* the buckets to fit (after a walk) */
void lc_ps_table_free(lc_ps_table *t);                /* every topic (not their items) */

/* ---- ps_route.c ---- */
typedef struct lc_ps lc_ps;
lc_ps *lc_ps_of(lc_rt *rt);          /* this process's state (made on first use), or NULL */
/* a PS_* frame read on channel ch (ipc.c, inside its protected read, whose message handler is
 * at stack index 1) */
void lc_ps_frame(lc_ipc *ch, const lc_frame_header *h, const char *payload);
void lc_ps_channel_gone(lc_rt *rt, lc_ipc *ch);   /* a channel closes: out of every topic */
void lc_ps_free(lc_rt *rt);                       /* the Lua state closes */
/* a worker's topic e changed (a member or its Lua flag): the master hears when it becomes
 * active (its first subscriber here) or inactive (its last left: e is freed then) */
void lc_ps_worker_changed(lc_ps *ps, lc_ps_topic *e, int was_active);
lc_ps_table *lc_ps_table_of(lc_ps *ps);
lc_rt *lc_ps_rt(lc_ps *ps);
int lc_ps_is_master(lc_ps *ps);
void lc_ps_count(lc_ps *ps, double delivered, double slow_closed);
void lc_open_ps(lua_State *L);

/* ---- ws_fanout.c ---- */
#define LC_WS_FANOUT_MAX_QUEUED ((size_t)4 << 20)   /* the backlog rule: see ws_fanout.c */
/* the master's rule for a worker that does not read its channel (stopped, or a loop stuck):
 * past this many bytes (or twice its max_message_size) not taken, it is given no publish */
#define LC_PS_MAX_CHANNEL_QUEUED ((size_t)128 << 20)
typedef struct lc_ws_sub lc_ws_sub;
/* queues one framed publish on every WebSocket of worker topic e */
void lc_ws_fanout(lc_ps *ps, lc_ps_topic *e, unsigned opcode, const char *data, size_t len);
void lc_ws_fanout_conn_gone(lc_rt *rt, lc_ws_sub **subs);   /* a WebSocket is freed */
void lc_open_ws_fanout(lua_State *L);

#endif
