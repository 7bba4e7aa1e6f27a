/* timer.c: uv_timer_t bound to Lua. Owns the timer handle; freed in timer_close_cb.
 * A timer calls its Lua callback with no arguments; timer.lua runs it in a coroutine. */
#include "lc.h"
#include "bindings.h"

#include <stdlib.h>

#define MT "luacluster.timer"

typedef struct lc_timer {
  lc_handle_base base;
  uv_timer_t timer;
  int closing;
} lc_timer;

static void timer_close_cb(uv_handle_t *h) {
  lc_timer *t = h->data;
  lc_handle_release(&t->base);
  free(t);
}

static int timer_push_cb(lua_State *L, void *ud) {
  (void)L;
  return lc_handle_push_cb(ud) ? 0 : -1;
}

static void timer_cb(uv_timer_t *handle) {
  lc_timer *t = handle->data;
  lc_call_with(t->base.rt, timer_push_cb, &t->base);
}

static int f_timer_new(lua_State *L) {
  lc_timer *t = lc_handle_new(L, sizeof *t, MT);
  lc_handle_set_cb(L, &t->base, 1);
  int r = uv_timer_init(&t->base.rt->loop, &t->timer);
  if (r != 0) {  /* never opened: nothing to close */
    lc_handle_release(&t->base);
    free(t);
    return luaL_error(L, "uv_timer_init: %s", uv_strerror(r));
  }
  t->timer.data = t;
  return 1;
}

/* a delay in ms as libuv takes it: past what uint64_t holds (math.huge, 1e20) is "never" (libuv
 * saturates loop time + UINT64_MAX), where a plain cast was undefined and fired at once */
static uint64_t ms_of(lua_Number ms) {
  return ms >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)ms;
}

static int m_start(lua_State *L) {
  lc_timer *t = lc_handle_check(L, 1, MT);
  lua_Number timeout = luaL_checknumber(L, 2);
  lua_Number repeat = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, timeout >= 0, 2, "negative timeout");
  luaL_argcheck(L, repeat >= 0, 3, "negative repeat");
  uv_timer_start(&t->timer, timer_cb, ms_of(timeout), ms_of(repeat));
  return 0;
}

static int m_stop(lua_State *L) {
  lc_timer *t = lc_handle_test(L, 1, MT);
  if (t) uv_timer_stop(&t->timer);
  return 0;
}

static int m_close(lua_State *L) {
  lc_timer *t = lc_handle_test(L, 1, MT);
  if (t == NULL || t->closing) return 0;
  t->closing = 1;
  uv_close((uv_handle_t *)&t->timer, timer_close_cb);
  return 0;
}

static int m_unref(lua_State *L) {
  lc_timer *t = lc_handle_check(L, 1, MT);
  uv_unref((uv_handle_t *)&t->timer);
  return 0;
}

static int m_active(lua_State *L) {
  lc_timer *t = lc_handle_test(L, 1, MT);
  lua_pushboolean(L, t && !t->closing && uv_is_active((uv_handle_t *)&t->timer));
  return 1;
}

void lc_open_timer(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"start", m_start}, {"stop", m_stop}, {"close", m_close}, {"unref", m_unref},
    {"active", m_active}, {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_timer_new);
  lua_setfield(L, -2, "timer_new");
}
