/* udp.c: a connected UDP socket bound to Lua (luacluster.ngx's ngx.socket.udp).
 * Owns: the lc_udp struct with its uv_udp_t and its receive timer (both embedded), the Lua
 * callback of the receive that waits (base.cb_ref), and each queued send's request and copy of
 * its datagram (freed in udp_send_cb). The struct is freed in udp_close_cb once both handles
 * have closed.
 * One receive at a time, one datagram each: the socket reads only while a receive waits, so
 * datagrams that arrive meanwhile wait in the kernel's receive buffer (bounded by SO_RCVBUF, as
 * any socket's), in order, for the next receive. A datagram longer than the size asked for is
 * cut to it, the rest dropped, as recv(2) does. A receive that times out leaves the socket as
 * it was.
 * Names are looked up by resolve.c (core.resolve), as for TCP. */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MT "luacluster.udp"
#define MAX_DATAGRAM 65536       /* the largest a receive returns (OpenResty's limit too) */
#define RETRY_MS 50              /* a receive's end Lua had no memory for is tried again */

typedef struct lc_udp {
  lc_handle_base base;      /* base.cb_ref: the waiting receive's callback, or LUA_NOREF */
  uv_udp_t udp;
  uv_timer_t timer;         /* the waiting receive's timeout */
  int open_handles;         /* handles not yet closed (udp, timer): freed at 0 */
  int closing, receiving, reading;  /* reading: uv_udp_recv_start is on */
  size_t want;              /* the waiting receive's size */
} lc_udp;

/* ---- closing ---- */

typedef struct recv_args { int ref; ssize_t nread; const char *data; size_t len; } recv_args;

/* run by lc_call_with, protected: cb(datagram) | cb(nil, "timeout" | "closed" | reason, name) */
static int udp_push_recv(lua_State *L, void *ud) {
  recv_args *a = ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
  if (a->nread >= 0) {
    lua_pushlstring(L, a->data, a->len);
    return 1;
  }
  if (a->nread == UV_ETIMEDOUT) return lc_push_fail(L, 0, "timeout");
  if (a->nread == UV_ECANCELED) return lc_push_fail(L, 0, "closed");
  return lc_push_fail(L, (int)a->nread, "%s", uv_strerror((int)a->nread));
}

static void udp_close_cb(uv_handle_t *h) {
  lc_udp *u = h->data;
  if (--u->open_handles > 0) return;
  if (u->base.cb_ref != LUA_NOREF) {  /* a receive waited: it ends now */
    recv_args a = {u->base.cb_ref, UV_ECANCELED, NULL, 0};
    if (lc_call_with(u->base.rt, udp_push_recv, &a) > 0)
      lc_log(u->base.rt, "error: udp: a waiting receive could not be told its socket closed (out of memory)");
  }
  lc_handle_release(&u->base);
  free(u);
}

static void udp_close(lc_udp *u) {
  if (u->closing) return;
  u->closing = 1;
  uv_close((uv_handle_t *)&u->udp, udp_close_cb);
  uv_close((uv_handle_t *)&u->timer, udp_close_cb);
}

/* ---- receiving ---- */

static void udp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[MAX_DATAGRAM];
  *buf = uv_buf_init(slab, sizeof slab);
}

static void udp_timer_cb(uv_timer_t *timer);

/* The waiting receive ends with a datagram (nread >= 0), a timeout (UV_ETIMEDOUT) or an error.
 * It is over before its callback runs, so that the callback may receive again. When Lua had
 * no memory to take it, the receive goes on waiting: a datagram is lost (as a network loses
 * one), a timeout is tried again shortly. */
static void recv_done(lc_udp *u, ssize_t nread, const char *data) {
  size_t len = nread > 0 ? (size_t)nread : 0;
  if (len > u->want) len = u->want;
  recv_args a = {u->base.cb_ref, nread, data, len};
  u->base.cb_ref = LUA_NOREF;
  u->receiving = 0;
  uv_timer_stop(&u->timer);
  int r = lc_call_with(u->base.rt, udp_push_recv, &a);
  if (r > 0 && !u->closing && !u->receiving) {
    lc_log(u->base.rt, "warn: udp: Lua had no memory to end a receive (%s); it waits on",
           nread >= 0 ? "a datagram is dropped" : "tried again");
    u->base.cb_ref = a.ref;
    u->receiving = 1;
    if (nread < 0) uv_timer_start(&u->timer, udp_timer_cb, RETRY_MS, 0);
    return;
  }
  luaL_unref(u->base.rt->L, LUA_REGISTRYINDEX, a.ref);
  if (!u->receiving && !u->closing && u->reading) {  /* the kernel keeps what comes */
    uv_udp_recv_stop(&u->udp);
    u->reading = 0;
  }
}

static void udp_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                        unsigned flags) {
  lc_udp *u = h->data;
  (void)flags;  /* UV_UDP_PARTIAL: longer than MAX_DATAGRAM, cut as any longer than want */
  if (nread == 0 && addr == NULL) return;  /* nothing more to read now */
  if (!u->receiving) {  /* never: reading stops with each receive's end */
    uv_udp_recv_stop(h);
    u->reading = 0;
    return;
  }
  recv_done(u, nread, buf->base);
}

static void udp_timer_cb(uv_timer_t *timer) {
  lc_udp *u = timer->data;
  if (u->receiving) recv_done(u, UV_ETIMEDOUT, NULL);
}

/* u:recv(size, timeout_ms, cb): cb(datagram cut to size) | cb(nil, "timeout") |
 * cb(nil, reason, name) (an ICMP error: "connection refused") | cb(nil, "closed");
 * timeout_ms 0: none. -> true | nil, err */
static int m_recv(lua_State *L) {
  lc_udp *u = lc_handle_check(L, 1, MT);
  lua_Number size = luaL_checknumber(L, 2);
  lua_Number ms = luaL_checknumber(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  luaL_argcheck(L, size >= 0, 2, "a size >= 0");
  luaL_argcheck(L, ms >= 0 && ms <= 1e12, 3, "a number of ms >= 0");
  if (u->receiving) return luaL_error(L, "udp: a receive already waits on this socket");
  if (u->closing) return lc_push_fail(L, 0, "closed");
  lc_handle_set_cb(L, &u->base, 4);   /* (what can raise comes before reading starts) */
  if (!u->reading) {  /* (it still is when a receive's callback receives again) */
    int r = uv_udp_recv_start(&u->udp, udp_alloc_cb, udp_recv_cb);
    if (r != 0) {
      lc_handle_set_cb(L, &u->base, 0);
      return lc_push_fail(L, r, "%s", uv_strerror(r));
    }
    u->reading = 1;
  }
  u->want = size > MAX_DATAGRAM ? MAX_DATAGRAM : (size_t)size;
  u->receiving = 1;
  if (ms > 0) uv_timer_start(&u->timer, udp_timer_cb, (uint64_t)ms, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- sending ---- */

typedef struct send_req {
  uv_udp_send_t req;
  char data[];              /* the datagram's copy, alive until sent */
} send_req;

static void udp_send_cb(uv_udp_send_t *req, int status) {
  (void)status;  /* a datagram that could not leave is lost, as the network may lose it */
  free(req);
}

/* u:send(datagram) -> true | nil, err, name. Sent at once when the socket can take it, else
 * queued (the datagram copied) and sent when it can. */
static int m_send(lua_State *L) {
  lc_udp *u = lc_handle_check(L, 1, MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (u->closing) return lc_push_fail(L, 0, "closed");
  if (len > MAX_DATAGRAM) return lc_push_fail(L, UV_EMSGSIZE, "%s", uv_strerror(UV_EMSGSIZE));
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_udp_try_send(&u->udp, &b, 1, NULL);
  if (r >= 0) {
    if ((size_t)r != len) return lc_push_fail(L, 0, "partial write");
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != UV_EAGAIN && r != UV_ENOSYS) return lc_push_fail(L, r, "%s", uv_strerror(r));
  send_req *s = malloc(sizeof *s + len);
  if (s == NULL) return lc_push_fail(L, 0, "no memory");
  memcpy(s->data, data, len);
  b = uv_buf_init(s->data, (unsigned)len);
  r = uv_udp_send(&s->req, &u->udp, &b, 1, NULL, udp_send_cb);
  if (r != 0) {
    free(s);
    return lc_push_fail(L, r, "%s", uv_strerror(r));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- the socket ---- */

/* u:connect(ip, port): the peer of every send and receive (an IP literal) -> true | nil, err */
static int m_connect(lua_State *L) {
  lc_udp *u = lc_handle_check(L, 1, MT);
  const char *ip = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  luaL_argcheck(L, port >= 0 && port <= 65535, 3, "a port 0-65535");
  if (u->closing) return lc_push_fail(L, 0, "closed");
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int r = strchr(ip, ':') ? uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&ss)
                          : uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&ss);
  if (r != 0) return lc_push_fail(L, r, "bad address");
  r = uv_udp_connect(&u->udp, (const struct sockaddr *)&ss);
  if (r != 0) return lc_push_fail(L, r, "%s", uv_strerror(r));
  lua_pushboolean(L, 1);
  return 1;
}

static int m_close(lua_State *L) {
  lc_udp *u = lc_handle_test(L, 1, MT);
  if (u) udp_close(u);
  return 0;
}

/* core.udp_new() -> an unconnected UDP socket */
static int f_udp_new(lua_State *L) {
  lc_udp *u = lc_handle_new(L, sizeof *u, MT);
  int r = uv_udp_init(&u->base.rt->loop, &u->udp);
  if (r != 0) {  /* never opened: nothing to close */
    lc_handle_release(&u->base);
    free(u);
    return luaL_error(L, "uv_udp_init: %s", uv_strerror(r));
  }
  u->udp.data = u;
  u->open_handles = 1;
  r = uv_timer_init(&u->base.rt->loop, &u->timer);
  if (r != 0) {  /* the socket closes alone, and frees u */
    u->closing = 1;
    uv_close((uv_handle_t *)&u->udp, udp_close_cb);
    return luaL_error(L, "uv_timer_init: %s", uv_strerror(r));
  }
  u->timer.data = u;
  u->open_handles = 2;
  return 1;
}

void lc_open_udp(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"connect", m_connect}, {"send", m_send}, {"recv", m_recv}, {"close", m_close},
    {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  static const luaL_Reg fns[] = {
    {"udp_new", f_udp_new},
    {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
}
