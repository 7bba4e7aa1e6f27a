/* ws_fanout.c: a worker's WebSockets per topic (pubsub.h). A publish from the master is framed
 * once (lc_ws_frame_header) and the same header and payload are queued on each subscribed
 * socket (the connection's write queue copies them into its buffer, which the loop turn
 * writes with one try per socket; see doc/issue17/pubsub.md for why not a shared buffer).
 * The backlog rule: a subscriber with more than LC_WS_FANOUT_MAX_QUEUED bytes still queued is
 * not given the publish; it is closed with 1008 ("subscriber too slow"), takes no more, and
 * its connection ends once the close is written or after the server's send_timeout: a client
 * that does not read costs at most that much memory, and the others go on.
 * A socket's topics are a list of lc_ws_sub (one per topic), each also in its topic's items at
 * idx (swapped out in O(1)); a socket that is freed leaves them all (lc_ws_fanout_conn_gone).
 *   core.ws_subscribe(conn, seq, topic) / core.ws_unsubscribe(conn, seq, topic) -> true | nil, err
 * Owns: the lc_ws_sub entries, freed when they leave their topic. */
#include "http_int.h"
#include "pubsub.h"
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>

struct lc_ws_sub {
  lc_ps_topic *t;
  http_conn *c;
  size_t idx;               /* its place in t->items */
  lc_ws_sub *next;          /* the socket's next topic */
};

/* takes s out of its topic (which is freed when it has no subscriber left here) */
static void leave(lc_ps *ps, lc_ws_sub *s) {
  lc_ps_topic *e = s->t;
  lc_ws_sub *last = e->items[--e->n];
  if (last != s) {
    e->items[s->idx] = last;
    last->idx = s->idx;
  }
  lc_ps_worker_changed(ps, e, 1);
}

void lc_ws_fanout_conn_gone(lc_rt *rt, lc_ws_sub **subs) {
  lc_ps *ps = rt->ps;   /* NULL once the Lua state closed: the topics are gone already */
  lc_ws_sub *s = *subs;
  *subs = NULL;
  while (s) {
    lc_ws_sub *next = s->next;
    if (ps) leave(ps, s);
    free(s);
    s = next;
  }
}

void lc_ws_fanout(lc_ps *ps, lc_ps_topic *e, unsigned opcode, const char *data, size_t len) {
  unsigned char h[10];
  size_t hl = lc_ws_frame_header(h, 1, 0, opcode, len);
  size_t n = e->n, delivered = 0, nslow = 0;
  http_conn *slow_stack[16], **slow = slow_stack;
  size_t slow_cap = sizeof slow_stack / sizeof slow_stack[0];
  /* no Lua runs in this loop, so the topic's members cannot change under it */
  for (size_t i = 0; i < n; i++) {
    lc_ws_sub *s = e->items[i];
    int r = lc_ws_conn_queue_framed(s->c, (const char *)h, hl, data, len, LC_WS_FANOUT_MAX_QUEUED);
    if (r == 0) { delivered++; continue; }
    if (r < 0) continue;
    if (nslow == slow_cap) {   /* (out of memory: this one is closed at its next publish) */
      http_conn **p = malloc(slow_cap * 2 * sizeof *p);
      if (p == NULL) continue;
      memcpy(p, slow, nslow * sizeof *p);
      if (slow != slow_stack) free(slow);
      slow = p;
      slow_cap *= 2;
    }
    slow[nslow++] = s->c;
  }
  lc_ps_count(ps, (double)delivered, (double)nslow);
  /* closing tells Lua (ws:on("close")), which may change any topic: after the loop. A closed
   * connection's memory stays until its close callback, so these pointers are valid here */
  for (size_t i = 0; i < nslow; i++) {
    lc_log(lc_ps_rt(ps), "warn: pubsub: a WebSocket subscriber has over %zu bytes queued (it does not read); closed with 1008",
           (size_t)LC_WS_FANOUT_MAX_QUEUED);
    lc_ws_conn_fail(slow[i], 1008, "subscriber too slow");
  }
  if (slow != slow_stack) free(slow);
}

/* ---- Lua ---- */

static int f_subscribe(lua_State *L) {
  http_conn *c = lc_ws_conn_arg(L);
  size_t len;
  const char *topic = luaL_checklstring(L, 3, &len);
  luaL_argcheck(L, len > 0, 3, "empty topic");
  lc_ps *ps = lc_ps_of(lc_rt_get(L));
  if (ps == NULL) return lc_push_error(L, UV_ENOMEM);
  if (lc_ps_is_master(ps)) return lc_push_fail(L, 0, "WebSockets subscribe in workers only");
  lc_ws_sub **subs = c ? lc_ws_conn_subs(c) : NULL;
  if (subs == NULL) return lc_push_fail(L, 0, "closed");
  for (lc_ws_sub *s = *subs; s; s = s->next)
    if (s->t->len == len && memcmp(s->t->name, topic, len) == 0) { lua_pushboolean(L, 1); return 1; }
  lc_ws_sub *s = malloc(sizeof *s);
  lc_ps_topic *e = s ? lc_ps_get(lc_ps_table_of(ps), topic, len, 1) : NULL;
  if (e == NULL) { free(s); return lc_push_error(L, UV_ENOMEM); }
  int was = e->n > 0 || e->local;
  if (lc_ps_add(e, s) != 0) {
    free(s);
    lc_ps_worker_changed(ps, e, was);   /* (a topic just made for it goes again) */
    return lc_push_error(L, UV_ENOMEM);
  }
  s->t = e;
  s->c = c;
  s->idx = e->n - 1;
  s->next = *subs;
  *subs = s;
  lc_ps_worker_changed(ps, e, was);
  lua_pushboolean(L, 1);
  return 1;
}

static int f_unsubscribe(lua_State *L) {
  http_conn *c = lc_ws_conn_arg(L);
  size_t len;
  const char *topic = luaL_checklstring(L, 3, &len);
  lc_ps *ps = lc_rt_get(L)->ps;
  lc_ws_sub **subs = c ? lc_ws_conn_subs(c) : NULL;
  if (subs == NULL || ps == NULL) return lc_push_fail(L, 0, "closed");
  for (lc_ws_sub **pp = subs; *pp; pp = &(*pp)->next) {
    lc_ws_sub *s = *pp;
    if (s->t->len == len && memcmp(s->t->name, topic, len) == 0) {
      *pp = s->next;
      leave(ps, s);
      free(s);
      break;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lc_open_ws_fanout(lua_State *L) {
  lua_pushcfunction(L, f_subscribe);
  lua_setfield(L, -2, "ws_subscribe");
  lua_pushcfunction(L, f_unsubscribe);
  lua_setfield(L, -2, "ws_unsubscribe");
}
