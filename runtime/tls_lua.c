/* tls_lua.c: the Lua face of TLS servers (the HTTP and net servers' opts.tls, and the master's
 * session ticket keys). Owns the tls_server userdata (one lc_tls_server reference, let go by
 * __gc: the servers that use it hold their own) and makes the runtime's ticket key ring
 * (rt->tls_tickets, let go by rt.c's rt_gc) and its lc_tls_store when first needed.
 *   core.tls_server_new({ {cert=, key=, server_name=}, ... }, alpn_http) -> ud | nil, err
 *   core.tls_ticket_keys(keys [, lifetime]): keys is N * 80 bytes (1 <= N <= 8); raises on a bad
 *   length; lifetime (1 to 604800 seconds): that of every ticket made from now on */
#include "lc.h"
#include "bindings.h"
#include "tls.h"
#include "tls_tickets.h"
#include "tls_lua.h"

#include <stdio.h>
#include <string.h>

#define MT "luacluster.tls_server"
#define MAX_CERTS 64

typedef struct tls_server_box { lc_tls_server *srv; } tls_server_box;

lc_tls_server *lc_tls_server_check(lua_State *L, int idx) {
  tls_server_box *b = luaL_checkudata(L, idx, MT);
  if (b->srv == NULL) luaL_error(L, "tls server context already freed");
  return b->srv;
}

static lc_tls_tickets *rt_tickets(lc_rt *rt) {
  if (rt->tls_tickets == NULL) rt->tls_tickets = lc_tls_tickets_new();
  return rt->tls_tickets;
}

static int ts_gc(lua_State *L) {
  tls_server_box *b = luaL_checkudata(L, 1, MT);
  lc_tls_server_free(b->srv);
  b->srv = NULL;
  return 0;
}

static int f_tls_server_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int alpn = lua_toboolean(L, 2);
  size_t n = lua_objlen(L, 1);
  if (n == 0 || n > MAX_CERTS) return luaL_error(L, "tls: 1 to %d certificates", MAX_CERTS);
  luaL_checkstack(L, (int)(4 * n + 8), "tls: too many certificates");
  lc_tls_cert certs[MAX_CERTS];
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (int)i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_getfield(L, -1, "cert");
    lua_getfield(L, -2, "key");
    lua_getfield(L, -3, "server_name");
    certs[i].cert = luaL_checkstring(L, -3);
    certs[i].key = luaL_checkstring(L, -2);
    certs[i].server_name = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    /* the strings stay on the stack (the table holds them too) until the load is done */
  }
  lc_rt *rt = lc_rt_get(L);
  if (rt->tls_store == NULL && (rt->tls_store = lc_tls_store_new()) == NULL) return lc_push_fail(L, UV_ENOMEM, "tls: out of memory");
  lc_tls_tickets *tk = rt_tickets(rt);
  if (tk == NULL) return lc_push_fail(L, UV_ENOMEM, "tls: out of memory");
  tls_server_box *b = lua_newuserdata(L, sizeof *b);
  b->srv = NULL;
  luaL_getmetatable(L, MT);
  lua_setmetatable(L, -2);
  char err[1024];
  b->srv = lc_tls_server_new(rt->tls_store, tk, certs, n, alpn, err, sizeof err);
  if (b->srv == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int f_tls_ticket_keys(lua_State *L) {
  size_t len;
  const char *keys = luaL_checklstring(L, 1, &len);
  if (len == 0 || len % LC_TLS_TICKET_KEY_SIZE != 0 || len / LC_TLS_TICKET_KEY_SIZE > LC_TLS_TICKET_KEYS_MAX)
    return luaL_error(L, "tls_ticket_keys: keys must be 1 to %d records of %d bytes (got %d bytes)",
                      LC_TLS_TICKET_KEYS_MAX, LC_TLS_TICKET_KEY_SIZE, (int)len);
  lua_Number lifetime = luaL_optnumber(L, 2, 0);
  if (!lua_isnoneornil(L, 2) && !(lifetime >= 1 && lifetime <= 7 * 24 * 3600))
    return luaL_error(L, "tls_ticket_keys: lifetime must be 1 to 604800 seconds (TLS 1.3's longest)");
  lc_rt *rt = lc_rt_get(L);
  /* a worker gets the keys when it starts, TLS app or not: the first ring is made from them */
  if (rt->tls_tickets == NULL) {
    rt->tls_tickets = lc_tls_tickets_new_keys((const unsigned char *)keys, len);
    if (rt->tls_tickets == NULL) return luaL_error(L, "tls_ticket_keys: out of memory");
  } else {
    (void)lc_tls_tickets_set(rt->tls_tickets, (const unsigned char *)keys, len);
  }
  if (lifetime > 0) lc_tls_tickets_set_lifetime(rt->tls_tickets, (long)lifetime);
  return 0;
}

void lc_open_tls_server(lua_State *L) {
  if (luaL_newmetatable(L, MT)) {
    lua_pushcfunction(L, ts_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, f_tls_server_new);
  lua_setfield(L, -2, "tls_server_new");
  lua_pushcfunction(L, f_tls_ticket_keys);
  lua_setfield(L, -2, "tls_ticket_keys");
}

static void set_string(lua_State *L, const char *k, const char *v, size_t len) {
  if (v == NULL) return;
  lua_pushlstring(L, v, len);
  lua_setfield(L, -2, k);
}

void lc_tls_push_info(lua_State *L, const lc_tls *t) {
  lua_createtable(L, 0, 5);
  const char *s = lc_tls_protocol(t);
  set_string(L, "protocol", s, s ? strlen(s) : 0);
  s = lc_tls_cipher(t);
  set_string(L, "cipher", s, s ? strlen(s) : 0);
  s = lc_tls_server_name(t);
  set_string(L, "server_name", s, s ? strlen(s) : 0);
  size_t alen = 0;
  s = lc_tls_alpn(t, &alen);
  set_string(L, "alpn", s, alen);
  lua_pushboolean(L, lc_tls_resumed(t));
  lua_setfield(L, -2, "session_reused");
}
