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

#endif
