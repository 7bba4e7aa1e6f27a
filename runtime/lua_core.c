/* lua_core.c: the luacluster.core module: the C runtime as one Lua table.
 * The executable preloads it; the build also makes it a loadable module
 * (luacluster/core.so) so specs can drive the same code from plain luajit. */
#include "lc.h"
#include "bindings.h"

int luaopen_luacluster_core(lua_State *L) {
  lc_rt_open(L);
  lua_newtable(L);
  lc_open_rt(L);
  lc_open_os(L);
  lc_open_ipc(L);
  lc_open_ps(L);
  lc_open_process(L);
  lc_open_timer(L);
  lc_open_signal(L);
  lc_open_stream(L);
  lc_open_unix_socket(L);
  lc_open_tcp(L);
  lc_open_udp(L);
  lc_open_dispatch(L);
  lc_open_http(L);
  lc_open_conn(L);
  lc_open_conn_tls(L);
  lc_open_tls_server(L);
  lc_open_resolve(L);
  lc_open_http_client(L);
  lc_open_fswatch(L);
  lc_open_protect(L);
  lc_open_log(L);
  lc_open_access_log(L);
  lc_open_notify(L);
  lc_open_regex(L);
  lc_open_digest(L);
  lc_open_uri_escape(L);
  lc_open_shdict(L);
  lua_pushlightuserdata(L, NULL);  /* core.null: the NULL light userdata (ngx.null, cjson.null) */
  lua_setfield(L, -2, "null");
  return 1;
}
