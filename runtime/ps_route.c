/* ps_route.c: publish/subscribe frames (pubsub.h), without Lua on the way of a publish.
 * The master keeps topic -> the worker channels with subscribers of it (PS_SUB / PS_UNSUB from
 * each worker, a channel dropped from every topic when it closes: a draining worker keeps its
 * topics until it exits) and forwards each PS_PUB as the same bytes to each of them. A worker
 * keeps topic -> its WebSockets (ws_fanout.c) plus a flag for its Lua subscribers, says PS_SUB
 * to the master when a topic gets its first subscriber and PS_UNSUB when it loses its last,
 * and hands each PS_PUB to its WebSockets and, when it has Lua subscribers of the topic, to
 * the Lua handler fn(topic, data, kind). The master's Lua gets a publish from a worker when it
 * has subscribers of the topic, or always once a bridge is set (core.ps_bridge).
 * A worker that does not read its channel (stopped, stuck in a loop) is given no publish while
 * more than LC_PS_MAX_CHANNEL_QUEUED bytes wait for it (dropped, counted, logged at most every
 * 10 s): the master's memory stays bounded, the other workers go on.
 * Lua binding (luacluster.pubsub is its only user):
 *   core.ps_handler(fn)               fn(topic, data, kind, from_worker) for this process's Lua
 *   core.ps_attach(ipc)               a worker: its channel to the master
 *   core.ps_local(topic, on)          this process's Lua has (no more) subscribers of topic
 *   core.ps_publish(topic, data, op [, max]) -> n | nil, err: master: forwarded to n workers;
 *                                     worker: sent to the master (n = 1). A publish whose topic
 *                                     and data are over max_message_size (a worker: its channel's;
 *                                     the master: max, its setup's) is refused here: every
 *                                     channel would skip it (ipc.c), and the caller is told
 *   core.ps_bridge(on), core.ps_stats() -> {...}, core.ps_topics() -> { topic = workers }
 * Owns: the state (rt->ps), its topic table and the handler's reference; freed by lc_ps_free. */
#include "pubsub.h"
#include "ipc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IPC_MT "luacluster.ipc"

struct lc_ps {
  lc_rt *rt;
  lc_ps_table topics;   /* master: items are worker channels; worker: lc_ws_sub (ws_fanout.c) */
  lc_ipc *up;           /* a worker: its channel to the master (NULL: master, or closed) */
  int attached;         /* a worker: core.ps_attach was called */
  int handler_ref;
  int bridge;
  double published;     /* master: publishes routed; worker: publishes sent */
  double forwarded;     /* master: frames forwarded to workers */
  double received;      /* worker: publishes from the master */
  double delivered;     /* worker: frames queued on WebSockets */
  double slow_closed;   /* worker: WebSockets closed by the backlog rule */
  double dropped;       /* master: publishes not given to a worker that does not read */
  double drop_logged;   /* master: dropped at the last log line */
  uint64_t drop_log_at; /* master: loop time of that line */
};

#define DROP_LOG_MS 10000

lc_ps *lc_ps_of(lc_rt *rt) {
  if (rt->ps == NULL) {
    lc_ps *ps = calloc(1, sizeof *ps);
    if (ps == NULL) return NULL;
    ps->rt = rt;
    ps->handler_ref = LUA_NOREF;
    rt->ps = ps;
  }
  return rt->ps;
}

lc_ps_table *lc_ps_table_of(lc_ps *ps) { return &ps->topics; }

lc_rt *lc_ps_rt(lc_ps *ps) { return ps->rt; }

int lc_ps_is_master(lc_ps *ps) { return !ps->attached; }

void lc_ps_count(lc_ps *ps, double delivered, double slow_closed) {
  ps->delivered += delivered;
  ps->slow_closed += slow_closed;
}

void lc_ps_free(lc_rt *rt) {
  lc_ps *ps = rt->ps;
  if (ps == NULL) return;
  lc_ps_table_free(&ps->topics);   /* (a worker's lc_ws_sub are the WebSockets', see below) */
  free(ps);
  rt->ps = NULL;
}

static int active(const lc_ps_topic *e) { return e->n > 0 || e->local; }

static void send_up(lc_ps *ps, int kind, const lc_ps_topic *e) {
  if (ps->up == NULL) return;
  lc_frame_header h = {(uint32_t)e->len, (uint8_t)kind, 0, 0, 0};
  lc_ipc_send_frame(ps->up, &h, e->name);   /* (a failure: the channel is closing) */
}

void lc_ps_worker_changed(lc_ps *ps, lc_ps_topic *e, int was_active) {
  int now = active(e);
  if (now && !was_active) send_up(ps, LC_KIND_PS_SUB, e);
  if (!now) {
    if (was_active) send_up(ps, LC_KIND_PS_UNSUB, e);
    lc_ps_unlink(&ps->topics, e);
  }
}

/* ---- the master ---- */

static void master_drop(lc_ps *ps, lc_ps_topic *e, lc_ipc *ch) {
  for (size_t i = 0; i < e->n; i++) {
    if (e->items[i] == ch) {
      e->items[i] = e->items[--e->n];
      break;
    }
  }
  if (!active(e)) lc_ps_unlink(&ps->topics, e);
}

/* the publish h + payload to every worker with subscribers of its topic: how many took it.
 * Not to a worker whose max_message_size is smaller (a reload's generation may have another):
 * its channel would skip the frame */
static size_t master_forward(lc_ps *ps, const lc_frame_header *h, const char *payload) {
  lc_ps_topic *e = lc_ps_get(&ps->topics, payload, h->seq, 0);
  size_t n = 0, over = 0, behind = 0;
  ps->published++;
  if (e == NULL) return 0;
  for (size_t i = 0; i < e->n; i++) {
    lc_ipc *ch = e->items[i];
    size_t max = lc_ipc_max_frame(ch), bound = LC_PS_MAX_CHANNEL_QUEUED;
    if (max <= SIZE_MAX / 2 && 2 * max > bound) bound = 2 * max;
    if (h->len > max) over++;
    else if (lc_ipc_queued(ch) > bound) behind++;
    else if (lc_ipc_send_frame(ch, h, payload) == 0) n++;
  }
  if (over > 0)
    lc_log(ps->rt, "warn: pubsub: a publish of %lu bytes (topic and data) is over the max_message_size of %zu worker%s;"
           " not sent there", (unsigned long)h->len, over, over == 1 ? "" : "s");
  if (behind > 0) {
    ps->dropped += (double)behind;
    uint64_t now = uv_now(&ps->rt->loop);
    if (ps->drop_logged == 0 || now - ps->drop_log_at >= DROP_LOG_MS) {
      lc_log(ps->rt, "warn: pubsub: a worker has over %zu MiB of publishes it has not read (stopped, or its loop stuck?);"
             " publishes to it are dropped until it reads (%.0f dropped since the last line)",
             (size_t)(LC_PS_MAX_CHANNEL_QUEUED >> 20), ps->dropped - ps->drop_logged);
      ps->drop_logged = ps->dropped;
      ps->drop_log_at = now;
    }
  }
  ps->forwarded += (double)n;
  return n;
}

void lc_ps_channel_gone(lc_rt *rt, lc_ipc *ch) {
  lc_ps *ps = rt->ps;
  if (ps == NULL) return;
  if (ch == ps->up) ps->up = NULL;
  if (ps->attached) return;
  ps->topics.walking = 1;   /* (a topic left empty is unlinked: the buckets stay as they are until the end) */
  for (size_t b = 0; b < ps->topics.nbuckets; b++) {
    lc_ps_topic *e = ps->topics.buckets[b];
    while (e) {
      lc_ps_topic *next = e->next;
      master_drop(ps, e, ch);
      e = next;
    }
  }
  ps->topics.walking = 0;
  lc_ps_shrink(&ps->topics);
}

/* ---- frames ---- */

static const char *kind_name(uint32_t op) { return op == 2 ? "binary" : "text"; }

/* hands a publish to this process's Lua (inside ipc.c's protected read: handler at 1) */
static void to_lua(lc_ps *ps, const lc_frame_header *h, const char *payload, int from_worker) {
  if (ps->handler_ref == LUA_NOREF) return;
  lua_State *L = ps->rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ps->handler_ref);
  lua_pushlstring(L, payload, h->seq);
  lua_pushlstring(L, payload + h->seq, h->len - h->seq);
  lua_pushstring(L, kind_name(h->peer));
  lua_pushboolean(L, from_worker);
  if (lua_pcall(L, 4, 0, 1) != 0) lc_log(ps->rt, "error: pubsub: %s", lua_tostring(L, -1));
  lua_settop(L, 1);
}

void lc_ps_frame(lc_ipc *ch, const lc_frame_header *h, const char *payload) {
  lc_ps *ps = lc_ps_of(lc_ipc_rt(ch));
  if (ps == NULL) return;
  if (h->kind == LC_KIND_PS_PUB) {
    if (h->seq == 0 || h->seq > h->len || (h->peer != 1 && h->peer != 2)) return;   /* not ours */
    if (!ps->attached) {   /* the master: a worker's publish (a reload's new worker has no route yet) */
      master_forward(ps, h, payload);
      lc_ps_topic *e = lc_ps_get(&ps->topics, payload, h->seq, 0);
      if (ps->bridge || (e && e->local)) to_lua(ps, h, payload, 1);
      return;
    }
    if (ch != ps->up) return;              /* a worker: only its master publishes to it */
    ps->received++;
    lc_ps_topic *e = lc_ps_get(&ps->topics, payload, h->seq, 0);
    if (e == NULL) return;
    int local = e->local;
    if (e->n > 0) lc_ws_fanout(ps, e, h->peer, payload + h->seq, h->len - h->seq);   /* may free e */
    if (local) to_lua(ps, h, payload, 0);
    return;
  }
  /* PS_SUB / PS_UNSUB: a worker's registration, in the master */
  if (ps->attached || h->len == 0) return;
  lc_ps_topic *e = lc_ps_get(&ps->topics, payload, h->len, h->kind == LC_KIND_PS_SUB);
  if (e == NULL) {
    if (h->kind == LC_KIND_PS_SUB) lc_log(ps->rt, "error: pubsub: out of memory for a topic");
    return;
  }
  if (h->kind == LC_KIND_PS_UNSUB) { master_drop(ps, e, ch); return; }
  for (size_t i = 0; i < e->n; i++)
    if (e->items[i] == ch) return;
  if (lc_ps_add(e, ch) != 0) {
    lc_log(ps->rt, "error: pubsub: out of memory for a topic");
    if (!active(e)) lc_ps_unlink(&ps->topics, e);
  }
}

/* ---- Lua ---- */

static lc_ps *check_ps(lua_State *L) {
  lc_ps *ps = lc_ps_of(lc_rt_get(L));
  if (ps == NULL) luaL_error(L, "out of memory");
  return ps;
}

static int f_handler(lua_State *L) {
  lc_ps *ps = check_ps(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_unref(L, LUA_REGISTRYINDEX, ps->handler_ref);
  lua_pushvalue(L, 1);
  ps->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int f_attach(lua_State *L) {
  lc_ps *ps = check_ps(L);
  lc_ipc *ch = lc_handle_check(L, 1, IPC_MT);
  ps->up = ch;
  ps->attached = 1;
  return 0;
}

static int f_local(lua_State *L) {
  lc_ps *ps = check_ps(L);
  size_t len;
  const char *topic = luaL_checklstring(L, 1, &len);
  int on = lua_toboolean(L, 2);
  lc_ps_topic *e = lc_ps_get(&ps->topics, topic, len, on);
  if (e == NULL) {
    if (on) return luaL_error(L, "out of memory");
    return 0;
  }
  int was = active(e);
  e->local = on ? 1 : 0;
  if (ps->attached) lc_ps_worker_changed(ps, e, was);
  else if (!active(e)) lc_ps_unlink(&ps->topics, e);
  return 0;
}

static int f_publish(lua_State *L) {
  lc_ps *ps = check_ps(L);
  size_t tlen, dlen;
  const char *topic = luaL_checklstring(L, 1, &tlen);
  const char *data = luaL_checklstring(L, 2, &dlen);
  lua_Integer op = luaL_checkinteger(L, 3);
  luaL_argcheck(L, tlen > 0, 1, "empty topic");
  luaL_argcheck(L, op == 1 || op == 2, 3, "opcode 1 or 2");
  size_t max = LC_IPC_DEFAULT_MAX_FRAME;
  if (ps->attached) {
    if (ps->up) max = lc_ipc_max_frame(ps->up);
  } else if (!lua_isnoneornil(L, 4)) {
    lua_Number m = luaL_checknumber(L, 4);
    max = m >= 0 && m < (lua_Number)LC_MAX_FRAME_PAYLOAD ? (size_t)m : LC_MAX_FRAME_PAYLOAD;
  }
  if (tlen > max || dlen > max - tlen) {
    char msg[160];   /* (lua_pushfstring has no %zu) */
    snprintf(msg, sizeof msg, "the publish (%zu bytes: topic and data) is over max_message_size (%zu bytes)",
             tlen > SIZE_MAX - dlen ? SIZE_MAX : tlen + dlen, max);
    return lc_push_fail(L, 0, "%s", msg);
  }
  lc_frame_header h = {(uint32_t)(tlen + dlen), LC_KIND_PS_PUB, 0, (uint32_t)op, (uint32_t)tlen};
  char stack[512];
  char *p = tlen + dlen <= sizeof stack ? stack : malloc(tlen + dlen);
  if (p == NULL) return lc_push_error(L, UV_ENOMEM);
  memcpy(p, topic, tlen);
  memcpy(p + tlen, data, dlen);
  size_t n = 0;
  int r = 0;
  if (!ps->attached) {
    n = master_forward(ps, &h, p);
  } else if (ps->up == NULL) {
    r = UV_EPIPE;
  } else if ((r = lc_ipc_send_frame(ps->up, &h, p)) == 0) {
    ps->published++;
    n = 1;
  }
  if (p != stack) free(p);
  if (r != 0) return lc_push_fail(L, r, "the channel to the master is closed");
  lua_pushnumber(L, (lua_Number)n);
  return 1;
}

static int f_bridge(lua_State *L) {
  check_ps(L)->bridge = lua_toboolean(L, 1);
  return 0;
}

static int f_stats(lua_State *L) {
  lc_ps *ps = check_ps(L);
  lua_createtable(L, 0, 7);
  lua_pushnumber(L, ps->published); lua_setfield(L, -2, "published");
  lua_pushnumber(L, ps->forwarded); lua_setfield(L, -2, "forwarded");
  lua_pushnumber(L, ps->received); lua_setfield(L, -2, "received");
  lua_pushnumber(L, ps->delivered); lua_setfield(L, -2, "delivered");
  lua_pushnumber(L, ps->slow_closed); lua_setfield(L, -2, "slow_closed");
  lua_pushnumber(L, ps->dropped); lua_setfield(L, -2, "dropped");
  lua_pushnumber(L, (lua_Number)ps->topics.count); lua_setfield(L, -2, "topics");
  return 1;
}

/* master: topic -> how many workers have subscribers of it (topics with none are left out) */
static int f_topics(lua_State *L) {
  lc_ps *ps = check_ps(L);
  lua_newtable(L);
  if (ps->attached) return 1;
  for (size_t b = 0; b < ps->topics.nbuckets; b++) {
    for (lc_ps_topic *e = ps->topics.buckets[b]; e; e = e->next) {
      if (e->n == 0) continue;
      lua_pushlstring(L, e->name, e->len);
      lua_pushnumber(L, (lua_Number)e->n);
      lua_rawset(L, -3);
    }
  }
  return 1;
}

void lc_open_ps(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"ps_handler", f_handler}, {"ps_attach", f_attach}, {"ps_local", f_local}, {"ps_publish", f_publish},
    {"ps_bridge", f_bridge}, {"ps_stats", f_stats}, {"ps_topics", f_topics}, {NULL, NULL},
  };
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  lua_pushnumber(L, (lua_Number)LC_IPC_DEFAULT_MAX_FRAME);   /* max_message_size's default */
  lua_setfield(L, -2, "ps_default_max");
  lc_open_ws_fanout(L);
}
