/* ws_conn.c: a WebSocket as a state of an HTTP connection (DESIGN.md). After the 101 the
 * connection stays in LC_HTTP_S_HANDLER with its request (so Lua's conn + seq keep naming it and
 * close accounts it as a 101), req->ws set: its reader hands input to lc_ws_conn_input instead
 * of the HTTP parser, and its writer is the same queue. Frames are read by ws_frame.c; each
 * message, and the close, goes to one Lua function (core.ws_accept's fn(event, a, b)).
 *   core.ws_accept(conn, seq, head, max_message, fn, idle_ms, ping_ms [, pmd]) -> true, pending | nil, err:
 *     writes the 101 (head, built by luacluster.ws.handshake) and switches the reader; pending:
 *     frames the client sent before it read the 101, or its EOF, wait (core.ws_read(.., true)
 *     reads them, from a later loop turn: never from inside a coroutine); pmd: permessage-deflate's
 *     negotiated parameters (a table, ws_deflate.c compresses)
 *   core.ws_send(conn, seq, data, opcode, can_wait) -> true, queued | nil, err | false, err (text that is
 *     not UTF-8: the caller's mistake)
 *   core.ws_close(conn, seq, code, reason) -> true | nil, err | false, err (a reason not UTF-8):
 *     the close handshake's first frame
 *   core.ws_read(conn, seq, on): the Lua side's input backpressure: false stops reading (the
 *     messages it has not taken are enough), true reads again (what waits in the input first)
 * Timers (one deadline per connection, LC_HTTP_T_WS in the server's LC_HTTP_DL_WS list, moved
 * lazily: a frame only notes its time, the expiry computes the next due): idle_ms with no frame
 * -> close 1001 "idle timeout"; every ping_ms a ping, and a pong before the next one is due,
 * else close 1001 "ping timeout"; after our close frame, LC_WS_CLOSE_WAIT_MS for the peer's,
 * then the connection ends. While more than LC_WS_MAX_QUEUED is queued the connection's send
 * timeout runs instead (http_conn.c's LC_HTTP_T_SEND).
 * Owns: the lc_ws_conn (freed with the connection, lc_ws_conn_free) and its Lua reference, and
 * its permessage-deflate state (lc_ws_pmd, freed there too). */
#include "http_int.h"
#include "buf.h"
#include "ws_frame.h"
#include "ws_deflate.h"
#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

struct lc_ws_conn {
  lc_ws_parser ps;
  lc_buf msg;              /* the fragments of the message being read */
  int cb_ref;
  lc_ws_pmd *pmd;          /* permessage-deflate, when negotiated */
  lc_ws_sub *subs;         /* its topics (ws_fanout.c) */
  uint64_t last_in;        /* loop time of the last frame received (idle_ms) */
  uint64_t ping_at;        /* loop time of our last ping, or of the accept (ping_ms) */
  uint64_t close_due;      /* after our close: loop time the peer's close is waited for until */
  uint64_t last_byte;      /* loop time of the last read (a frame or message in progress may not stall) */
  uint32_t idle_ms, ping_ms;
  unsigned close_sent : 1, close_told : 1, lua_paused : 1, awaiting_pong : 1;
};

static uint64_t loop_now(http_conn *c) { return uv_now(c->srv->timer->loop); }
static int in_progress(http_conn *c, lc_ws_conn *ws);

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

/* a frame of ours on the connection's queue, bounded: past LC_WS_HARD_QUEUED (a client that
 * does not read, and writes that cannot wait: can_wait 0) the connection is closed; past
 * LC_WS_MAX_QUEUED its send timeout runs (lc_ws_conn_arm). Every frame goes this way, pongs and
 * closes too: a client that pings and never reads is closed by the send timeout like any other. */
static int queue_bytes(http_conn *c, int can_wait, const char *a, size_t alen, const char *b, size_t blen) {
  if (!can_wait && lc_http_conn_queued(c) > LC_WS_HARD_QUEUED) {
    lc_http_conn_close(c);
    return UV_ENOBUFS;
  }
  int r = lc_http_conn_write(c, a, alen, b, blen);
  if (r != 0) return r;
  if (c->timer_mode != LC_HTTP_T_SEND && lc_http_conn_queued(c) > LC_WS_MAX_QUEUED) lc_ws_conn_arm(c);
  return 0;
}

static int queue_frame(http_conn *c, int can_wait, unsigned opcode, const char *data, size_t len) {
  unsigned char h[10];
  size_t hl = lc_ws_frame_header(h, 1, 0, opcode, len);
  return queue_bytes(c, can_wait, (const char *)h, hl, data, len);
}

/* a control frame (pong, close, our ping): it may always be queued (no hard bound) */
static int send_frame(http_conn *c, unsigned opcode, const char *data, size_t len) {
  return queue_frame(c, 1, opcode, data, len);
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
  /* the peer's close is waited for a bounded time (lc_ws_conn_expire), never for ever */
  ws->close_due = loop_now(c) + LC_WS_CLOSE_WAIT_MS;
  lc_ws_conn_arm(c);
}

void lc_ws_conn_free(http_conn *c, lc_ws_conn *ws) {
  lc_ws_fanout_conn_gone(c->srv->base.rt, &ws->subs);
  c->srv->base.rt->http.ws_open--;
  tell_close(c, ws, 1006, "", 0);   /* gone without a close frame */
  lc_http_ref_run(c->srv->base.rt, ws->cb_ref, 0);
  ws->cb_ref = LUA_NOREF;
  lc_buf_free(&ws->msg);
  lc_ws_pmd_free(ws->pmd);
  free(ws);
}

/* the connection ends once our close is written; its request (the 101) is accounted now, since
 * lc_http_conn_close accounts only a connection still in LC_HTTP_S_HANDLER */
static void ws_end(http_conn *c) {
  if (c->closed || c->state != LC_HTTP_S_HANDLER) return;
  lc_http_account(c, 101, 0, 1);
  lc_http_conn_end(c);
}

/* a protocol error: our close with its code, the end of the connection, the close told to Lua */
static void fail_close(http_conn *c, lc_ws_conn *ws, int code, const char *err) {
  send_close(c, ws, code, err, strlen(err));
  ws_end(c);
  c->in_off = c->in_len;
  tell_close(c, ws, code, err, strlen(err));
}

/* ---- permessage-deflate (ws_deflate.c) ---- */

/* a compressed message (RSV1 on its first frame) inflated into plain, bounded by max_message_size;
 * on failure the connection is closed (1007, 1009, 1011) and -1 returned */
static int inflate_message(http_conn *c, lc_ws_conn *ws, unsigned opcode, const char **data, size_t *len,
                           lc_buf *plain) {
  const char *err = NULL;
  int code = lc_ws_pmd_inflate(ws->pmd, (const unsigned char *)*data, *len, ws->ps.max_message, opcode == LC_WS_TEXT,
                               plain, &err);
  if (code != 0) {
    lc_buf_free(plain);
    fail_close(c, ws, code, err);
    return -1;
  }
  *data = plain->data ? plain->data : "";
  *len = plain->len;
  return 0;
}

/* a data message of ws:send, compressed (RSV1) when permessage-deflate was negotiated, queued
 * with the backpressure rules of queue_bytes */
static int send_message(http_conn *c, lc_ws_conn *ws, int can_wait, unsigned opcode, const char *data, size_t len) {
  if (ws->pmd == NULL || opcode == LC_WS_PING) return queue_frame(c, can_wait, opcode, data, len);
  lc_buf z;
  lc_buf_init(&z, 0);
  int r = lc_ws_pmd_deflate(ws->pmd, (const unsigned char *)data, len, &z);
  if (r == 0) {
    unsigned char h[10];
    size_t hl = lc_ws_frame_header(h, 1, LC_WS_RSV1, opcode, z.len);
    r = queue_bytes(c, can_wait, (const char *)h, hl, z.data, z.len);
  }
  lc_buf_free(&z);
  return r;
}

/* core.ws_accept's pmd table -> ws->pmd: 0, or -1 (out of memory or a bad table) */
static int pmd_from_lua(lua_State *L, int idx, lc_ws_conn *ws) {
  static const char *const names[] = {"server_no_context_takeover", "client_no_context_takeover",
                                      "server_max_window_bits", "client_max_window_bits", "level", "mem_level"};
  int v[6];
  for (int i = 0; i < 6; i++) {
    lua_getfield(L, idx, names[i]);
    v[i] = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lc_ws_pmd_params p = {v[0], v[1], v[2], v[3], v[4], v[5]};
  ws->pmd = lc_ws_pmd_new(&p);
  return ws->pmd ? 0 : -1;
}
/* ---- for ws_fanout.c ---- */

lc_ws_sub **lc_ws_conn_subs(http_conn *c) {
  return (c->req && c->req->ws && !c->closed && !c->req->ws->close_sent) ? &c->req->ws->subs : NULL;
}

/* a frame built once for many sockets: 0 queued, 1 over max_queued (nothing queued), -1 closing */
int lc_ws_conn_queue_framed(http_conn *c, const char *h, size_t hlen, const char *data, size_t len, size_t max_queued) {
  lc_ws_conn *ws = c->req ? c->req->ws : NULL;
  if (ws == NULL || c->closed || ws->close_sent) return -1;
  if (lc_http_conn_queued(c) > max_queued) return 1;
  if (queue_bytes(c, 0, h, hlen, data, len) != 0) return -1;
  c->srv->base.rt->http.ws_out++;
  return 0;
}

/* the server ends the WebSocket with code (1008 for a subscriber too slow): told to Lua */
void lc_ws_conn_fail(http_conn *c, int code, const char *reason) {
  lc_ws_conn *ws = c->req ? c->req->ws : NULL;
  if (ws == NULL || c->closed || ws->close_sent) return;
  fail_close(c, ws, code, reason);
}

static http_conn *ws_arg(lua_State *L);
http_conn *lc_ws_conn_arg(lua_State *L) { return ws_arg(L); }

/* The peer closed its side before the 101 (its EOF came while the handler ran, and was kept
 * for the answer): once what it sent is read, it is gone, as after an EOF that comes later
 * (1006). It stayed open for ever, its socket in CLOSE-WAIT: nothing reads it any more. */
static void peer_gone(http_conn *c, lc_ws_conn *ws) {
  if (!c->peer_closed || c->closed || c->state != LC_HTTP_S_HANDLER || c->req == NULL || c->req->ws != ws ||
      ws->lua_paused)
    return;
  ws_end(c);   /* what is queued is written first (the 101, answers to its frames) */
  tell_close(c, ws, 1006, "", 0);
}

/* the frames in c->in[in_off..in_len) */
void lc_ws_conn_input(http_conn *c) {
  lc_ws_conn *ws = c->req->ws;
  uint64_t now = loop_now(c);
  ws->last_byte = now;
  while (!c->closed && c->in_off < c->in_len && c->req && c->req->ws == ws && !ws->lua_paused) {
    lc_ws_event ev;
    long long r = lc_ws_next(&ws->ps, (unsigned char *)c->in + c->in_off, c->in_len - c->in_off, &ev);
    if (r == 0) break;
    if (r < 0) {
      fail_close(c, ws, ev.close_code, ev.err);
      break;
    }
    c->in_off += (size_t)r;
    ws->last_in = now;
    if (ws->close_sent && ev.opcode != LC_WS_CLOSE) continue;   /* closing: only its close counts */
    if (ev.opcode == LC_WS_PING) { send_frame(c, LC_WS_PONG, (const char *)ev.data, ev.len); continue; }
    if (ev.opcode == LC_WS_PONG) { ws->awaiting_pong = 0; continue; }
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
    lc_buf plain = {0};
    if ((ev.msg_rsv & LC_WS_RSV1) && inflate_message(c, ws, ev.opcode, &data, &len, &plain) != 0) break;
    ws_event e = {ws, "message", data, len, 0, ev.opcode == LC_WS_TEXT ? "text" : "binary"};
    c->srv->base.rt->http.ws_in++;
    lc_call_with(c->srv->base.rt, ws_push_event, &e);
    lc_buf_free(&plain);
    if (c->closed || c->req == NULL || c->req->ws != ws) return;
    if (ws->msg.len > 0) lc_buf_free(&ws->msg);
  }
  /* a frame begun: its deadline (the timer is lazy, and may have had nothing to wait for) */
  if (!c->closed && c->req && c->req->ws == ws && in_progress(c, ws) && c->srv->header_timeout &&
      (c->timer_mode == LC_HTTP_T_NONE || (c->timer_mode == LC_HTTP_T_WS && c->deadline > now + c->srv->header_timeout)))
    lc_ws_conn_arm(c);
  peer_gone(c, ws);
}

/* ---- backpressure and timers ---- */

int lc_ws_conn_paused(http_conn *c) {
  return c->req && c->req->ws && c->req->ws->lua_paused;
}


/* a frame, or a fragmented message, the client has begun and not finished (not counting what
 * waits because the Lua side stopped the reading): like an HTTP body, it may pause between reads
 * no longer than the server's header_timeout, whatever idle_timeout says */
static int in_progress(http_conn *c, lc_ws_conn *ws) {
  return !ws->lua_paused && (c->in_off < c->in_len || ws->msg.len > 0);
}

void lc_ws_conn_arm(http_conn *c) {
  if (c->closed || c->state != LC_HTTP_S_HANDLER || c->req == NULL || c->req->ws == NULL) return;
  lc_ws_conn *ws = c->req->ws;
  /* a client that does not read: some bytes taken each send_timeout, or closed (http_conn.c) */
  if (lc_http_conn_queued(c) > LC_WS_MAX_QUEUED || c->drain_ref != LUA_NOREF) {
    if (c->timer_mode != LC_HTTP_T_SEND) {
      c->stall_mark = SIZE_MAX;
      lc_http_conn_deadline(c, LC_HTTP_T_SEND, LC_HTTP_DL_SEND);
    }
    return;
  }
  uint64_t due = UINT64_MAX;
  if (ws->close_sent) due = ws->close_due;
  else {
    if (ws->idle_ms) due = ws->last_in + ws->idle_ms;
    if (ws->ping_ms && ws->ping_at + ws->ping_ms < due) due = ws->ping_at + ws->ping_ms;
    if (c->srv->header_timeout && in_progress(c, ws) && ws->last_byte + c->srv->header_timeout < due)
      due = ws->last_byte + c->srv->header_timeout;
  }
  if (due == UINT64_MAX) {
    if (c->timer_mode != LC_HTTP_T_NONE) lc_http_conn_no_deadline(c);
    return;
  }
  if (c->timer_mode != LC_HTTP_T_WS || c->deadline != due) lc_http_conn_deadline_at(c, LC_HTTP_T_WS, LC_HTTP_DL_WS, due);
}

/* a close we start (a timeout): our frame, Lua told at once (its receive returns), then the
 * peer's close is waited for */
static void close_for(http_conn *c, lc_ws_conn *ws, int code, const char *reason) {
  send_close(c, ws, code, reason, strlen(reason));
  lc_http_conn_flush(c);
  tell_close(c, ws, code, reason, strlen(reason));
}

void lc_ws_conn_expire(http_conn *c) {
  if (c->closed || c->state != LC_HTTP_S_HANDLER || c->req == NULL || c->req->ws == NULL) return;
  lc_ws_conn *ws = c->req->ws;
  uint64_t now = loop_now(c);
  if (ws->close_sent) {
    if (now >= ws->close_due) { ws_end(c); return; }   /* the peer did not answer our close */
  } else if (ws->lua_paused) {
    /* we stopped reading (its Lua side has not taken its messages): the peer's silence is ours */
    ws->last_in = ws->ping_at = now;
    ws->awaiting_pong = 0;
  } else if (ws->idle_ms && now >= ws->last_in + ws->idle_ms) {
    close_for(c, ws, 1001, "idle timeout");
    return;
  } else if (c->srv->header_timeout && in_progress(c, ws) && now >= ws->last_byte + c->srv->header_timeout) {
    close_for(c, ws, 1001, "frame timeout");
    return;
  } else if (ws->ping_ms && now >= ws->ping_at + ws->ping_ms) {
    if (ws->awaiting_pong) { close_for(c, ws, 1001, "ping timeout"); return; }
    ws->awaiting_pong = 1;
    ws->ping_at = now;
    send_frame(c, LC_WS_PING, "", 0);
    lc_http_conn_flush(c);
  }
  lc_ws_conn_arm(c);
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
  lua_Number idle = luaL_optnumber(L, 6, 0), ping = luaL_optnumber(L, 7, 0);
  if (c == NULL || c->req->resp_started || c->req->ws) return lc_push_fail(L, 0, "the request is finished or its connection is closed");
  lc_ws_conn *ws = calloc(1, sizeof *ws);
  if (ws == NULL) return lc_push_fail(L, UV_ENOMEM, "a WebSocket");
  lc_buf_init(&ws->msg, 0);
  if (lua_istable(L, 8) && pmd_from_lua(L, 8, ws) != 0) {
    free(ws);
    return lc_push_fail(L, UV_ENOMEM, "a WebSocket's permessage-deflate");
  }
  /* 0: no limit; so is anything a uint64_t does not hold (math.huge: a cast would be undefined) */
  lc_ws_parser_init(&ws->ps, max > 0 && max < 18446744073709551616.0 ? (uint64_t)max : 0, ws->pmd ? LC_WS_RSV1 : 0);
  lua_pushvalue(L, 5);
  ws->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  ws->idle_ms = idle > 0 ? (idle < 4e9 ? (uint32_t)idle : 4000000000u) : 0;
  ws->ping_ms = ping > 0 ? (ping < 4e9 ? (uint32_t)ping : 4000000000u) : 0;
  ws->last_in = ws->ping_at = ws->last_byte = loop_now(c);
  c->srv->base.rt->http.ws_open++;
  http_req *r = c->req;
  r->ws = ws;
  r->resp_started = 1;
  r->resp_status = 101;
  r->head_len = 0;            /* the request's head is read: the input keeps frames only */
  c->keepalive = 0;
  if (lc_http_conn_write(c, head, hlen, NULL, 0) != 0) return lc_push_fail(L, 0, "the connection is closed");
  lc_http_conn_flush(c);
  if (c->closed) return lc_push_fail(L, 0, "the connection is closed");
  lc_ws_conn_arm(c);
  lua_pushboolean(L, 1);
  /* frames sent before the 101 was read, or the peer's EOF (peer_gone): read from a later turn */
  lua_pushboolean(L, c->in_off < c->in_len || c->peer_closed);
  return 2;
}

static int utf8_valid(const char *p, size_t n) {
  lc_utf8 u;
  lc_utf8_init(&u);
  return lc_utf8_feed(&u, (const unsigned char *)p, n) == 0 && lc_utf8_complete(&u);
}

/* core.utf8_valid(s) -> boolean: what a text message must be (pubsub.publish checks with it) */
static int ws_lua_utf8_valid(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, utf8_valid(s, len));
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
  /* a text message is UTF-8 (RFC 6455 5.6): a client must fail the connection with 1007 on one
   * that is not, so it is refused here, the caller's mistake (false: socket.lua raises) */
  if (opcode == LC_WS_TEXT && !utf8_valid(data, len)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "text is not valid UTF-8 (send bytes as \"binary\")");
    return 2;
  }
  /* in a coroutine luacluster runs, ws:send waits past LC_WS_MAX_QUEUED (luacluster.ws.socket
   * says so: argument 5); elsewhere (the main thread, a coroutine of the app's own) it cannot,
   * and LC_WS_HARD_QUEUED bounds it */
  int can_wait = lua_toboolean(L, 5);
  if (send_message(c, c->req->ws, can_wait, (unsigned)opcode, data, len) != 0) return lc_push_fail(L, 0, "closed");
  if (opcode != LC_WS_PING) c->srv->base.rt->http.ws_out++;
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
  if (!utf8_valid(reason, rlen)) {   /* (the client would fail it with 1007) */
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "the reason is not valid UTF-8");
    return 2;
  }
  if (c == NULL || c->req->ws == NULL || c->req->ws->close_sent) return lc_push_fail(L, 0, "closed");
  send_close(c, c->req->ws, code, reason, rlen);
  lc_http_conn_flush(c);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.ws_read(conn, seq, on) -> true | nil, err */
static int ws_lua_read(lua_State *L) {
  http_conn *c = ws_arg(L);
  int on = lua_toboolean(L, 3);
  if (c == NULL || c->req->ws == NULL) return lc_push_fail(L, 0, "closed");
  lc_ws_conn *ws = c->req->ws;
  if (!on) {
    ws->lua_paused = 1;
    lc_http_conn_pause_input(c);
  } else {
    ws->lua_paused = 0;
    lc_ws_conn_input(c);   /* what waits in the input first (it may pause again) */
    if (!c->closed && c->req && c->req->ws == ws && !ws->lua_paused) {
      lc_http_conn_update_pauses(c);
      lc_http_conn_flush(c);   /* pongs, a close answered meanwhile */
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lc_open_ws(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"ws_accept", ws_lua_accept}, {"ws_send", ws_lua_send}, {"ws_close", ws_lua_close}, {"ws_read", ws_lua_read},
    {"utf8_valid", ws_lua_utf8_valid}, {NULL, NULL},
  };
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
