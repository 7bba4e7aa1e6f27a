/* unix_socket.c: the control channel's Unix sockets: core.pipe_listen (the master's control
 * socket, made 0600) and core.pipe_connect (luacluster's control commands). Each connection
 * is a stream (stream.c) owned by Lua. For a binary upgrade (master/upgrade.lua): core.pipe_listen_fd
 * serves a listening socket inherited from the old master, and core.pipe_keep_file makes the
 * old master's close of its copy leave the socket file (libuv unlinks it otherwise), which the
 * new master now serves. Owns: a connect request (pconnect) until its callback
 * was called, and the retry timer made when Lua had no memory for that call. */
#include "lc.h"
#include "bindings.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct accept_args { lc_stream *srv; int handed; } accept_args;

/* run by lc_call_with, protected: cb(stream) with a new stream accepted from the server */
static int unix_push_accepted(lua_State *L, void *ud) {
  accept_args *a = ud;
  if (!lc_handle_push_cb(lc_stream_base(a->srv))) return -1;
  lc_stream *c = lc_stream_new(L, 0);   /* no callback yet: Lua sets one with :read_start */
  if (uv_accept((uv_stream_t *)lc_stream_pipe(a->srv), (uv_stream_t *)lc_stream_pipe(c)) != 0) {
    lc_stream_close(c);
    return -1;
  }
  a->handed = 1;
  return 1;
}

static void unix_connection_cb(uv_stream_t *server, int status) {
  lc_stream *srv = server->data;
  if (status != 0) return;
  accept_args a = {srv, 0};
  if (lc_call_with(lc_stream_base(srv)->rt, unix_push_accepted, &a) > 0 && !a.handed) {
    /* no memory for its Lua object: taken from the queue and closed, or libuv would call back
     * for it again and again */
    uv_pipe_t *p = malloc(sizeof *p);
    if (p == NULL || uv_pipe_init(server->loop, p, 0) != 0) { free(p); return; }
    if (uv_accept(server, (uv_stream_t *)p) == 0)
      lc_log(lc_stream_base(srv)->rt, "warn: stream: a connection to a Unix socket was closed: no memory for its Lua object");
    uv_close((uv_handle_t *)p, lc_free_handle_cb);
  }
}

/* core.pipe_listen(path, cb): cb(stream) per connection; the socket file is made 0600.
 * Made so between bind and listen: nobody can connect before listen, so nobody ever connects
 * to a wider mode, and the process-wide umask is left alone (changing it raced the threads
 * that create files: the access log's reopen, in libuv's pool). */
static int f_pipe_listen(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_stream *s = lc_stream_new(L, 2);
  int r = uv_pipe_bind(lc_stream_pipe(s), path);
  int bound = r == 0;
  if (r == 0 && chmod(path, 0600) != 0) r = uv_translate_sys_error(errno);
  if (r == 0) r = uv_listen((uv_stream_t *)lc_stream_pipe(s), 64, unix_connection_cb);
  if (r != 0) {
    if (bound) unlink(path);
    lc_stream_close(s);
    return lc_push_error(L, r);
  }
  uv_unref((uv_handle_t *)lc_stream_pipe(s));
  return 1;
}

/* core.pipe_listen_fd(fd, cb): as pipe_listen, on a listening Unix socket this process
 * inherited (an upgrade's new master: the old master's control socket, same file) */
static int f_pipe_listen_fd(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_stream *s = lc_stream_new(L, 2);
  int r = fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 ? 0 : uv_translate_sys_error(errno);  /* not for workers */
  if (r == 0) r = uv_pipe_open(lc_stream_pipe(s), fd);
  if (r == 0) r = uv_listen((uv_stream_t *)lc_stream_pipe(s), 64, unix_connection_cb);
  if (r != 0) {
    lc_stream_close(s);   /* (uv_pipe_open failed: fd is still the caller's) */
    return lc_push_error(L, r);
  }
  uv_unref((uv_handle_t *)lc_stream_pipe(s));
  return 1;
}

/* core.pipe_keep_file(server): closing this listening socket leaves its file in place (an
 * upgrade's old master: the new master serves the same socket, file and all) */
static int f_pipe_keep_file(lua_State *L) {
  uv_pipe_t *p = lc_stream_pipe(lc_handle_check(L, 1, "luacluster.stream"));
  free((void *)p->pipe_fname);   /* libuv's copy (strdup, the default allocator) */
  p->pipe_fname = NULL;
  return 0;
}

typedef struct pconnect {
  uv_connect_t req;
  lc_rt *rt;
  lc_stream *s;            /* closed (and freed) at once when the connect failed: not used then */
  int cb_ref, status;
  uv_timer_t *retry;       /* made when Lua had no memory for the callback's arguments */
  uint64_t delay;
} pconnect;

/* run by lc_call_with, protected: cb(stream) or cb(nil, "ENOENT: ...") */
static int unix_push_connect(lua_State *L, void *ud) {
  pconnect *pc = ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, pc->cb_ref);
  if (pc->status != 0) {
    return lc_push_fail(L, 0, "%s: %s", uv_err_name(pc->status), uv_strerror(pc->status));
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lc_stream_base(pc->s)->self_ref);
  return 1;
}

static void unix_connect_retry_cb(uv_timer_t *timer);

/* Calls the connect's callback; when its arguments cannot be built (out of memory) it is tried
 * again later rather than never called (a coroutine waits on it). Frees pc once called. */
static void unix_connect_deliver(pconnect *pc) {
  lc_rt *rt = pc->rt;
  if (lc_call_with(rt, unix_push_connect, pc) > 0) {
    if (pc->retry == NULL && (pc->retry = malloc(sizeof *pc->retry)) != NULL) {
      if (uv_timer_init(&rt->loop, pc->retry) != 0) { free(pc->retry); pc->retry = NULL; }
      else { pc->retry->data = pc; pc->delay = 25; }
    }
    if (pc->retry) {
      pc->delay = pc->delay * 2 > 2000 ? 2000 : pc->delay * 2;
      uv_timer_start(pc->retry, unix_connect_retry_cb, pc->delay, 0);
      return;
    }
    lc_log(rt, "error: stream: a connect's callback could not be called (out of memory); it never will be");
    if (pc->status == 0) lc_stream_close(pc->s);
  }
  if (pc->retry) uv_close((uv_handle_t *)pc->retry, lc_free_handle_cb);
  luaL_unref(rt->L, LUA_REGISTRYINDEX, pc->cb_ref);
  free(pc);
}

static void unix_connect_retry_cb(uv_timer_t *timer) { unix_connect_deliver(timer->data); }

static void unix_connect_cb(uv_connect_t *req, int status) {
  pconnect *pc = (pconnect *)req;
  pc->status = status;
  if (status != 0) lc_stream_close(pc->s);
  unix_connect_deliver(pc);
}

/* core.pipe_connect(path, cb): cb(stream) or cb(nil, err) */
static int f_pipe_connect(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_stream *s = lc_stream_new(L, 0);
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  int cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);   /* (what can raise comes before the calloc) */
  pconnect *pc = calloc(1, sizeof *pc);
  if (pc == NULL) {
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    lc_stream_close(s);
    return lc_push_error(L, UV_ENOMEM);
  }
  pc->s = s;
  pc->rt = lc_stream_base(s)->rt;
  pc->cb_ref = cb_ref;
  uv_pipe_connect(&pc->req, lc_stream_pipe(pc->s), path, unix_connect_cb);
  lua_pushboolean(L, 1);
  return 1;
}

void lc_open_unix_socket(lua_State *L) {
  static const luaL_Reg fns[] = {{"pipe_listen", f_pipe_listen}, {"pipe_connect", f_pipe_connect},
    {"pipe_listen_fd", f_pipe_listen_fd}, {"pipe_keep_file", f_pipe_keep_file}, {NULL, NULL}};
  luaL_register(L, NULL, fns);
}
