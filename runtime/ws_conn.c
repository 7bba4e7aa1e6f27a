/* ws_conn.c: a WebSocket as a state of an HTTP connection (DESIGN.md). After the 101 the
 * connection stays in LC_HTTP_S_HANDLER with its request (so Lua's conn + seq keep naming it and
 * close accounts it as a 101), req->ws set: its reader hands input to lc_ws_conn_input instead
 * of the HTTP parser, and its writer is the same queue. Frames are read by ws_frame.c; each
 * message, and the close, goes to one Lua function (core.ws_accept's fn(event, a, b)).
 *   core.ws_accept(conn, seq, head, max_message, fn) -> true | nil, err: writes the 101 (head,
 *     built by luacluster.ws.handshake) and switches the reader
 *   core.ws_send(conn, seq, data, opcode) -> true, queued | nil, err
 *   core.ws_close(conn, seq, code, reason) -> true | nil, err: the close handshake's first frame
 * Owns: the lc_ws_conn (freed with the connection, lc_ws_conn_free) and its Lua reference. */
#include "http_int.h"
#include "buf.h"
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>

struct lc_ws_conn {
  lc_ws_parser ps;
  lc_buf msg;              /* the fragments of the message being read */
  int cb_ref;
  unsigned close_sent : 1, close_told : 1;
};

typedef struct ws_event { lc_ws_conn *ws; const char *what; const char *a; size_t alen; int num; const char *kind; } ws_event;

static int ws_push_event(lua_State *L, void *ud) {
  ws_event *e = ud;
  if (e->ws->cb_ref == LUA_NOREF) return -1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->ws->cb_ref);
  lua_pushstring(L, e->what);
  if (e->kind) {   /* message: data, kind */
    lua_pushlstring(L, e->a, e->alen);
    lua_pushstring(L, e->kind);
  } else {         /* close: code, reason */
    lua_pushinteger(L, e->num);
    lua_pushlstring(L, e->a, e->alen);
  }
  return 3;
}

static void tell_close(http_conn *c, lc_ws_conn *ws, int code, const char *reason, size_t rlen) {
  if (ws->close_told) return;
  ws->close_told = 1;
  ws_event e = {ws, "close", reason, rlen, code, NULL};
  lc_call_with(c->srv->base.rt, ws_push_event, &e);
}

static int send_frame(http_conn *c, unsigned opcode, const char *data, size_t len) {
  unsigned char h[10];
  size_t hl = lc_ws_frame_header(h, 1, 0, opcode, len);
  return lc_http_conn_write(c, (const char *)h, hl, data, len);
}

/* our close frame (once), then the connection ends when it is written */
static void send_close(http_conn *c, lc_ws_conn *ws, int code, const char *reason, size_t rlen) {
  if (ws->close_sent || c->closed) return;
  ws->close_sent = 1;
  char p[125];
  size_t n = 0;
  if (code != 1005) {
    if (rlen > 123) {   /* cut to fit 125 bytes, never inside a UTF-8 sequence (8.1) */
      rlen = 123;
      while (rlen > 0 && ((unsigned char)reason[rlen] & 0xC0) == 0x80) rlen--;
    }
    p[0] = (char)(code >> 8); p[1] = (char)code;
    memcpy(p + 2, reason, rlen);
    n = 2 + rlen;
  }
  send_frame(c, LC_WS_CLOSE, p, n);
}

void lc_ws_conn_free(http_conn *c, lc_ws_conn *ws) {
  tell_close(c, ws, 1006, "", 0);   /* gone without a close frame */
  lc_http_ref_run(c->srv->base.rt, ws->cb_ref, 0);
  ws->cb_ref = LUA_NOREF;
  lc_buf_free(&ws->msg);
  free(ws);
}

/* the connection ends once our close is written; its request (the 101) is accounted now, since
 * lc_http_conn_close accounts only a connection still in LC_HTTP_S_HANDLER */
static void ws_end(http_conn *c) {
  if (c->closed || c->state != LC_HTTP_S_HANDLER) return;
  lc_http_account(c, 101, 0, 1);
  lc_http_conn_end(c);
}

/* the frames in c->in[in_off..in_len) */
void lc_ws_conn_input(http_conn *c) {
  lc_ws_conn *ws = c->req->ws;
  while (!c->closed && c->in_off < c->in_len && c->req && c->req->ws == ws) {
    lc_ws_event ev;
    long long r = lc_ws_next(&ws->ps, (unsigned char *)c->in + c->in_off, c->in_len - c->in_off, &ev);
    if (r == 0) break;
    if (r < 0) {
      send_close(c, ws, ev.close_code, ev.err, strlen(ev.err));
      ws_end(c);
      c->in_off = c->in_len;
      tell_close(c, ws, ev.close_code, ev.err, strlen(ev.err));
      break;
    }
    c->in_off += (size_t)r;
    if (ws->close_sent && ev.opcode != LC_WS_CLOSE) continue;   /* closing: only its close counts */
    if (ev.opcode == LC_WS_PING) { send_frame(c, LC_WS_PONG, (const char *)ev.data, ev.len); continue; }
    if (ev.opcode == LC_WS_PONG) continue;
    if (ev.opcode == LC_WS_CLOSE) {
      /* echo the peer's code (5.5.1), then the connection ends once it is written */
      send_close(c, ws, ev.close_code, "", 0);
      ws_end(c);
      c->in_off = c->in_len;
      tell_close(c, ws, ev.close_code, (const char *)ev.reason, ev.reason_len);
      break;
    }
    const char *data = (const char *)ev.data;
    size_t len = ev.len;
    if (!ev.fin || ws->msg.len > 0) {
      if (lc_buf_append(&ws->msg, ev.data, ev.len) != 0) {
        send_close(c, ws, 1011, "out of memory", 13);
        ws_end(c);
        tell_close(c, ws, 1011, "out of memory", 13);
        break;
      }
      if (!ev.fin) continue;
      data = ws->msg.data; len = ws->msg.len;
    }
    ws_event e = {ws, "message", data, len, 0, ev.opcode == LC_WS_TEXT ? "text" : "binary"};
    lc_call_with(c->srv->base.rt, ws_push_event, &e);
    if (c->closed || c->req == NULL || c->req->ws != ws) return;
    if (ws->msg.len > 0) lc_buf_free(&ws->msg);
  }
}

/* the connection when seq is its request and it is a WebSocket */
static http_conn *ws_arg(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  http_conn *c = lua_touserdata(L, 1);
  lua_Number n = luaL_checknumber(L, 2);
  if (c == NULL || c->closed || c->state != LC_HTTP_S_HANDLER || (lua_Number)c->seq != n || c->req == NULL) return NULL;
  return c;
}

static int ws_lua_accept(lua_State *L) {
  http_conn *c = ws_arg(L);
  size_t hlen;
  const char *head = luaL_checklstring(L, 3, &hlen);
  lua_Number max = luaL_checknumber(L, 4);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  if (c == NULL || c->req->resp_started || c->req->ws) return lc_push_fail(L, 0, "the request is finished or its connection is closed");
  lc_ws_conn *ws = calloc(1, sizeof *ws);
  if (ws == NULL) return lc_push_fail(L, UV_ENOMEM, "a WebSocket");
  lc_ws_parser_init(&ws->ps, max > 0 ? (uint64_t)max : 0, 0);
  lc_buf_init(&ws->msg, 0);
  lua_pushvalue(L, 5);
  ws->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  http_req *r = c->req;
  r->ws = ws;
  r->resp_started = 1;
  r->resp_status = 101;
  r->head_len = 0;            /* the request's head is read: the input keeps frames only */
  c->keepalive = 0;
  if (lc_http_conn_write(c, head, hlen, NULL, 0) != 0) return lc_push_fail(L, 0, "the connection is closed");
  lc_http_conn_flush(c);
  lua_pushboolean(L, 1);
  return 1;
}

static int ws_lua_send(lua_State *L) {
  http_conn *c = ws_arg(L);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  int opcode = (int)luaL_checkinteger(L, 4);
  if (opcode != LC_WS_TEXT && opcode != LC_WS_BINARY && opcode != LC_WS_PING) return luaL_argerror(L, 4, "opcode");
  if (opcode == LC_WS_PING && len > 125) return luaL_argerror(L, 3, "a ping carries at most 125 bytes");
  if (c == NULL || c->req->ws == NULL || c->req->ws->close_sent) return lc_push_fail(L, 0, "closed");
  if (send_frame(c, (unsigned)opcode, data, len) != 0) return lc_push_fail(L, 0, "closed");
  lua_pushboolean(L, 1);
  lua_pushnumber(L, (lua_Number)lc_http_conn_queued(c));
  return 2;
}

static int ws_lua_close(lua_State *L) {
  http_conn *c = ws_arg(L);
  int code = (int)luaL_optinteger(L, 3, 1000);
  size_t rlen = 0;
  const char *reason = luaL_optlstring(L, 4, "", &rlen);
  if (code != 1005 && !lc_ws_close_code_valid((unsigned)code)) return luaL_argerror(L, 3, "not a close code a peer may send");
  if (c == NULL || c->req->ws == NULL || c->req->ws->close_sent) return lc_push_fail(L, 0, "closed");
  send_close(c, c->req->ws, code, reason, rlen);
  lc_http_conn_flush(c);
  lua_pushboolean(L, 1);
  return 1;
}

void lc_open_ws(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"ws_accept", ws_lua_accept}, {"ws_send", ws_lua_send}, {"ws_close", ws_lua_close}, {NULL, NULL},
  };
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
