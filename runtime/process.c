/* process.c: child processes (uv_spawn) for workers, forked scripts and child_process.spawn.
 * Owns: the uv_process_t and the argv/env arrays built for the spawn (freed before returning,
 * on every path).
 * The stdio pipes and the IPC channel passed in belong to their own Lua objects (stream.c,
 * ipc.c) or, for a "[worker N] " line forwarder, to prefix code in stream.c.
 * The exit callback reports (code, signal name) to Lua, then the handle is closed and freed (a
 * report Lua had no memory for is retried on a timer first: the handle waits for it).
 * Also here, for the child's side: set_parent_death_signal (a forked child ends with its
 * parent, Linux's PR_SET_PDEATHSIG; no handle, nothing to free). */
#include "lc.h"
#include "bindings.h"
#include "ipc.h"
#include "stream.h"
#include "log_forward.h"
#include "signal_names.h"

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
  int group;              /* the child leads its own process group: kill() signals all of it */
} lc_proc;

static void process_close_cb(uv_handle_t *h) {
  lc_proc *p = h->data;
  lc_handle_release(&p->base);
  free(p);
}

/* an exit the callback has not been told of yet: made only when Lua had no memory for the
 * callback's arguments, freed in its timer's close callback (lc_proc stays as small as it was) */
typedef struct exit_args {
  uv_timer_t timer;       /* retries the callback (first member: the close callback frees it) */
  lc_proc *p;
  int64_t status;
  int term_signal;
  uint64_t delay;
} exit_args;

/* run by lc_call_with, protected: cb(code, nil) or cb(nil, "SIGKILL") */
static int process_push_exit(lua_State *L, void *ud) {
  exit_args *a = ud;
  if (!lc_handle_push_cb(&a->p->base)) return -1;
  if (a->term_signal) {
    lua_pushnil(L);
    const char *name = lc_signame(a->term_signal);
    if (name) lua_pushstring(L, name);
    else lua_pushfstring(L, "SIG%d", a->term_signal);
  } else {
    lua_pushinteger(L, (lua_Integer)a->status);
    lua_pushnil(L);
  }
  return 2;
}

static void process_exit_retry_cb(uv_timer_t *timer);

/* Calls the exit callback; when its arguments cannot be built (out of memory) it is tried again
 * later (a master that never hears of a worker's exit would never restart it), then the
 * process handle is closed. a is on the stack (the first try) or the heap (a retry: later). */
static void exit_deliver(exit_args *a, exit_args *later) {
  lc_proc *p = a->p;
  if (lc_call_with(p->base.rt, process_push_exit, a) > 0) {
    if (later == NULL && (later = malloc(sizeof *later)) != NULL) {
      *later = *a;
      later->delay = 25;
      if (uv_timer_init(&p->base.rt->loop, &later->timer) != 0) { free(later); later = NULL; }
      else later->timer.data = later;
    }
    if (later) {
      later->delay = later->delay * 2 > 2000 ? 2000 : later->delay * 2;
      uv_timer_start(&later->timer, process_exit_retry_cb, later->delay, 0);
      return;
    }
    lc_log(p->base.rt, "error: process %d exited, and its exit callback could not be called (out of memory)",
           (int)p->proc.pid);
  }
  if (later) uv_close((uv_handle_t *)&later->timer, lc_free_handle_cb);
  uv_close((uv_handle_t *)&p->proc, process_close_cb);
}

static void process_exit_retry_cb(uv_timer_t *timer) {
  exit_args *later = timer->data;
  exit_deliver(later, later);
}

static void process_exit_cb(uv_process_t *proc, int64_t status, int term_signal) {
  lc_proc *p = proc->data;
  p->exited = 1;
  exit_args a;
  memset(&a, 0, sizeof a);
  a.p = p;
  a.status = status;
  a.term_signal = term_signal;
  exit_deliver(&a, NULL);
}

/* a NULL-terminated copy of the strings of the array at idx (the strings stay the table's),
 * after `first` when given; NULL when an entry is not a string or memory ran out */
static char **string_array(lua_State *L, int idx, const char *first) {
  size_t n = lua_objlen(L, idx);
  size_t extra = first ? 1 : 0;
  char **a = calloc(n + extra + 1, sizeof *a);
  if (a == NULL) return NULL;
  if (first) a[0] = (char *)first;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    a[i - 1 + extra] = lua_type(L, -1) == LUA_TSTRING ? (char *)lua_tostring(L, -1) : NULL;  /* anchored by the table */
    lua_pop(L, 1);
    if (a[i - 1 + extra] == NULL) { free(a); return NULL; }
  }
  return a;
}

#define MAX_STDIO 8

/* a stdio entry { inherit = fd } (the table on the top): 1 and *fd set, else 0 */
static int inherit_fd(lua_State *L, int *fd) {
  lua_getfield(L, -1, "inherit");
  int yes = lua_isnumber(L, -1);
  if (yes) *fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* what one stdio entry asks for, read (and checked) before anything is allocated */
typedef struct stdio_want { int kind; int fd; const char *prefix; void *box; } stdio_want;
enum { W_IGNORE, W_INHERIT, W_IPC, W_STREAM, W_PREFIX };

/* core.spawn{ file=, args={...}, env={"K=V",...}, cwd=, detached=, group=, stdio={...} }, on_exit
 * stdio[i] (fd i-1): "ignore" | "inherit" | stream box | ipc box | {prefix=, fd=} | {inherit=fd}
 *   ({inherit=fd}: this process's fd becomes the child's fd i-1: the shared dictionaries' file)
 * group: the child leads a new session and process group (as detached), and kill() signals
 * the whole group, so its own children end with it.
 * -> process | nil, err, ename
 * Everything that can raise is read first; then one owner per allocation: the argv and env
 * arrays are freed on every path before returning, and the line forwarders made for the
 * spawn are closed (they free themselves) when it fails. */
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
  int args_idx = lua_gettop(L);
  lua_getfield(L, 1, "env");
  int env_idx = lua_istable(L, -1) ? lua_gettop(L) : 0;
  lua_getfield(L, 1, "cwd");
  o.cwd = lua_tostring(L, -1);
  lua_getfield(L, 1, "detached");
  if (lua_toboolean(L, -1)) o.flags |= UV_PROCESS_DETACHED;
  lua_getfield(L, 1, "group");
  int group = lua_toboolean(L, -1);
  if (group) o.flags |= UV_PROCESS_DETACHED;   /* setsid(): a new session and process group */
  lua_getfield(L, 1, "stdio");
  int sidx = lua_gettop(L);
  size_t nstdio = lua_istable(L, sidx) ? lua_objlen(L, sidx) : 0;
  if (nstdio > MAX_STDIO) return luaL_error(L, "spawn: at most %d stdio entries", MAX_STDIO);
  stdio_want want[MAX_STDIO];
  for (size_t i = 0; i < nstdio; i++) {
    lua_rawgeti(L, sidx, (int)i + 1);   /* anchored by the stdio table */
    stdio_want *w = &want[i];
    void **box;
    memset(w, 0, sizeof *w);
    if (lua_type(L, -1) == LUA_TSTRING) {
      w->kind = strcmp(lua_tostring(L, -1), "inherit") == 0 ? W_INHERIT : W_IGNORE;
      w->fd = (int)i;
    } else if ((box = luaL_testudata(L, -1, MT_IPC)) != NULL && *box) {
      w->kind = W_IPC;
      w->box = *box;
    } else if ((box = luaL_testudata(L, -1, MT_STREAM)) != NULL && *box) {
      w->kind = W_STREAM;
      w->box = *box;
    } else if (lua_istable(L, -1) && inherit_fd(L, &w->fd)) {
      w->kind = W_INHERIT;               /* { inherit = fd }: the child gets this fd as fd i */
    } else if (lua_istable(L, -1)) {
      w->kind = W_PREFIX;
      lua_getfield(L, -1, "fd");
      w->fd = (int)luaL_optinteger(L, -1, (lua_Integer)i);
      lua_pop(L, 1);
      lua_getfield(L, -1, "prefix");
      w->prefix = luaL_checkstring(L, -1);   /* anchored by the entry's table */
      lua_pop(L, 1);
    } else {
      return luaL_error(L, "spawn: bad stdio entry %d", (int)i + 1);
    }
    lua_pop(L, 1);
  }

  /* from here on, every failure goes through `fail` */
  lc_proc *p = lc_handle_new(L, sizeof *p, MT);   /* the box, returned on success */
  lc_handle_set_cb(L, &p->base, 2);
  p->proc.data = p;
  p->group = group;
  uv_stdio_container_t stdio[MAX_STDIO];
  lc_forward *prefixes[MAX_STDIO] = {0};
  const char *why = NULL;          /* a programming mistake: raised once everything is freed */
  int r = 0;
  char **args = string_array(L, args_idx, o.file);
  char **env = env_idx ? string_array(L, env_idx, NULL) : NULL;
  if (args == NULL) { why = "spawn: args must be strings"; goto fail; }
  if (env_idx && env == NULL) { why = "spawn: env entries must be strings"; goto fail; }
  for (size_t i = 0; i < nstdio; i++) {
    uv_stdio_container_t *c = &stdio[i];
    switch (want[i].kind) {
      case W_INHERIT: c->flags = UV_INHERIT_FD; c->data.fd = want[i].fd; break;
      case W_IGNORE: c->flags = UV_IGNORE; break;
      case W_IPC:
        c->flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
        c->data.stream = (uv_stream_t *)lc_ipc_pipe(want[i].box);
        break;
      case W_STREAM:
        c->flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
        c->data.stream = (uv_stream_t *)lc_stream_pipe(want[i].box);
        break;
      default:
        prefixes[i] = lc_forward_new(rt, want[i].fd, want[i].prefix);
        if (prefixes[i] == NULL) { r = UV_ENOMEM; goto fail; }
        c->flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        c->data.stream = (uv_stream_t *)lc_forward_pipe(prefixes[i]);
        break;
    }
  }
  o.stdio = stdio;
  o.stdio_count = (int)nstdio;
  o.args = args;
  o.env = env;
  o.exit_cb = process_exit_cb;
  r = uv_spawn(&rt->loop, &p->proc, &o);   /* inits the handle whatever it returns */
  free(args);
  free(env);
  args = env = NULL;
  if (r != 0) {
    p->exited = 1;
    uv_close((uv_handle_t *)&p->proc, process_close_cb);
    p = NULL;
    goto fail;
  }
  /* start reading the pipes that were just created (a child's stdin is only written) */
  for (size_t i = 1; i < nstdio; i++) {
    if (want[i].kind == W_IPC) lc_ipc_start(want[i].box);
    else if (want[i].kind == W_STREAM) lc_stream_start(want[i].box);
    else if (want[i].kind == W_PREFIX) lc_forward_start(prefixes[i], p->proc.pid);
  }
  return 1;

fail:
  free(args);
  free(env);
  for (size_t i = 0; i < nstdio; i++)
    if (prefixes[i]) lc_forward_close(prefixes[i]);   /* frees itself once closed */
  if (p) {                         /* never handed to libuv: nothing to close */
    lc_handle_release(&p->base);
    free(p);
  }
  if (why) return luaL_error(L, "%s", why);
  return lc_push_error(L, r);
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
  int r = p->group ? uv_kill(-p->proc.pid, sig) : uv_process_kill(&p->proc, sig);
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
