/* tls_lua.h: the tls_server userdata of tls_lua.c, for the servers that take one */
#ifndef LC_TLS_LUA_H
#define LC_TLS_LUA_H
#include <lua.h>
struct lc_tls_server;
struct lc_tls_server *lc_tls_server_check(lua_State *L, int idx);   /* raises */
#endif
