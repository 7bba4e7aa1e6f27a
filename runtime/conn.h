/* conn.h: outbound TCP connections (conn.c), and the seam a filter (TLS, tls.c) plugs into.
 * A filter sits between the socket and the connection's read buffer and write queue: what the
 * socket reads goes to filter->read, which hands plaintext on with lc_conn_input; what the user
 * writes goes to filter->write, which sends its bytes with lc_conn_send_raw. The filter's ctx is
 * its own; filter->free(ctx) is called once, when the connection is freed. A filter tells Lua
 * about its own steps (a handshake done or failed) with lc_conn_event(c, "handshake", err).
 * While a connection waits in a pool, any byte the socket reads closes it, unless the filter's
 * idle hook takes them as its own (TLS 1.3 session tickets are not data). */
#ifndef LC_CONN_H
#define LC_CONN_H

#include <stddef.h>
#include <lua.h>
#include <uv.h>

typedef struct lc_conn lc_conn;

typedef struct lc_conn_filter {
  int (*read)(void *ctx, lc_conn *c, const char *p, size_t n);    /* 0, or UV_E*: the read side ends */
  int (*write)(void *ctx, lc_conn *c, const char *p, size_t n);   /* 0, or UV_E* (the write fails) */
  void (*free)(void *ctx);
  /* optional (NULL): bytes read while the connection is pooled: 0 keeps it (nothing for the
   * user came), else it closes; park: it goes into a pool (drop idle buffers); close: a
   * graceful close, before the write queue's end (the filter's last bytes: close_notify) */
  int (*idle)(void *ctx, lc_conn *c, const char *p, size_t n);
  void (*park)(void *ctx);
  void (*close)(void *ctx, lc_conn *c);
  /* optional: the socket's read side ended (the peer's FIN): 0 when that is a clean end of the
   * stream, else a UV_E* code (the stream was cut: TLS without close_notify), after
   * lc_conn_read_error has said why */
  int (*end)(void *ctx, lc_conn *c);
} lc_conn_filter;

lc_conn *lc_conn_check(lua_State *L, int idx);    /* the connection of a conn object; raises */
/* the socket of the conn object at idx, for tcp.c to send over IPC; NULL when idx holds no conn
 * object; raises when it cannot move (closed, in a pool, unread bytes, a pending read, a filter) */
uv_tcp_t *lc_conn_tcp_for_send(lua_State *L, int idx);
void lc_conn_set_filter(lc_conn *c, const lc_conn_filter *f, void *ctx);
void *lc_conn_filter_ctx(lc_conn *c, const lc_conn_filter *f);   /* c's filter ctx if f, else NULL */
void lc_conn_input(lc_conn *c, const char *p, size_t n);          /* plaintext into the buffer */
int lc_conn_send_raw(lc_conn *c, const char *p, size_t n);        /* bytes to the socket: 0 or UV_E* */
void lc_conn_event(lc_conn *c, const char *name, const char *err); /* cb(name [, err]) in Lua */
/* why the read side failed, for the read that meets it (msg lives as long as the filter) */
void lc_conn_read_error(lc_conn *c, const char *msg);

#endif
