/* tls_lua.h: the tls_server userdata of tls_lua.c, for the servers that take one, and a
 * session's facts as a Lua table */
#ifndef LC_TLS_LUA_H
#define LC_TLS_LUA_H
#include <lua.h>
struct lc_tls_server;
struct lc_tls_server *lc_tls_server_check(lua_State *L, int idx);   /* raises */
struct lc_tls;
/* pushes a session's facts once its handshake is done: { protocol, cipher, server_name,
 * session_reused [, alpn] } (server_name and alpn only when there is one); the tls_info of
 * outbound sockets (conn_tls.c) and of accepted net sockets (tcp.c) */
void lc_tls_push_info(lua_State *L, const struct lc_tls *t);
#endif
