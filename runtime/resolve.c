/* resolve.c: names to addresses, as the system resolves them (/etc/hosts, then DNS: getaddrinfo),
 * on libuv's thread pool so that the loop never waits for a lookup (net.resolve, net.connect).
 * Owns: each lookup (heap: its uv_getaddrinfo_t, the name, the callback's registry reference, a
 * retry timer made only when Lua had no memory for the answer), freed once its callback has run
 * (lookup_done). An IP literal is answered at once, without a lookup and without the callback.
 * Failures are nil, "NAME: reason" (uv_strerror's text, which is getaddrinfo's), "UV_E..." */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define RETRY_FIRST_MS 25
#define RETRY_MAX_MS 2000

typedef struct lookup {
  uv_getaddrinfo_t req;
  lc_rt *rt;
  int cb_ref, status;
  struct addrinfo *res;
  uv_timer_t *retry;        /* made when the answer could not be built (out of memory) */
  uint64_t delay;
  char name[];
} lookup;

/* pushes { address, ... } for an addrinfo list: each address once, in getaddrinfo's order */
static void push_addresses(lua_State *L, const struct addrinfo *res) {
  lua_newtable(L);
  int n = 0;
  for (const struct addrinfo *a = res; a; a = a->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    int r;
    if (a->ai_family == AF_INET)
      r = uv_ip4_name((const struct sockaddr_in *)a->ai_addr, ip, sizeof ip);
    else if (a->ai_family == AF_INET6)
      r = uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, ip, sizeof ip);
    else
      continue;
    if (r != 0) continue;
    int seen = 0;
    for (int i = 1; i <= n && !seen; i++) {
      lua_rawgeti(L, -1, i);
      seen = strcmp(lua_tostring(L, -1), ip) == 0;
      lua_pop(L, 1);
    }
    if (seen) continue;
    lua_pushstring(L, ip);
    lua_rawseti(L, -2, ++n);
  }
}

/* run by lc_call_with, protected: cb({ address, ... }) or cb(nil, "name: reason", "UV_E...") */
static int resolve_push(lua_State *L, void *ud) {
  lookup *q = ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, q->cb_ref);
  if (q->status == 0 && q->res == NULL) q->status = UV_EAI_NODATA;
  if (q->status != 0) return lc_push_fail(L, q->status, "%s: %s", q->name, uv_strerror(q->status));
  push_addresses(L, q->res);
  if (lua_objlen(L, -1) == 0) {
    lua_pop(L, 1);
    return lc_push_fail(L, UV_EAI_NODATA, "%s: %s", q->name, uv_strerror(UV_EAI_NODATA));
  }
  return 1;
}

static void resolve_retry_cb(uv_timer_t *timer);

/* calls the lookup's callback, then frees it; an answer Lua had no memory for is tried again
 * later (a coroutine waits on it), never dropped while a retry can be armed */
static void lookup_done(lookup *q) {
  if (lc_call_with(q->rt, resolve_push, q) > 0) {
    if (q->retry == NULL && (q->retry = malloc(sizeof *q->retry)) != NULL) {
      if (uv_timer_init(&q->rt->loop, q->retry) != 0) { free(q->retry); q->retry = NULL; }
      else { q->retry->data = q; q->delay = RETRY_FIRST_MS; }
    }
    if (q->retry) {
      uv_timer_start(q->retry, resolve_retry_cb, q->delay, 0);
      q->delay = q->delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : q->delay * 2;
      return;
    }
    lc_log(q->rt, "error: resolve: the answer for %s could not be delivered (out of memory); it never will be", q->name);
  }
  if (q->retry) uv_close((uv_handle_t *)q->retry, lc_free_handle_cb);
  if (q->res) uv_freeaddrinfo(q->res);
  luaL_unref(q->rt->L, LUA_REGISTRYINDEX, q->cb_ref);
  free(q);
}

static void resolve_retry_cb(uv_timer_t *timer) { lookup_done(timer->data); }

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lookup *q = (lookup *)req;
  q->status = status;
  q->res = res;
  lookup_done(q);
}

/* 1 and the literal pushed as { ip } when name is an IPv4 or IPv6 address, else 0 */
static int push_literal(lua_State *L, const char *name) {
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (uv_ip4_addr(name, 0, &a4) != 0 && uv_ip6_addr(name, 0, &a6) != 0) return 0;
  lua_createtable(L, 1, 0);
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 1);
  return 1;
}

/* core.resolve(name, cb) -> { ip } at once for an IP literal (cb is not called), else true and
 * later cb({ address, ... }) or cb(nil, "name: reason", "UV_E..."); nil, err when it cannot start */
static int f_resolve(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (push_literal(L, name)) return 1;
  if (len == 0 || len > 253 || memchr(name, '\0', len))
    return lc_push_fail(L, UV_EINVAL, "%s: %s", name, "not a host name");
  lua_pushvalue(L, 2);
  int cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* (what can raise comes before the allocation) */
  lookup *q = calloc(1, sizeof *q + len + 1);
  if (q == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    return lc_push_error(L, UV_ENOMEM);
  }
  q->rt = rt;
  q->cb_ref = cb_ref;
  memcpy(q->name, name, len + 1);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;       /* IPv4 and IPv6, in the order the system prefers */
  hints.ai_socktype = SOCK_STREAM;   /* one entry per address */
  int r = uv_getaddrinfo(&rt->loop, &q->req, resolve_cb, q->name, NULL, &hints);
  if (r != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    free(q);
    return lc_push_fail(L, r, "%s: %s", name, uv_strerror(r));
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lc_open_resolve(lua_State *L) {
  lua_pushcfunction(L, f_resolve);
  lua_setfield(L, -2, "resolve");
}
