/* fuzz_common.h: what the fuzz targets share. Each target keeps one Lua state with the real
 * luacluster library (runtime + Lua modules from the source tree) for the whole run, and
 * drives the real libuv loop: an input is written into one end of a socketpair whose other
 * end is the channel or connection under test, and the loop runs until that end is closed.
 * The same sources build a libFuzzer target (-DLUACLUSTER_FUZZ=ON, clang) and a plain replay
 * driver (fuzz_replay.c, any compiler) that runs files of a corpus once each. */
#ifndef LC_FUZZ_COMMON_H
#define LC_FUZZ_COMMON_H

#define _GNU_SOURCE
#include "../lc.h"

#include <errno.h>
#include <fcntl.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int luaopen_luacluster_core(lua_State *L);

/* A Lua state with the library on package.path and luacluster.core preloaded; `init` is a
 * Lua chunk run once (it sets globals the target calls). Aborts on any error: a harness that
 * cannot start is a bug in the harness. */
static lua_State *fuzz_lua_new(const char *init) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", LC_SOURCE_LUA_DIR, LC_SOURCE_LUA_DIR);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_luacluster_core);
  lua_setfield(L, -2, "luacluster.core");
  lua_pop(L, 2);
  if (luaL_loadstring(L, init) != 0 || lua_pcall(L, 0, 0, 0) != 0) {
    fprintf(stderr, "fuzz harness: %s\n", lua_tostring(L, -1));
    abort();
  }
  return L;
}

/* Calls the global function `name` with one integer argument; returns its boolean result. */
static int fuzz_call(lua_State *L, const char *name, lua_Integer arg) {
  lua_getglobal(L, name);
  lua_pushinteger(L, arg);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "fuzz harness: %s: %s\n", name, lua_tostring(L, -1));
    abort();
  }
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

static void fuzz_nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Reads what the peer has written so far into out (kept up to cap bytes; the rest dropped). */
static void fuzz_drain(int fd, char *out, size_t cap, size_t *len) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return;
    if (out && *len < cap) {
      size_t k = (size_t)n < cap - *len ? (size_t)n : cap - *len;
      memcpy(out + *len, buf, k);
      *len += k;
    }
  }
}

/* Plays in[0..size) as a client on a new connection of the Lua state's sink 1 (a socketpair
 * whose server end the runtime takes), in the delivery mode of flags bits 0-3: the write size
 * (1, 13, 200 bytes or all, a loop turn between writes), bit 2 a half-close right after the last
 * byte (else once the connection is quiet), bit 3 no reading until everything is written. What
 * comes back goes into out (*out_len bytes, at most cap). Returns once the server has closed the
 * connection (fuzz_open_conns says none is open); aborts, naming who, if it does not. */
static inline void fuzz_play(lc_rt *rt, lua_State *L, const char *who, unsigned flags, const uint8_t *in, size_t size,
                             char *out, size_t cap, size_t *out_len) {
  static const size_t chunks[4] = {1, 13, 200, (size_t)-1};
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  fuzz_nonblock(sv[0]);
  uv_tcp_t *tcp = malloc(sizeof *tcp);
  if (tcp == NULL || uv_tcp_init(&rt->loop, tcp) != 0 || uv_tcp_open(tcp, sv[1]) != 0) abort();
  if (!lc_sink_deliver(rt, 1, tcp)) abort();
  size_t chunk = chunks[flags & 3], off = 0;
  int half_closed = 0, spins;
  *out_len = 0;
  for (spins = 0; off < size && spins < 20000; spins++) {
    size_t n = size - off < chunk ? size - off : chunk;
    ssize_t w = send(sv[0], in + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) off += (size_t)w;
    else if (w < 0 && errno != EAGAIN && errno != EINTR) break;
    if (!(flags & 8) || spins > 200) fuzz_drain(sv[0], out, cap, out_len);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
  }
  if (flags & 4) { shutdown(sv[0], SHUT_WR); half_closed = 1; }
  size_t last_len = (size_t)-1;
  int quiet = 0;
  for (spins = 0; spins < 5000 && fuzz_call(L, "fuzz_open_conns", 0); spins++) {
    fuzz_drain(sv[0], out, cap, out_len);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
    quiet = *out_len == last_len ? quiet + 1 : 0;
    last_len = *out_len;
    if (quiet > 20 && !half_closed) { shutdown(sv[0], SHUT_WR); half_closed = 1; }
  }
  fuzz_drain(sv[0], out, cap, out_len);
  close(sv[0]);
  for (spins = 0; spins < 1000 && fuzz_call(L, "fuzz_open_conns", 0); spins++) uv_run(&rt->loop, UV_RUN_NOWAIT);
  if (fuzz_call(L, "fuzz_open_conns", 0)) {
    fprintf(stderr, "%s: the connection did not close\n", who);
    abort();
  }
}

#endif
