/* signal.c: uv_signal_t bound to Lua. Owns the signal handle; freed in signal_close_cb.
 * The callback gets the signal's name ("SIGTERM"). Signal handles are unreferenced by
 * default: waiting for a signal alone does not keep a process alive. */
#include "lc.h"
#include "bindings.h"
#include "signal_names.h"

#include <signal.h>
#include <stdlib.h>

#define MT "luacluster.signal"

typedef struct lc_signal {
  lc_handle_base base;
  uv_signal_t sig;
  int closing;
} lc_signal;

static void signal_close_cb(uv_handle_t *h) {
  lc_signal *s = h->data;
  lc_handle_release(&s->base);
  free(s);
}

static void signal_cb(uv_signal_t *handle, int signum) {
  lc_signal *s = handle->data;
  const char *name = lc_signame(signum);
  lc_call_cb_str(&s->base, name ? name : "SIG?", NULL);
}

/* core.signal_new(name, cb) -> handle | nil, err */
static int f_signal_new(lua_State *L) {
  int signum = lc_signum(luaL_checkstring(L, 1));
  if (signum == 0) return luaL_error(L, "unknown signal '%s'", lua_tostring(L, 1));
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_signal *s = lc_handle_new(L, sizeof *s, MT);
  lc_handle_set_cb(L, &s->base, 2);
  int r = uv_signal_init(&s->base.rt->loop, &s->sig);
  if (r != 0) {  /* never opened: nothing to close */
    lc_handle_release(&s->base);
    free(s);
    return lc_push_error(L, r);
  }
  s->sig.data = s;
  r = uv_signal_start(&s->sig, signal_cb, signum);
  if (r != 0) {
    s->closing = 1;
    uv_close((uv_handle_t *)&s->sig, signal_close_cb);
    return lc_push_error(L, r);
  }
  uv_unref((uv_handle_t *)&s->sig);
  return 1;
}

static int m_close(lua_State *L) {
  lc_signal *s = lc_handle_test(L, 1, MT);
  if (s == NULL || s->closing) return 0;
  s->closing = 1;
  uv_close((uv_handle_t *)&s->sig, signal_close_cb);
  return 0;
}

/* core.signal_default(name): restore the default action and raise it on ourselves,
 * so our parent sees the signal as the cause of death. */
static int f_signal_default(lua_State *L) {
  int signum = lc_signum(luaL_checkstring(L, 1));
  if (signum == 0) return luaL_error(L, "unknown signal '%s'", lua_tostring(L, 1));
  signal(signum, SIG_DFL);
  if (lua_toboolean(L, 2)) raise(signum);
  return 0;
}

static int f_signal_ignore(lua_State *L) {
  int signum = lc_signum(luaL_checkstring(L, 1));
  if (signum == 0) return luaL_error(L, "unknown signal '%s'", lua_tostring(L, 1));
  signal(signum, SIG_IGN);
  return 0;
}

static int f_signum(lua_State *L) {
  int n = lc_signum(luaL_checkstring(L, 1));
  if (n == 0) return 0;
  lua_pushinteger(L, n);
  return 1;
}

static int f_signame(lua_State *L) {
  const char *s = lc_signame((int)luaL_checkinteger(L, 1));
  if (s == NULL) return 0;
  lua_pushstring(L, s);
  return 1;
}

void lc_open_signal(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", m_close}, {NULL, NULL}};
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_signal_new);
  lua_setfield(L, -2, "signal_new");
  lua_pushcfunction(L, f_signal_default);
  lua_setfield(L, -2, "signal_default");
  lua_pushcfunction(L, f_signal_ignore);
  lua_setfield(L, -2, "signal_ignore");
  lua_pushcfunction(L, f_signum);
  lua_setfield(L, -2, "signum");
  lua_pushcfunction(L, f_signame);
  lua_setfield(L, -2, "signame");
}
