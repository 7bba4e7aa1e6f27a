/* fswatch.c: file system watches (uv_fs_event_t) for --watch. Owns the watch handle;
 * freed in fswatch_close_cb. The callback gets the changed file's name (relative to the watched
 * folder). Watches do not keep a process alive by themselves. */
#include "lc.h"
#include "bindings.h"

#include <stdlib.h>

#define MT "luacluster.fswatch"

typedef struct lc_fswatch {
  lc_handle_base base;
  uv_fs_event_t ev;
  int closing;
} lc_fswatch;

static void fswatch_close_cb(uv_handle_t *h) {
  lc_fswatch *w = h->data;
  lc_handle_release(&w->base);
  free(w);
}

static void fswatch_event_cb(uv_fs_event_t *ev, const char *filename, int events, int status) {
  lc_fswatch *w = ev->data;
  (void)events;
  if (status != 0) return;
  lc_call_cb_str(&w->base, filename ? filename : "", NULL);
}

/* core.fswatch(path, cb) -> watch | nil, err */
static int f_fswatch(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_fswatch *w = lc_handle_new(L, sizeof *w, MT);
  lc_handle_set_cb(L, &w->base, 2);
  int r = uv_fs_event_init(&w->base.rt->loop, &w->ev);
  if (r != 0) {  /* never opened: nothing to close */
    lc_handle_release(&w->base);
    free(w);
    return lc_push_error(L, r);
  }
  w->ev.data = w;
  r = uv_fs_event_start(&w->ev, fswatch_event_cb, path, 0);
  if (r != 0) {
    w->closing = 1;
    uv_close((uv_handle_t *)&w->ev, fswatch_close_cb);
    return lc_push_error(L, r);
  }
  uv_unref((uv_handle_t *)&w->ev);
  return 1;
}

static int m_close(lua_State *L) {
  lc_fswatch *w = lc_handle_test(L, 1, MT);
  if (w == NULL || w->closing) return 0;
  w->closing = 1;
  uv_close((uv_handle_t *)&w->ev, fswatch_close_cb);
  return 0;
}

void lc_open_fswatch(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", m_close}, {NULL, NULL}};
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_fswatch);
  lua_setfield(L, -2, "fswatch");
}
