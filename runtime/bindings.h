/* bindings.h: the functions with which each file registers its bindings into the core module
 * table on the top of the stack; lua_core.c calls them all, in this order. */
#ifndef LC_BINDINGS_H
#define LC_BINDINGS_H

#include <lua.h>

void lc_open_rt(lua_State *L);           /* rt.c: run, stop, now, version */
void lc_open_os(lua_State *L);           /* os.c */
void lc_open_ipc(lua_State *L);          /* ipc.c */
void lc_open_ps(lua_State *L);           /* ps_route.c, ws_fanout.c */
void lc_open_process(lua_State *L);      /* process.c */
void lc_open_timer(lua_State *L);        /* timer.c */
void lc_open_signal(lua_State *L);       /* signal.c */
void lc_open_stream(lua_State *L);       /* stream.c */
void lc_open_unix_socket(lua_State *L);  /* unix_socket.c */
void lc_open_tcp(lua_State *L);          /* tcp.c */
void lc_open_udp(lua_State *L);          /* udp.c: connected UDP sockets (ngx.socket.udp) */
void lc_open_dispatch(lua_State *L);     /* dispatch.c: sink_new */
void lc_open_http(lua_State *L);         /* http_lua.c */
void lc_open_conn(lua_State *L);         /* conn.c: conn_new (outbound sockets) */
void lc_open_tls_server(lua_State *L);   /* tls_lua.c: tls_server_new, tls_ticket_keys (TLS servers) */
void lc_open_conn_tls(lua_State *L);     /* conn_tls.c: conn_tls, conn_tls_info (TLS on outbound sockets) */
void lc_open_resolve(lua_State *L);      /* resolve.c: resolve */
void lc_open_http_client(lua_State *L);  /* http_client_lua.c: http_response */
void lc_open_fswatch(lua_State *L);      /* fswatch.c */
void lc_open_protect(lua_State *L);      /* protect.c */
void lc_open_log(lua_State *L);          /* log.c */
void lc_open_access_log(lua_State *L);   /* access_log.c */
void lc_open_notify(lua_State *L);       /* notify.c */
void lc_open_regex(lua_State *L);        /* regex.c: PCRE2 for luacluster.ngx's ngx.re */
void lc_open_digest(lua_State *L);       /* digest.c: md5, sha1, base64 */
void lc_open_uri_escape(lua_State *L);   /* uri_escape.c: ngx.escape_uri's sets */
void lc_open_shdict(lua_State *L);       /* shdict_lua.c: shared dictionaries */

#endif
