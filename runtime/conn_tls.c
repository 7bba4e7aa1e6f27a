/* conn_tls.c: TLS on outbound sockets: conn.h's filter driven by tls.c's engine (the Lua face:
 * net/tls.lua). Owns, per connection, one conn_tls (its lc_tls session), freed by the filter's
 * free hook when conn.c frees the connection (the one place). The runtime's lc_tls_store is
 * rt->tls_store: made here on the first TLS connect, let go by rt.c's rt_gc.
 * The bytes' way: the socket's ciphertext -> tls_read -> lc_tls_feed, the handshake or
 * lc_tls_read -> lc_conn_input (plaintext into the read buffer); the user's writes ->
 * tls_write -> lc_tls_write -> lc_conn_send_raw. After every call on the session its output
 * goes out at once (flush), so ciphertext never waits in two places.
 * The handshake's end (or failure, with tls.c's message) reaches Lua as cb("handshake" [, err]).
 * Pools: a parked connection drops the session's buffers (lc_tls_trim); what arrives while it
 * is parked is fed, and it stays pooled only if no plaintext came (TLS 1.3 session tickets). */
#include "lc.h"
#include "conn.h"
#include "tls.h"
#include "tls_lua.h"

#include <stdlib.h>
#include <string.h>

#define READ_CHUNK 16384   /* plaintext taken from the session per lc_tls_read (one record) */

typedef struct conn_tls {
  lc_tls *t;
} conn_tls;

static const lc_conn_filter tls_filter;

/* the session's output to the socket: 0 or UV_E* */
static int flush(conn_tls *ct, lc_conn *c) {
  const char *p;
  size_t n = lc_tls_out(ct->t, &p);
  if (n == 0) return 0;
  int r = lc_conn_send_raw(c, p, n);   /* copies what the socket does not take at once */
  lc_tls_out_consume(ct->t, n);
  return r;
}

/* plaintext the session holds into the read buffer: 0 (nothing more yet), UV_EOF (the peer's
 * close_notify) or another UV_E* (the read side ends) */
static int drain(conn_tls *ct, lc_conn *c) {
  char buf[READ_CHUNK];
  size_t n;
  int r;
  while ((r = lc_tls_read(ct->t, buf, sizeof buf, &n)) == 0) lc_conn_input(c, buf, n);
  int w = flush(ct, c);   /* a read may answer (TLS 1.3 key update) */
  if (r == LC_TLS_WANT_READ) return w;
  return r;
}

static int tls_read(void *ctx, lc_conn *c, const char *p, size_t n) {
  conn_tls *ct = ctx;
  int r = lc_tls_feed(ct->t, p, n);
  if (r != 0) return r;
  if (!lc_tls_done(ct->t)) {
    int hs = lc_tls_handshake(ct->t);
    int w = flush(ct, c);   /* the next flight, or an alert */
    if (hs < 0) {
      lc_conn_event(c, "handshake", lc_tls_error(ct->t));
      return hs;
    }
    if (w != 0) {
      lc_conn_event(c, "handshake", uv_strerror(w));
      return w;
    }
    if (hs == LC_TLS_WANT_READ) return 0;
    lc_conn_event(c, "handshake", NULL);   /* the connect's waiter resumes (it may write) */
  }
  return drain(ct, c);   /* data may have come with the handshake's last flight */
}

static int tls_write(void *ctx, lc_conn *c, const char *p, size_t n) {
  conn_tls *ct = ctx;
  int r = lc_tls_write(ct->t, p, n);
  if (r != 0) return r;
  return flush(ct, c);
}

/* bytes on a pooled connection: 0 when they were only the session's own (tickets) */
static int tls_idle(void *ctx, lc_conn *c, const char *p, size_t n) {
  conn_tls *ct = ctx;
  if (lc_tls_feed(ct->t, p, n) != 0) return -1;
  char buf[READ_CHUNK];
  size_t got;
  int r = lc_tls_read(ct->t, buf, sizeof buf, &got);
  if (r != LC_TLS_WANT_READ || flush(ct, c) != 0) return -1;
  lc_tls_trim(ct->t);
  return 0;
}

static void tls_park(void *ctx) {
  conn_tls *ct = ctx;
  lc_tls_trim(ct->t);
}

/* the peer's FIN: a clean end only after its close_notify (or before the handshake is done,
 * where the connect fails as it did); without one the stream may have been cut by anyone on
 * the path, and the read that meets it fails with tls.c's words instead of ending cleanly */
static int tls_end(void *ctx, lc_conn *c) {
  conn_tls *ct = ctx;
  if (!lc_tls_done(ct->t)) return 0;
  lc_tls_feed_eof(ct->t);
  int r = drain(ct, c);
  if (r == 0 || r == UV_EOF) return 0;
  lc_conn_read_error(c, lc_tls_error(ct->t));
  return r;
}

/* a graceful close: close_notify leaves before the socket closes */
static void tls_close(void *ctx, lc_conn *c) {
  conn_tls *ct = ctx;
  if (lc_tls_shutdown(ct->t) == 0) (void)flush(ct, c);
}

static void tls_free(void *ctx) {
  conn_tls *ct = ctx;
  lc_tls_free(ct->t);
  free(ct);
}

static const lc_conn_filter tls_filter = {
  .read = tls_read, .write = tls_write, .free = tls_free,
  .idle = tls_idle, .park = tls_park, .close = tls_close, .end = tls_end,
};

/* ---- Lua bindings ---- */

static const char *opt_string(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? NULL : luaL_checkstring(L, idx);
}

/* core.conn_tls(conn, host, key, verify, ca_file, server_name) -> true | nil, err: a connected
 * conn that has read nothing yet starts a TLS handshake (the ClientHello is sent); its end comes
 * as the conn's cb("handshake" [, err]). key: the pool key (sessions resume per key), or nil. */
static int f_conn_tls(lua_State *L) {
  lc_conn *c = lc_conn_check(L, 1);
  lc_tls_opts o;
  lc_tls_opts_init(&o);
  const char *host = luaL_checkstring(L, 2);
  const char *key = opt_string(L, 3);
  o.verify = lua_toboolean(L, 4);
  o.ca_file = opt_string(L, 5);
  o.server_name = opt_string(L, 6);
  if (lc_conn_filter_ctx(c, &tls_filter)) return luaL_error(L, "conn_tls: the socket speaks TLS already");
  lc_rt *rt = lc_rt_get(L);
  if (rt->tls_store == NULL && (rt->tls_store = lc_tls_store_new()) == NULL)
    return lc_push_fail(L, UV_ENOMEM, "TLS: out of memory");
  conn_tls *ct = calloc(1, sizeof *ct);
  if (ct == NULL) return lc_push_fail(L, UV_ENOMEM, "TLS: out of memory");
  char err[512];
  ct->t = lc_tls_client_new(rt->tls_store, &o, host, key, err, sizeof err);
  if (ct->t == NULL) {
    free(ct);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lc_conn_set_filter(c, &tls_filter, ct);   /* the connection owns ct from here */
  int r = lc_tls_handshake(ct->t);          /* the ClientHello: WANT_READ */
  if (r < 0) {
    lua_pushnil(L);
    lua_pushstring(L, lc_tls_error(ct->t));
    return 2;
  }
  r = flush(ct, c);
  if (r != 0) return lc_push_fail(L, r, "%s", uv_strerror(r));
  lua_pushboolean(L, 1);
  return 1;
}

/* core.conn_tls_info(conn) -> { protocol, cipher, session_reused, server_name, alpn } | nil
 * (a plain connection, or a handshake not done) */
static int f_conn_tls_info(lua_State *L) {
  lc_conn *c = lc_conn_check(L, 1);
  conn_tls *ct = lc_conn_filter_ctx(c, &tls_filter);
  if (ct == NULL || !lc_tls_done(ct->t)) return 0;
  lc_tls_push_info(L, ct->t);
  return 1;
}

/* core.tls_sessions() -> the client sessions cached in this runtime (for tests) */
static int f_tls_sessions(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  lua_pushinteger(L, rt->tls_store ? (lua_Integer)lc_tls_store_sessions(rt->tls_store) : 0);
  return 1;
}

void lc_open_conn_tls(lua_State *L) {
  lua_pushcfunction(L, f_conn_tls);
  lua_setfield(L, -2, "conn_tls");
  lua_pushcfunction(L, f_conn_tls_info);
  lua_setfield(L, -2, "conn_tls_info");
  lua_pushcfunction(L, f_tls_sessions);
  lua_setfield(L, -2, "tls_sessions");
}
