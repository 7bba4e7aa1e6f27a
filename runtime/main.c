/* main.c: the luacluster executable. Creates the Lua state, finds the Lua library (beside the
 * build, under the install prefix, or from LUACLUSTER_LUA_DIR), hands the command line to
 * luacluster.boot, runs the event loop, and exits with the code boot chooses.
 * Everything the command line means is decided in Lua (boot.lua, cli.lua). */
#include "lc.h"
#include "bindings.h"
#include "ipc.h"
#include "access_log.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int luaopen_luacluster_core(lua_State *L);

static int has_library(const char *dir) {
  char path[4200];
  struct stat st;
  snprintf(path, sizeof path, "%s/luacluster/boot.lua", dir);
  return stat(path, &st) == 0;
}

/* The first folder that holds luacluster/boot.lua: $LUACLUSTER_LUA_DIR, <exe>/../lua (a build
 * inside the source tree), the source tree this binary was built from, the install prefix. */
static int find_library(char *out, size_t size) {
  const char *env = getenv("LUACLUSTER_LUA_DIR");
  if (env && has_library(env)) { snprintf(out, size, "%s", env); return 1; }
  char exe[2048];
  size_t len = sizeof exe;
  if (uv_exepath(exe, &len) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    const char *rel[] = {"/../lua", "/../share/luacluster/lua", NULL};
    for (int i = 0; rel[i]; i++) {
      snprintf(out, size, "%s%s", exe, rel[i]);
      if (has_library(out)) return 1;
    }
  }
  const char *fixed[] = {LC_SOURCE_LUA_DIR, LC_INSTALL_LUA_DIR, NULL};
  for (int i = 0; fixed[i]; i++) {
    if (has_library(fixed[i])) { snprintf(out, size, "%s", fixed[i]); return 1; }
  }
  return 0;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

static int call_boot(lua_State *L, const char *fn, int nargs) {
  /* stack: ... args; calls boot[fn](args...) -> integer or nil */
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luacluster.boot");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "luacluster: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  for (int i = 1; i <= nargs; i++) lua_pushvalue(L, base + i);
  if (lua_pcall(L, nargs, 1, base + 1) != 0) {
    fprintf(stderr, "luacluster: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  int code = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
  lua_settop(L, base);
  return code;
}

int main(int argc, char **argv) {
  char libdir[4096];
  if (!find_library(libdir, sizeof libdir)) {
    fprintf(stderr, "luacluster: cannot find the Lua library (luacluster/boot.lua); set LUACLUSTER_LUA_DIR\n");
    return 1;
  }
  /* a worker's stdout is a pipe to its master: send each line as it is printed */
  setvbuf(stdout, NULL, _IOLBF, 0);
  lua_State *L = luaL_newstate();
  if (L == NULL) { fprintf(stderr, "luacluster: cannot create a Lua state\n"); return 1; }
  luaL_openlibs(L);

  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", libdir, libdir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_luacluster_core);
  lua_setfield(L, -2, "luacluster.core");
  lua_pop(L, 2);

  lua_createtable(L, argc, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushstring(L, libdir);
  int code = call_boot(L, "main", 2);
  lua_settop(L, 0);
  if (code >= 0) {
    lc_ipc_flush_all(lc_rt_get(L)); /* a worker's last word to its master (why it failed to start) */
    fflush(stdout);
    return code;
  }

  lc_rt *rt = lc_rt_get(L);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  code = call_boot(L, "loop_ended", 0);
  lc_ipc_flush_all(rt);
  lc_alog_flush_all_sync(rt);
  fflush(stdout);
  fflush(stderr);
  _exit(code < 0 ? 0 : code);
}
