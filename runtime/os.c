/* os.c: small process-level bindings of the core module (pid, clocks, memory, paths, the
 * environment, file modes, descriptors, kill, exit). Owns nothing: each call is one system
 * call or a few, and what fails reaches Lua as nil, message, code (lc_push_error). */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "access_log.h"
#include "ipc.h"
#include "signal_names.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

/* ---- small process-level bindings ---- */

static int f_hrtime(lua_State *L) { lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6); return 1; }
static int f_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}
static int f_pid(lua_State *L) { lua_pushinteger(L, getpid()); return 1; }
static int f_ppid(lua_State *L) { lua_pushinteger(L, getppid()); return 1; }
static int f_cpu_count(lua_State *L) { lua_pushinteger(L, (lua_Integer)uv_available_parallelism()); return 1; }

static int f_rss(lua_State *L) {
  size_t rss;
  int r = uv_resident_set_memory(&rss);
  if (r != 0) return lc_push_error(L, r);
  lua_pushnumber(L, (lua_Number)rss);
  return 1;
}

static int f_pid_rss(lua_State *L) {
  /* RSS of another process, from /proc/PID/statm (pages) */
  char path[64], buf[128];
  snprintf(path, sizeof path, "/proc/%d/statm", (int)luaL_checkinteger(L, 1));
  FILE *f = fopen(path, "r");
  if (f == NULL) return lc_push_error(L, uv_translate_sys_error(errno));
  long size = 0, res = 0;
  int ok = fgets(buf, sizeof buf, f) != NULL && sscanf(buf, "%ld %ld", &size, &res) == 2;
  fclose(f);
  if (!ok) return lc_push_error(L, UV_EINVAL);
  lua_pushnumber(L, (lua_Number)res * (lua_Number)sysconf(_SC_PAGESIZE));
  return 1;
}

static int f_exepath(lua_State *L) {
  char buf[4096];
  size_t len = sizeof buf;
  int r = uv_exepath(buf, &len);
  if (r != 0) return lc_push_error(L, r);
  lua_pushlstring(L, buf, len);
  return 1;
}

static int f_cwd(lua_State *L) {
  char buf[4096];
  size_t len = sizeof buf;
  int r = uv_cwd(buf, &len);
  if (r != 0) return lc_push_error(L, r);
  lua_pushlstring(L, buf, len);
  return 1;
}

/* (no heap copy: a push that raises, out of memory, would leak it) */
static int f_realpath(lua_State *L) {
  char buf[PATH_MAX];
  if (realpath(luaL_checkstring(L, 1), buf) == NULL) return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushstring(L, buf);
  return 1;
}

/* read in place from environ, for the same reason (uv_os_environ copies it to the heap) */
static int f_environ(lua_State *L) {
  extern char **environ;
  int n = 0;
  while (environ[n]) n++;
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const char *eq = strchr(environ[i], '=');
    if (eq == NULL || eq == environ[i]) continue;
    lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

static int f_kill(lua_State *L) {
  int pid = (int)luaL_checkinteger(L, 1);
  int sig = lua_isnumber(L, 2) ? (int)lua_tointeger(L, 2) : lc_signum(luaL_optstring(L, 2, "SIGTERM"));
  if (sig == 0 && !lua_isnumber(L, 2)) return luaL_error(L, "unknown signal '%s'", lua_tostring(L, 2));
  int r = uv_kill(pid, sig);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int f_exit(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  int code = (int)luaL_optinteger(L, 1, 0);
  lc_ipc_flush_all(rt);
  lc_alog_flush_all_sync(rt);
  fflush(stdout);
  fflush(stderr);
  _exit(code);
  return 0;
}

static int f_getuid(lua_State *L) { lua_pushinteger(L, (lua_Integer)getuid()); return 1; }

/* core.private_dir(path) -> true | nil, err: creates path 0700 if missing, and refuses a
 * folder that is not ours or that others can enter (the control socket lives there) */
static int f_private_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (mkdir(path, 0700) != 0 && errno != EEXIST) return lc_push_error(L, uv_translate_sys_error(errno));
  if (lstat(path, &st) != 0) return lc_push_error(L, uv_translate_sys_error(errno));
  if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077) != 0) {
    return lc_push_fail(L, 0, "%s must be a folder owned by this user with mode 0700", path);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int f_file_mode(lua_State *L) {
  struct stat st;
  if (lstat(luaL_checkstring(L, 1), &st) != 0) return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushinteger(L, st.st_mode & 07777);
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  return 2;
}

static int f_chmod(lua_State *L) {
  if (chmod(luaL_checkstring(L, 1), (mode_t)luaL_checkinteger(L, 2)) != 0)
    return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

static int f_unlink(lua_State *L) {
  if (unlink(luaL_checkstring(L, 1)) != 0) return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

static int f_unsetenv(lua_State *L) {
  uv_os_unsetenv(luaL_checkstring(L, 1));
  return 0;
}

static int f_set_cloexec(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
    return lc_push_error(L, uv_translate_sys_error(errno));
  lua_pushboolean(L, 1);
  return 1;
}

static int f_fd_valid(lua_State *L) {
  lua_pushboolean(L, fcntl((int)luaL_checkinteger(L, 1), F_GETFD) >= 0);
  return 1;
}

static int f_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

void lc_open_os(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"hrtime", f_hrtime}, {"time", f_time},
    {"pid", f_pid}, {"ppid", f_ppid}, {"cpu_count", f_cpu_count}, {"rss", f_rss},
    {"pid_rss", f_pid_rss}, {"exepath", f_exepath}, {"cwd", f_cwd}, {"realpath", f_realpath},
    {"environ", f_environ}, {"kill", f_kill}, {"exit", f_exit},
    {"set_cloexec", f_set_cloexec}, {"fd_valid", f_fd_valid},
    {"isatty", f_isatty}, {"unsetenv", f_unsetenv}, {"getuid", f_getuid},
    {"private_dir", f_private_dir}, {"file_mode", f_file_mode}, {"unlink", f_unlink}, {"chmod", f_chmod},
    {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
}
