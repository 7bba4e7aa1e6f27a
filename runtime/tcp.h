/* tcp.h: TCP sockets and listeners bound to Lua (tcp.c). */
#ifndef LC_TCP_H
#define LC_TCP_H

#include <uv.h>
#include <lua.h>

typedef struct lc_rt lc_rt;
typedef struct lc_handle_base lc_handle_base;

uv_tcp_t *lc_tcp_listener(lua_State *L, int idx);    /* the uv handle of a listening tcp object */
/* hands a connected socket to a C owner (an HTTP server); NULL when it cannot be moved */
uv_tcp_t *lc_tcp_detach(lua_State *L, int idx);
/* makes take(ctx, conn) the taker of a listener's connections (an HTTP server); 0 or UV_E* */
int lc_tcp_accept_with(lua_State *L, int idx, void (*take)(void *ctx, uv_tcp_t *conn), void *ctx);
/* a handle received over IPC becomes a Lua tcp object (pushed) */
int lc_tcp_push_received(lua_State *L, lc_rt *rt, uv_stream_t *accepted, int is_server);
uv_stream_t *lc_tcp_stream_for_send(lua_State *L, int idx, int *is_server);
/* owner's callback gets conn as a Lua socket; closed when no callback can take it */
void lc_tcp_give_conn(lc_handle_base *owner, uv_tcp_t *conn);
struct sockaddr_storage;
/* pushes ip, port of an address (the peer's or our own) */
int lc_tcp_push_addr(lua_State *L, const struct sockaddr_storage *ss);
void lc_open_tcp(lua_State *L);

#endif
