/* process.c: child processes (uv_spawn) for workers, forked scripts and child_process.spawn.
 * Owns: the uv_process_t and the argv/env arrays built for the spawn (freed before returning).
 * The stdio pipes and the IPC channel passed in belong to their own Lua objects (stream.c,
 * ipc.c) or, for a "[worker N] " line forwarder, to prefix code in stream.c.
 * The exit callback reports (code, signal name) to Lua, then the handle is closed and freed.
 * Also here, for the child's side: set_parent_death_signal (a forked child ends with its
 * parent, Linux's PR_SET_PDEATHSIG; no handle, nothing to free). */
#include "lc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MT "luacluster.process"
#define MT_IPC "luacluster.ipc"
#define MT_STREAM "luacluster.stream"

typedef struct lc_proc {
  lc_handle_base base;
  uv_process_t proc;
  int exited;
} lc_proc;

static void close_cb(uv_handle_t *h) {
  lc_proc *p = h->data;
  lc_handle_release(&p->base);
  free(p);
}

static void exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
  lc_proc *p = proc->data;
  lc_rt *rt = p->base.rt;
  p->exited = 1;
  if (lc_handle_push_cb(&p->base)) {
    if (term_signal) {
      lua_pushnil(rt->L);
      const char *name = lc_signame(term_signal);
      if (name) lua_pushstring(rt->L, name);
      else lua_pushfstring(rt->L, "SIG%d", term_signal);
    } else {
      lua_pushinteger(rt->L, (lua_Integer)status);
      lua_pushnil(rt->L);
    }
    lc_call(rt, 2);
  }
  uv_close((uv_handle_t *)proc, close_cb);
}

static char **string_array(lua_State *L, int idx, const char *first) {
  int n = (int)lua_objlen(L, idx);
  int extra = first ? 1 : 0;
  char **a = calloc((size_t)(n + extra + 1), sizeof *a);
  if (a == NULL) return NULL;
  if (first) a[0] = (char *)first;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    a[i - 1 + extra] = (char *)lua_tostring(L, -1);  /* anchored by the table */
    lua_pop(L, 1);
    if (a[i - 1 + extra] == NULL) { free(a); return NULL; }
  }
  return a;
}

/* core.spawn{ file=, args={...}, env={"K=V",...}, cwd=, detached=, stdio={...} }, on_exit
 * stdio[i] (fd i-1): "ignore" | "inherit" | stream box | ipc box | {prefix=, fd=}
 * -> process | nil, err, ename */
static int f_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_rt *rt = lc_rt_get(L);
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "file");
  o.file = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "args");
  luaL_checktype(L, -1, LUA_TTABLE);
  char **args = string_array(L, lua_gettop(L), o.file);
  lua_getfield(L, 1, "env");
  char **env = lua_istable(L, -1) ? string_array(L, lua_gettop(L), NULL) : NULL;
  if (lua_istable(L, -1) && env == NULL) { free(args); return luaL_error(L, "spawn: env entries must be strings"); }
  lua_getfield(L, 1, "cwd");
  o.cwd = lua_tostring(L, -1);
  lua_getfield(L, 1, "detached");
  if (lua_toboolean(L, -1)) o.flags |= UV_PROCESS_DETACHED;
  lua_getfield(L, 1, "stdio");
  int sidx = lua_gettop(L);
  uv_stdio_container_t stdio[8];
  int nstdio = lua_istable(L, sidx) ? (int)lua_objlen(L, sidx) : 0;
  if (args == NULL || nstdio > 8) { free(args); free(env); return luaL_error(L, "spawn: bad args or stdio"); }
  for (int i = 0; i < nstdio; i++) {
    lua_rawgeti(L, sidx, i + 1);
    uv_stdio_container_t *c = &stdio[i];
    void **box;
    if (lua_isstring(L, -1)) {
      const char *s = lua_tostring(L, -1);
      if (strcmp(s, "inherit") == 0) { c->flags = UV_INHERIT_FD; c->data.fd = i; }
      else c->flags = UV_IGNORE;
    } else if ((box = luaL_testudata(L, -1, MT_IPC)) != NULL && *box) {
      c->flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
      c->data.stream = (uv_stream_t *)lc_ipc_pipe(*box);
    } else if ((box = luaL_testudata(L, -1, MT_STREAM)) != NULL && *box) {
      c->flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      c->data.stream = (uv_stream_t *)lc_stream_pipe(*box);
    } else if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "prefix");
      lua_getfield(L, -2, "fd");
      lc_stream *s = lc_prefix_new(rt, (int)luaL_optinteger(L, -1, i), luaL_checkstring(L, -2));
      lua_pop(L, 2);
      if (s == NULL) { free(args); free(env); return lc_push_error(L, UV_ENOMEM); }
      c->flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
      c->data.stream = (uv_stream_t *)lc_stream_pipe(s);
    } else {
      free(args); free(env);
      return luaL_error(L, "spawn: bad stdio entry %d", i + 1);
    }
    lua_pop(L, 1);
  }
  o.stdio = stdio;
  o.stdio_count = nstdio;
  o.args = args;
  o.env = env;
  o.exit_cb = exit_cb;

  lc_proc *p = lc_handle_new(L, sizeof *p, MT);
  lc_handle_set_cb(L, &p->base, 2);
  p->proc.data = p;
  int r = uv_spawn(&rt->loop, &p->proc, &o);
  free(args);
  free(env);
  if (r != 0) {
    p->exited = 1;
    uv_close((uv_handle_t *)&p->proc, close_cb);
    /* the line forwarders made above belong to C: nobody else will close them */
    for (int i = 1; i < nstdio; i++) {
      if (!(stdio[i].flags & UV_CREATE_PIPE)) continue;
      uv_pipe_t *pipe = (uv_pipe_t *)stdio[i].data.stream;
      if (!pipe->ipc) lc_stream_close_if_prefix(pipe->data);
    }
    return lc_push_error(L, r);
  }
  /* start reading the pipes that were just created (a child's stdin is only written) */
  for (int i = 1; i < nstdio; i++) {
    if (!(stdio[i].flags & UV_CREATE_PIPE)) continue;
    uv_pipe_t *pipe = (uv_pipe_t *)stdio[i].data.stream;
    if (pipe->ipc) lc_ipc_start(pipe->data);
    else lc_stream_start(pipe->data);
  }
  return 1;
}

static int m_pid(lua_State *L) {
  lc_proc *p = lc_handle_check(L, 1, MT);
  lua_pushinteger(L, p->proc.pid);
  return 1;
}

static int m_kill(lua_State *L) {
  lc_proc *p = lc_handle_test(L, 1, MT);
  int sig = lua_isnumber(L, 2) ? (int)lua_tointeger(L, 2) : lc_signum(luaL_optstring(L, 2, "SIGTERM"));
  if (sig == 0 && !lua_isnumber(L, 2)) return luaL_error(L, "unknown signal '%s'", lua_tostring(L, 2));
  if (p == NULL || p->exited) return lc_push_error(L, UV_ESRCH);
  int r = uv_process_kill(&p->proc, sig);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_unref(lua_State *L) {
  lc_proc *p = lc_handle_check(L, 1, MT);
  uv_unref((uv_handle_t *)&p->proc);
  return 0;
}

/* core.set_parent_death_signal(name) -> true | nil, err, ename: this process gets the signal
 * when the thread that started it (its parent's loop) ends. ENOTSUP off Linux. */
static int f_set_parent_death_signal(lua_State *L) {
  int sig = lc_signum(luaL_checkstring(L, 1));
  if (sig == 0) return luaL_error(L, "unknown signal '%s'", lua_tostring(L, 1));
#ifdef __linux__
  if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig) != 0) return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
#else
  return lc_push_error(L, UV_ENOTSUP);
#endif
}

void lc_open_process(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"pid", m_pid}, {"kill", m_kill}, {"unref", m_unref}, {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_spawn);
  lua_setfield(L, -2, "spawn");
  lua_pushcfunction(L, f_set_parent_death_signal);
  lua_setfield(L, -2, "set_parent_death_signal");
}
