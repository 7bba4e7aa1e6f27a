/* http_lua.c: the Lua binding of the HTTP server (lua/luacluster/http.lua is its one user):
 * core.http_server_new, the server object (listen_on, sink, serve, drain, close, stats,
 * set_access_log), the functions a handler answers through (core.http_respond, http_write_head,
 * http_write, http_finish, http_on_drain, http_headers, http_peer, http_abort: each takes the
 * connection, a light userdata, and the request's seq, so a late answer to a finished request
 * or a closed connection is refused: http_int.h says why that is safe), core.http_stats, and
 * every call from the loop into Lua: a request handed to its handler, a drain callback, a
 * reference dropped. Policy stays in Lua; this file only moves values across.
 * Owns: the Lua side of a server (lc_handle_base) and a connection's drain callback reference
 * (released when the connection is freed, http_conn.c). */
#include "http_int.h"
#include "dispatch.h"
#include "tcp.h"
#include "tls.h"
#include "tls_lua.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- calling Lua from the loop ----
 * A libuv callback runs outside any protected call: a Lua API call that raises there (out of
 * memory in lua_pushlstring, lua_newuserdata, luaL_ref, even luaL_unref when the registry's
 * free list needs a new slot) ends in LuaJIT's panic, which aborts the process. So every Lua
 * call this file makes from a libuv callback goes through lua_cpcall (protected from its first
 * allocation: the C function object is made inside it), here: lc_http_ref_run for a
 * registry reference, lc_http_call_handler for a request. The Lua methods below are called
 * from Lua and are protected by their callers. */

static void cpcall_failed(lc_rt *rt, const char *what) {
  lua_State *L = rt->L;
  const char *msg = lua_tostring(L, -1);
  lc_log(rt, "error: http: %s: %s", what, msg ? msg : "(an error that is not a string)");
  lua_pop(L, 1);
}

typedef struct ref_call { lc_rt *rt; int ref, call; } ref_call;

static int http_lua_ref_call(lua_State *L) {
  ref_call *r = lua_touserdata(L, 1);
  if (r->call) lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
  if (r->call) lc_call(r->rt, 0);   /* its own pcall: the function's error is logged there */
  return 0;
}

/* Drops the registry reference ref, after calling the function it holds when call is 1. */
void lc_http_ref_run(lc_rt *rt, int ref, int call) {
  if (ref == LUA_NOREF || ref == LUA_REFNIL) return;
  ref_call r = {rt, ref, call};
  if (lua_cpcall(rt->L, http_lua_ref_call, &r) != 0) cpcall_failed(rt, call ? "a callback" : "a reference");
}

/* Wakes a handler waiting for the output queue to drain (a streamed answer to a client that
 * reads slowly). Called from the loop only (a write done, a connection freed), never from
 * inside a Lua call. */
void lc_http_fire_drain(http_conn *c) {
  if (c->drain_ref == LUA_NOREF) return;
  if (c->timer_mode == LC_HTTP_T_SEND && !c->closed) lc_http_conn_no_deadline(c);
  int ref = c->drain_ref;
  c->drain_ref = LUA_NOREF;
  lc_http_ref_run(c->srv->base.rt, ref, 1);
}

/* ---- a request to its handler ---- */

/* The handler's call, inside lc_http_call_handler's lua_cpcall: (conn, seq, method, url, minor, body,
 * path, query). Its own pcall with the traceback (as lc_call) tells lc_http_call_handler whether
 * http.lua's glue failed before a handler took the request. */
typedef struct handler_call { http_conn *c; int failed; } handler_call;

static int http_lua_handler_call(lua_State *L) {
  handler_call *hc = lua_touserdata(L, 1);
  http_conn *c = hc->c;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->srv->base.rt->traceback_ref);
  if (!lc_handle_push_cb(&c->srv->base)) { hc->failed = 503; return 0; }
  c->lua_named = 1;
  lua_pushlightuserdata(L, c);
  lua_pushnumber(L, (lua_Number)c->seq);
  const char *head = lc_http_head_ptr(c);
  lua_pushlstring(L, head + c->req->h.method, c->req->h.method_len);
  lua_pushlstring(L, head + c->req->h.target, c->req->h.target_len);
  lua_pushinteger(L, c->req->h.minor);
  if (c->req->body_len > 0) lua_pushlstring(L, c->req->body, c->req->body_len);
  else lua_pushnil(L);
  /* path and query of an origin-form target, split as http.lua's split_target does (the path
   * ends at '?' and at '#', the query is all after the '?'), so that Lua need not */
  const char *t = head + c->req->h.target;
  size_t tl = c->req->h.target_len;
  if (tl > 0 && t[0] == '/') {
    const char *q = memchr(t, '?', tl);
    size_t plen = q ? (size_t)(q - t) : tl;
    const char *hash = memchr(t, '#', plen);
    if (hash) plen = (size_t)(hash - t);
    if (plen == tl) lua_pushvalue(L, -3);  /* the path is the whole target (url, 3 down) */
    else lua_pushlstring(L, t, plen);
    if (q) lua_pushlstring(L, q + 1, (size_t)(t + tl - q - 1));
    else lua_pushnil(L);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  if (lua_pcall(L, 8, 0, 1) != 0) {
    hc->failed = 500;
    lc_log(c->srv->base.rt, "error: %s", lua_tostring(L, -1));
  }
  return 0;
}

void lc_http_call_handler(http_conn *c) {
  c->srv->requests++;
  http_req *r = c->req;
  r->resp_started = r->resp_chunked = r->resp_close = r->resp_raw = 0;
  r->ws = NULL;
  r->resp_cl = -1;
  r->resp_sent = 0;
  uint64_t seq = c->seq;
  handler_call hc = {c, 0};
  if (lua_cpcall(c->srv->base.rt->L, http_lua_handler_call, &hc) != 0) {
    cpcall_failed(c->srv->base.rt, "a request");
    hc.failed = 500;
  }
  /* no handler took the request (none set, or out of memory before one ran): the runtime
   * answers, unless an answer has started meanwhile */
  if (hc.failed && !c->closed && c->seq == seq && c->state == LC_HTTP_S_HANDLER && !c->req->resp_started) lc_http_reject(c, hc.failed);
}

/* ---- Lua: server ---- */

/* An option as a number in [0, max]: http.lua has refused what is not a number >= 0; a value
 * past what the field holds (math.huge: "no limit") is max, not a cast out of range (undefined:
 * on x86-64 it gave 0, so max_header_size = math.huge refused every request with 431). */
static lua_Number opt_num(lua_State *L, int t, const char *k, lua_Number def, lua_Number max) {
  lua_getfield(L, t, k);
  lua_Number v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  if (!(v >= 0)) v = def;  /* NaN too */
  return v > max ? max : v;
}

#define MAX_MS 9007199254740992.0     /* 2^53 ms: loop time + a timeout stays in 64 bits */
/* a head (and a trailer section) is at most 80 KiB with its blank line, whatever
 * max_header_size says: the limit libhttp-parser set when it read heads, kept */
#define MAX_HEAD_BYTES 81918.0
#define MAX_BODY_BYTES 9007199254740992.0

/* core.http_server_new(cb, opts) */
static int http_lua_server_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  http_server *s = lc_handle_new(L, sizeof *s, LC_HTTP_MT_SERVER);
  lc_handle_set_cb(L, &s->base, 1);
  s->drain_ref = LUA_NOREF;
  s->max_header = 16384;
  s->max_body = 1048576;
  s->header_timeout = 10000;
  s->keepalive_timeout = 5000;
  s->send_timeout = 60000;
  if (lua_istable(L, 2)) {
    s->max_header = (size_t)opt_num(L, 2, "max_header_size", 16384, MAX_HEAD_BYTES);
    s->max_body = (size_t)opt_num(L, 2, "max_body_size", 1048576, MAX_BODY_BYTES);
    s->header_timeout = (uint64_t)opt_num(L, 2, "header_timeout", 10000, MAX_MS);
    s->keepalive_timeout = (uint64_t)opt_num(L, 2, "keepalive_timeout", 5000, MAX_MS);
    s->send_timeout = (uint64_t)opt_num(L, 2, "send_timeout", 60000, MAX_MS);
    s->max_conns = (int)opt_num(L, 2, "max_connections", 0, 2147483647.0);
  }
  return 1;
}

static int http_lua_srv_listen_on(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  int r = lc_tcp_accept_with(L, 2, lc_http_server_take, s);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:serve(sock): serve a connection accepted elsewhere (passed in a message) */
static int http_lua_srv_serve(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  uv_tcp_t *tcp = lc_tcp_detach(L, 2);
  if (tcp == NULL) return lc_push_fail(L, 0, "cannot serve this socket (closed, listening, or with writes in flight)");
  lc_http_server_take(s, tcp);
  lua_pushboolean(L, 1);
  return 1;
}

static int http_lua_srv_sink(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  int key = (int)luaL_checkinteger(L, 2);
  int r = lua_toboolean(L, 3) ? lc_sink_add(s->base.rt, key, lc_http_server_take, s) : (lc_sink_remove(s->base.rt, key, s), 0);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* srv:drain(fn): no new connections; idle keep-alive connections close when their client
 * next sends a request (answered with Connection: close) or their keep-alive timer ends;
 * fn() runs once the last connection is gone. */
static int http_lua_srv_drain(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lc_http_server_drain(s);
  if (s->nconns == 0) { lua_pushvalue(L, 2); lua_call(L, 0, 0); return 0; }
  luaL_unref(L, LUA_REGISTRYINDEX, s->drain_ref);
  lua_pushvalue(L, 2);
  s->drain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static int http_lua_srv_close(lua_State *L) {
  http_server *s = lc_handle_test(L, 1, LC_HTTP_MT_SERVER);
  if (s == NULL) return 0;
  s->closed = 1;
  s->draining = 1;
  lc_handle_release(&s->base);
  lc_http_server_maybe_free(s);
  return 0;
}

/* srv:set_tls(ctx): HTTPS from now on, with the certificates of a core.tls_server_new (loaded
 * once: the server holds a reference) */
static int http_lua_srv_set_tls(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  lc_tls_server *t = lc_tls_server_check(L, 2);
  lc_tls_server_ref(t);
  lc_tls_server_free(s->tls);
  s->tls = t;
  return 0;
}

/* core.http_tls(conn, seq) -> protocol, cipher, server_name | nil, session_reused, or nothing
 * (a plain connection) */
static http_conn *open_conn(lua_State *L);

static int http_lua_tls(lua_State *L) {
  http_conn *c = open_conn(L);
  const char *protocol, *cipher, *sni;
  int reused;
  if (c == NULL || !lc_http_tls_info(c, &protocol, &cipher, &sni, &reused)) return 0;
  lua_pushstring(L, protocol ? protocol : "");
  lua_pushstring(L, cipher ? cipher : "");
  if (sni) lua_pushstring(L, sni); else lua_pushnil(L);
  lua_pushboolean(L, reused);
  return 4;
}

static int http_lua_srv_stats(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, s->requests); lua_setfield(L, -2, "requests");
  lua_pushinteger(L, s->nconns); lua_setfield(L, -2, "connections");
  lua_pushnumber(L, s->conns_total); lua_setfield(L, -2, "connections_total");
  lua_pushnumber(L, s->closed_since_report); lua_setfield(L, -2, "closed");
  if (s->tls) { lua_pushnumber(L, s->tls_failures); lua_setfield(L, -2, "tls_handshake_failures"); }
  if (lua_toboolean(L, 2)) s->closed_since_report = 0;
  return 1;
}

/* srv:set_access_log(log | nil): log is a core.access_log_open object (kept alive by the caller) */
static int http_lua_srv_set_access_log(lua_State *L) {
  http_server *s = lc_handle_check(L, 1, LC_HTTP_MT_SERVER);
  s->alog = lua_isnoneornil(L, 2) ? NULL : lc_alog_check(L, 2);
  return 0;
}

/* core.http_stats() -> the process's HTTP counters (every server of this state) */
static int http_lua_stats(lua_State *L) {
  lc_http_stats *st = &lc_rt_get(L)->http;
  lua_createtable(L, 0, 11);
  lua_createtable(L, 5, 1);
  for (int i = 0; i <= 5; i++) { lua_pushnumber(L, st->status[i]); lua_rawseti(L, -2, i); }
  lua_setfield(L, -2, "status");
  lua_createtable(L, LC_HTTP_BUCKETS + 1, 0);
  for (int i = 0; i <= LC_HTTP_BUCKETS; i++) { lua_pushnumber(L, st->dur[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "buckets");
  lua_createtable(L, LC_HTTP_BUCKETS, 0);
  for (int i = 0; i < LC_HTTP_BUCKETS; i++) { lua_pushnumber(L, lc_http_bounds[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "bounds");
  lua_pushnumber(L, st->dur_sum); lua_setfield(L, -2, "duration_sum");
  lua_pushnumber(L, st->body_bytes); lua_setfield(L, -2, "body_bytes");
  lua_pushnumber(L, st->conns_open); lua_setfield(L, -2, "connections");
  lua_pushnumber(L, st->conns_total); lua_setfield(L, -2, "connections_total");
  lua_pushnumber(L, (lua_Number)lc_rt_get(L)->http_nspares); lua_setfield(L, -2, "spare_connections");
  lua_pushnumber(L, st->ws_open); lua_setfield(L, -2, "websockets");
  lua_pushnumber(L, st->ws_in); lua_setfield(L, -2, "websocket_messages_in");
  lua_pushnumber(L, st->ws_out); lua_setfield(L, -2, "websocket_messages_out");
  return 1;
}

/* ---- Lua: a connection and its request (what a handler answers through) ---- */

/* Arguments 1 and 2: the connection (a light userdata from the handler's call) and a seq. */
static http_conn *arg_conn(lua_State *L, uint64_t *seq) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  http_conn *c = lua_touserdata(L, 1);
  if (c == NULL) luaL_argerror(L, 1, "not a connection");
  lua_Number n = luaL_checknumber(L, 2);
  /* a seq is a whole number from 1 to 2^53; anything else matches no request (0) */
  *seq = n >= 1 && n < 9007199254740992.0 && n == (lua_Number)(uint64_t)n ? (uint64_t)n : 0;
  return c;
}

/* the connection, with *seq_ok set when seq is the request it is answering now */
static http_conn *check_conn(lua_State *L, uint32_t *seq_ok) {
  uint64_t seq;
  http_conn *c = arg_conn(L, &seq);
  *seq_ok = !c->closed && c->seq == seq && c->state == LC_HTTP_S_HANDLER;
  return c;
}

/* the connection when it is open and seq is one of its requests (answered or not), else NULL */
static http_conn *open_conn(lua_State *L) {
  uint64_t seq;
  http_conn *c = arg_conn(L, &seq);
  return !c->closed && seq >= c->first_seq && seq <= c->seq ? c : NULL;
}

static int push_gone(lua_State *L) {
  return lc_push_fail(L, 0, "the request is finished or its connection is closed");
}

/* a handler's mistake, found before anything was sent: false, reason (http.lua raises it at
 * the handler's line, or logs it with the handler's location, and answers 500) */
static int push_mistake(lua_State *L) {
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

/* core.http_respond(conn, seq, status, headers, body) -> true | nil, err | false, mistake: a whole response */
static int http_lua_respond(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  int status = (int)luaL_checkinteger(L, 3);
  int hidx = lua_istable(L, 4) ? 4 : 0;
  size_t blen = 0;
  const char *body = lua_isnoneornil(L, 5) ? "" : luaL_checklstring(L, 5, &blen);
  if (status < 100 || status > 999) return luaL_argerror(L, 3, "status must be from 100 to 999");
  if (!ok || c->req->resp_started) return push_gone(L);
  if (lc_http_respond(L, c, status, hidx, body, blen) != 0) return push_mistake(L);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.http_write_head(conn, seq, status, headers) -> true | nil, err | false, mistake: starts a
 * streamed response */
static int http_lua_write_head(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  int status = (int)luaL_checkinteger(L, 3);
  int hidx = lua_istable(L, 4) ? 4 : 0;
  if (status < 100 || status > 999) return luaL_argerror(L, 3, "status must be from 100 to 999");
  if (!ok || c->req->resp_started) return push_gone(L);
  if (lc_http_write_head(L, c, status, hidx) != 0) return push_mistake(L);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.http_write(conn, seq, chunk) -> true, queued | nil, err | false, mistake */
static int http_lua_write(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  /* after a 101 to a WebSocket (req->ws) the connection carries frames, never a body */
  if (!ok || !c->req->resp_started || c->req->ws) return push_gone(L);
  if (lc_http_over_length(L, c, len)) return push_mistake(L);
  if (lc_http_write_chunk(c, data, len) != 0) return push_gone(L);
  lua_pushboolean(L, 1);
  lua_pushnumber(L, (lua_Number)lc_http_conn_queued(c));
  return 2;
}

/* core.http_on_drain(conn, seq, fn) -> true: fn() runs once the queued output is down to half the limit
 * (or the connection is gone); false: nothing to wait for. res:write waits this way. */
static int http_lua_on_drain(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  /* written as far as the socket takes it now: what is left completes in a callback, which
   * runs fn (lc_http_fire_drain) */
  if (ok) lc_http_conn_flush(c);
  if (!ok || c->closed || lc_http_conn_queued(c) <= LC_HTTP_MAX_QUEUED_OUTPUT / 2 || c->drain_ref != LUA_NOREF) {
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushvalue(L, 3);
  c->drain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->stall_mark = SIZE_MAX;
  lc_http_conn_deadline(c, LC_HTTP_T_SEND, LC_HTTP_DL_SEND);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.http_finish(conn, seq [, chunk]) -> true [, short] | nil, err | false, mistake. short: the body
 * ended that many bytes before its declared Content-Length, so the connection is closed once
 * the response is out (the client sees a short body, not the start of the next response). */
static int http_lua_finish(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  size_t len = 0;
  const char *data = lua_isnoneornil(L, 3) ? NULL : luaL_checklstring(L, 3, &len);
  if (!ok || !c->req->resp_started || c->req->ws) return push_gone(L);
  if (data && lc_http_over_length(L, c, len)) return push_mistake(L);
  if (data) lc_http_write_chunk(c, data, len);
  unsigned long long short_by = lc_http_end_body(c);
  lc_http_conn_finish(c);
  lua_pushboolean(L, 1);
  if (short_by == 0) return 1;
  lua_pushnumber(L, (lua_Number)short_by);
  return 2;
}

/* core.http_headers(conn, seq) -> { lower-case name = value } (repeated names joined by ", ") */
static int http_lua_headers(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  if (!ok || c->req->ws) return push_gone(L);   /* (a WebSocket's head is released at its 101) */
  const char *head = lc_http_head_ptr(c);
  lua_createtable(L, 0, c->req->h.nfields);
  for (int i = 0; i < c->req->h.nfields; i++) {
    lc_http_field *f = &c->req->h.fields[i];
    /* lower-cased in place, whole: the copy of the head is ours, and only case-insensitive
     * lookups read its names after this (a name is as long as max_header_size allows; one cut
     * at a fixed size merged two names that differ after it) */
    char *name = (char *)head + f->name;
    for (size_t k = 0; k < f->name_len; k++)
      if (name[k] >= 'A' && name[k] <= 'Z') name[k] = (char)(name[k] + 32);
    lua_pushlstring(L, name, f->name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, head + f->value, f->value_len);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, head + f->value, f->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
  return 1;
}

/* core.http_peer(conn, seq) -> ip, port (looked up once per connection), or nothing: seq may
 * be any request of the connection's, answered or not */
static int http_lua_peer(lua_State *L) {
  http_conn *c = open_conn(L);
  if (c == NULL) return 0;
  char ip[64];
  int port;
  if (lc_http_peer(c, ip, sizeof ip, &port) != 0) return 0;
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

/* core.http_abort(conn, seq): closes the connection at once (a handler that failed
 * mid-stream), when seq is the request it is answering (a late abort of an earlier request
 * must not cut the answer to a later one) */
static int http_lua_abort(lua_State *L) {
  uint32_t ok;
  http_conn *c = check_conn(L, &ok);
  if (ok) lc_http_conn_close(c);
  return 0;
}

void lc_open_http(lua_State *L) {
  static const luaL_Reg srv_methods[] = {
    {"listen_on", http_lua_srv_listen_on}, {"sink", http_lua_srv_sink}, {"serve", http_lua_srv_serve}, {"drain", http_lua_srv_drain},
    {"close", http_lua_srv_close}, {"stats", http_lua_srv_stats}, {"set_tls", http_lua_srv_set_tls}, {"set_access_log", http_lua_srv_set_access_log}, {NULL, NULL},
  };
  lc_newmetatable(L, LC_HTTP_MT_SERVER, srv_methods);
  static const luaL_Reg fns[] = {
    {"http_server_new", http_lua_server_new}, {"http_stats", http_lua_stats},
    {"http_respond", http_lua_respond}, {"http_write_head", http_lua_write_head}, {"http_write", http_lua_write},
    {"http_finish", http_lua_finish}, {"http_on_drain", http_lua_on_drain}, {"http_headers", http_lua_headers},
    {"http_peer", http_lua_peer}, {"http_abort", http_lua_abort}, {"http_tls", http_lua_tls}, {NULL, NULL},
  };
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  lc_open_ws(L);
}
