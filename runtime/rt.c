/* rt.c: the per-Lua-state runtime (lc_rt) and the helpers every binding shares.
 * Owns: the uv loop and the flush prepare handle, both inside the lc_rt userdata stored in
 * the Lua registry; the loop is closed by that userdata's __gc (only reached when a spec
 * closes its Lua state; the executable exits with the loop running).
 * Also here: the one place Lua callbacks are called (lc_call, with a traceback on error),
 * the one place libuv errors become Lua values (lc_push_error), the handle box helpers,
 * and small process-level functions (pid, cpu count, rss, environ, exit). */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "ipc.h"
#include "tls.h"
#include "tls_tickets.h"
#include "pubsub.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

static const char RT_KEY[] = "luacluster.rt";

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  lua_getglobal(L, "debug");
  if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_pushstring(L, msg); return 1; }
  lua_getfield(L, -1, "traceback");
  lua_pushstring(L, msg);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

void lc_call(lc_rt *rt, int nargs) {
  lua_State *L = rt->L;
  int base = lua_gettop(L) - nargs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->traceback_ref);
  lua_insert(L, base);
  if (lua_pcall(L, nargs, 0, base) != 0) {
    lc_log(rt, "error: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_remove(L, base);
}

/* The body of lc_call_with, a C function made once (rt->call_ref) and called with lua_pcall
 * (lua_cpcall would allocate a closure per call): everything that allocates (the pushes of the
 * callback's arguments, the pcall's own frame) happens inside this protected call, so an error
 * there (out of memory) comes back as a status instead of unwinding through libuv. */
typedef struct call_ctx { lc_rt *rt; lc_push_fn push; void *ud; int pushed, declined; } call_ctx;

static int protected_call(lua_State *L) {
  call_ctx *c = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->rt->traceback_ref);
  int nargs = c->push(L, c->ud);
  if (nargs < 0) { c->declined = 1; return 0; }
  c->pushed = 1;
  if (lua_pcall(L, nargs, 0, 1) != 0) lc_log(c->rt, "error: %s", lua_tostring(L, -1));
  return 0;
}

int lc_call_with(lc_rt *rt, lc_push_fn push, void *ud) {
  lua_State *L = rt->L;
  call_ctx c = {rt, push, ud, 0, 0};
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->call_ref);
  lua_pushlightuserdata(L, &c);
  int status = lua_pcall(L, 1, 0, 0);
  if (status != 0) {
    const char *msg = lua_tostring(L, -1);
    lc_log(rt, "error: %s (%s)", msg ? msg : "?",
           c.pushed ? "around a callback" : "building a callback's arguments; the callback was not called");
  }
  lua_settop(L, top);
  if (c.pushed) return 0;
  return c.declined ? -1 : (status != 0 ? status : LUA_ERRRUN);
}

typedef struct str_args { lc_handle_base *h; const char *a, *b; } str_args;

static int rt_push_str_args(lua_State *L, void *ud) {
  str_args *s = ud;
  if (!lc_handle_push_cb(s->h)) return -1;
  lua_pushstring(L, s->a);
  if (s->b == NULL) return 1;
  lua_pushstring(L, s->b);
  return 2;
}

int lc_call_cb_str(lc_handle_base *h, const char *a, const char *b) {
  if (h->cb_ref == LUA_NOREF) return 0;
  str_args s = {h, a, b};
  return lc_call_with(h->rt, rt_push_str_args, &s) == 0;
}


/* The one shape of a failure in Lua: nil, message [, code], where code is the name of the
 * negative UV_E* code uverr (left out when uverr is 0). Returns how many values it pushed. */
int lc_push_fail(lua_State *L, int uverr, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  if (uverr == 0) return 2;
  lua_pushstring(L, uv_err_name(uverr));
  return 3;
}

int lc_push_error(lua_State *L, int uverr) {
  return lc_push_fail(L, uverr, "%s: %s", uv_err_name(uverr), uv_strerror(uverr));
}

void lc_free_handle_cb(uv_handle_t *h) { free(h); }

/* ---- handle boxes ---- */

void lc_newmetatable(lua_State *L, const char *name, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* Everything that can raise (the box, the registry reference) comes before the calloc, so a
 * raise leaves nothing behind: a box that reads as closed, collected by the GC. */
void *lc_handle_new(lua_State *L, size_t size, const char *mt) {
  lc_rt *rt = lc_rt_get(L);
  void **box = lua_newuserdata(L, sizeof(void *));
  *box = NULL;
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lc_handle_base *h = calloc(1, size);
  if (h == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, self_ref);
    luaL_error(L, "out of memory");
  }
  *box = h;
  h->rt = rt;
  h->box = box;
  h->cb_ref = LUA_NOREF;
  h->self_ref = self_ref;
  return h;
}

/* The metatable of each handle type, as last seen, so that checking a handle argument (every
 * method call: a send, a respond) compares two pointers instead of looking the type's name up
 * in the registry (luaL_checkudata interns the name each time). A slot is chosen by the address
 * of the type's name (each file's MT literal); a metatable pointer can only match while its Lua
 * state is alive, and rt_gc empties the cache when a state closes. Misses look up as before. */
#define MT_CACHE 32
static struct { const char *name; const void *mt; } mt_cache[MT_CACHE];

static void mt_cache_clear(void) { memset(mt_cache, 0, sizeof mt_cache); }

void *lc_handle_test(lua_State *L, int idx, const char *mt) {
  unsigned slot = (unsigned)(((uintptr_t)mt >> 3) % MT_CACHE);
  void **box = lua_type(L, idx) == LUA_TUSERDATA ? lua_touserdata(L, idx) : NULL;  /* never a light one */
  if (box != NULL && mt_cache[slot].name == mt && lua_getmetatable(L, idx)) {
    const void *have = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (have == mt_cache[slot].mt) return *box;
  }
  box = luaL_checkudata(L, idx, mt);  /* raises with the usual message when it is not one */
  lua_getmetatable(L, idx);
  mt_cache[slot].name = mt;
  mt_cache[slot].mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  return *box;
}

void *lc_handle_check(lua_State *L, int idx, const char *mt) {
  void *h = lc_handle_test(L, idx, mt);
  if (h == NULL) luaL_error(L, "%s is closed", mt);
  return h;
}

void lc_handle_set_cb(lua_State *L, lc_handle_base *h, int idx) {
  if (h->cb_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, h->cb_ref);
  h->cb_ref = LUA_NOREF;
  if (idx != 0 && !lua_isnoneornil(L, idx)) {
    luaL_checktype(L, idx, LUA_TFUNCTION);
    lua_pushvalue(L, idx);
    h->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

int lc_handle_push_cb(lc_handle_base *h) {
  if (h->cb_ref == LUA_NOREF) return 0;
  lua_rawgeti(h->rt->L, LUA_REGISTRYINDEX, h->cb_ref);
  return 1;
}

void lc_handle_release(lc_handle_base *h) {
  lua_State *L = h->rt->L;
  if (h->box) *h->box = NULL;
  h->box = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->self_ref);
  h->cb_ref = h->self_ref = LUA_NOREF;
}

/* ---- the runtime object ---- */

static int rt_gc(lua_State *L) {
  /* Reached only when a Lua state is closed, as the process ends: handles may still be open
   * and hold pointers into the loop, so the loop itself is left to the exit. */
  lc_rt *rt = lua_touserdata(L, 1);
  free(rt->routes);
  rt->routes = NULL;
  lc_ps_free(rt);
  lc_http_free_spares(rt);   /* no Lua value can name a closed connection any more */
  lc_tls_store_free(rt->tls_store);   /* sessions still open keep it until their own end */
  rt->tls_store = NULL;
  lc_tls_tickets_unref(rt->tls_tickets);   /* server contexts still alive keep it */
  rt->tls_tickets = NULL;
  mt_cache_clear();
  rt->nroutes = 0;
  return 0;
}

lc_rt *lc_rt_get(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, RT_KEY);
  lc_rt *rt = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (rt == NULL) luaL_error(L, "luacluster runtime not initialised");
  return rt;
}

int lc_rt_open(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, RT_KEY);
  int exists = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (exists) return 0;
  lc_rt *rt = lua_newuserdata(L, sizeof *rt);
  memset(rt, 0, sizeof *rt);
  int r = uv_loop_init(&rt->loop);
  if (r != 0) return luaL_error(L, "uv_loop_init: %s", uv_strerror(r));
  /* the main thread: callbacks must not run on whichever coroutine opened the module */
  lua_pushthread(L);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  rt->L = main;
  lua_pushcfunction(L, traceback);
  rt->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, protected_call);
  rt->call_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  lua_pushcfunction(L, rt_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, RT_KEY);
  r = lc_wq_flusher_init(&rt->loop, &rt->flusher);
  if (r != 0) return luaL_error(L, "uv_prepare_init: %s", uv_strerror(r));
  /* a peer that goes away must be an error on a write, never a signal that kills us */
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

/* ---- the loop ---- */

static int f_run(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  const char *mode = luaL_optstring(L, 1, "default");
  uv_run_mode m = strcmp(mode, "once") == 0 ? UV_RUN_ONCE : strcmp(mode, "nowait") == 0 ? UV_RUN_NOWAIT : UV_RUN_DEFAULT;
  lua_pushboolean(L, uv_run(&rt->loop, m));
  return 1;
}

static int f_stop(lua_State *L) { uv_stop(&lc_rt_get(L)->loop); return 0; }
static int f_now(lua_State *L) { lua_pushnumber(L, (lua_Number)uv_now(&lc_rt_get(L)->loop)); return 1; }
void lc_open_rt(lua_State *L) {
  static const luaL_Reg fns[] = {{"run", f_run}, {"stop", f_stop}, {"now", f_now}, {NULL, NULL}};
  luaL_register(L, NULL, fns);
  lua_pushstring(L, LC_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
}
