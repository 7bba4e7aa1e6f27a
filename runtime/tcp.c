/* tcp.c: TCP sockets and listening sockets bound to Lua (the net module's mechanism).
 * Owns: the uv_tcp_t (heap, pointed to by the lc_tcp struct so that a socket received over
 * IPC can be adopted as it is), its read callback reference and write requests. Freed in
 * close_cb. A socket sent over IPC leaves as a dup of its fd in a standalone uv_tcp_t that
 * ipc.c closes once written; the Lua side then closes its own copy (ownership moves). */
#define _GNU_SOURCE
#include "lc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MT "luacluster.tcp"

typedef struct lc_tcp {
  lc_handle_base base;
  uv_tcp_t *tcp;
  int is_server, closing, reading, writes_pending, close_after_writes;
} lc_tcp;

typedef struct twrite { uv_write_t req; lc_tcp *t; char data[]; } twrite;

static void close_cb(uv_handle_t *h) {
  lc_tcp *t = h->data;
  if (lc_handle_push_cb(&t->base)) {
    lua_pushstring(t->base.rt->L, "close");
    lc_call(t->base.rt, 1);
  }
  lc_handle_release(&t->base);
  free(t->tcp);
  free(t);
}

static void tcp_close(lc_tcp *t) {
  if (t->closing) return;
  if (t->writes_pending > 0) { t->close_after_writes = 1; return; }
  t->closing = 1;
  uv_close((uv_handle_t *)t->tcp, close_cb);
}

static lc_tcp *wrap(lua_State *L, uv_tcp_t *tcp, int is_server) {
  lc_tcp *t = lc_handle_new(L, sizeof *t, MT);
  t->tcp = tcp;
  t->is_server = is_server;
  tcp->data = t;
  return t;
}

int lc_tcp_push_received(lua_State *L, lc_rt *rt, uv_stream_t *accepted, int is_server) {
  (void)rt;
  wrap(L, (uv_tcp_t *)accepted, is_server);
  return 1;
}

uv_stream_t *lc_tcp_stream_for_send(lua_State *L, int idx, int *is_server) {
  lc_tcp *t = lc_handle_check(L, idx, MT);
  uv_os_fd_t fd;
  int r = uv_fileno((uv_handle_t *)t->tcp, &fd);
  if (r != 0) luaL_error(L, "cannot send this socket: %s", uv_strerror(r));
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) luaL_error(L, "cannot send this socket: %s", strerror(errno));
  uv_tcp_t *out = malloc(sizeof *out);
  if (out == NULL || uv_tcp_init(&t->base.rt->loop, out) != 0 || uv_tcp_open(out, copy) != 0) {
    close(copy);
    free(out);
    luaL_error(L, "cannot send this socket");
  }
  *is_server = t->is_server;
  return (uv_stream_t *)out;
}

/* ---- reading and writing ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[65536];
  *buf = uv_buf_init(slab, sizeof slab);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lc_tcp *t = st->data;
  lc_rt *rt = t->base.rt;
  if (nread == 0) return;
  if (nread > 0) {
    if (lc_handle_push_cb(&t->base)) {
      lua_pushstring(rt->L, "data");
      lua_pushlstring(rt->L, buf->base, (size_t)nread);
      lc_call(rt, 2);
    }
    return;
  }
  uv_read_stop(st);
  t->reading = 0;
  if (lc_handle_push_cb(&t->base)) {
    if (nread == UV_EOF) {
      lua_pushstring(rt->L, "end");
      lc_call(rt, 1);
    } else {
      lua_pushstring(rt->L, "error");
      lua_pushfstring(rt->L, "%s: %s", uv_err_name((int)nread), uv_strerror((int)nread));
      lc_call(rt, 2);
    }
  }
}

static void write_cb(uv_write_t *req, int status) {
  twrite *w = (twrite *)req;
  lc_tcp *t = w->t;
  (void)status;
  free(w);
  t->writes_pending--;
  if (t->writes_pending == 0 && t->close_after_writes) tcp_close(t);
}

static int m_write(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (t->closing || t->close_after_writes || t->is_server) return lc_push_error(L, UV_EPIPE);
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  if (t->writes_pending == 0) {
    int n = uv_try_write((uv_stream_t *)t->tcp, &b, 1);
    if (n == (int)len) { lua_pushboolean(L, 1); return 1; }
    if (n < 0 && n != UV_EAGAIN) return lc_push_error(L, n);
    if (n > 0) { data += n; len -= (size_t)n; }
  }
  twrite *w = malloc(sizeof *w + len);
  if (w == NULL) return lc_push_error(L, UV_ENOMEM);
  memcpy(w->data, data, len);
  w->t = t;
  b = uv_buf_init(w->data, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)t->tcp, &b, 1, write_cb);
  if (r != 0) { free(w); return lc_push_error(L, r); }
  t->writes_pending++;
  lua_pushboolean(L, 1);
  return 1;
}

static int m_read_start(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lc_handle_set_cb(L, &t->base, 2);
  if (!t->reading && !t->closing) {
    int r = uv_read_start((uv_stream_t *)t->tcp, alloc_cb, read_cb);
    if (r != 0) return lc_push_error(L, r);
    t->reading = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int m_read_stop(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  if (t->reading) uv_read_stop((uv_stream_t *)t->tcp);
  t->reading = 0;
  return 0;
}

static int m_close(lua_State *L) {
  lc_tcp *t = lc_handle_test(L, 1, MT);
  if (t) tcp_close(t);
  return 0;
}

static int push_addr(lua_State *L, const struct sockaddr_storage *ss) {
  char ip[64];
  int port;
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

static int m_peername(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getpeername(t->tcp, (struct sockaddr *)&ss, &len);
  if (r != 0) return lc_push_error(L, r);
  return push_addr(L, &ss);
}

static int m_sockname(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getsockname(t->tcp, (struct sockaddr *)&ss, &len);
  if (r != 0) return lc_push_error(L, r);
  return push_addr(L, &ss);
}

static int m_is_server(lua_State *L) {
  lc_tcp *t = lc_handle_check(L, 1, MT);
  lua_pushboolean(L, t->is_server);
  return 1;
}

void lc_open_tcp(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", m_write}, {"read_start", m_read_start}, {"read_stop", m_read_stop},
    {"close", m_close}, {"peername", m_peername}, {"sockname", m_sockname},
    {"is_server", m_is_server}, {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
}
