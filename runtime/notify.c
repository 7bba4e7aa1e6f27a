/* notify.c: systemd's notify protocol, spoken directly (no libsystemd): one datagram of
 * "KEY=VALUE\n..." lines to the unix socket named by $NOTIFY_SOCKET, a filesystem path or,
 * with a leading "@", a name in the abstract namespace. Owns nothing past a call: the
 * socket is opened and closed around each send. */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* core.sd_notify(address, state) -> true | nil, err */
static int f_sd_notify(lua_State *L) {
  size_t alen, slen;
  const char *addr = luaL_checklstring(L, 1, &alen);
  const char *state = luaL_checklstring(L, 2, &slen);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (alen < 2 || alen >= sizeof sa.sun_path || (addr[0] != '/' && addr[0] != '@')) {
    return lc_push_fail(L, 0, "NOTIFY_SOCKET '%s' is not an absolute path or an @abstract name", addr);
  }
  memcpy(sa.sun_path, addr, alen);
  if (addr[0] == '@') sa.sun_path[0] = '\0';
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return lc_push_error(L, uv_translate_sys_error(errno));
  ssize_t n;
  do n = sendto(fd, state, slen, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) return lc_push_error(L, uv_translate_sys_error(err));
  lua_pushboolean(L, 1);
  return 1;
}

/* core.monotonic_usec() -> CLOCK_MONOTONIC in microseconds, as a decimal string (MONOTONIC_USEC=) */
static int f_monotonic_usec(lua_State *L) {
  struct timespec ts;
  char buf[32];
  clock_gettime(CLOCK_MONOTONIC, &ts);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull);
  lua_pushstring(L, buf);
  return 1;
}

void lc_open_notify(lua_State *L) {
  lua_pushcfunction(L, f_sd_notify);
  lua_setfield(L, -2, "sd_notify");
  lua_pushcfunction(L, f_monotonic_usec);
  lua_setfield(L, -2, "monotonic_usec");
}
