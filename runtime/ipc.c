/* ipc.c: a framed message channel between two processes over a libuv IPC pipe.
 * Owns: the uv_pipe_t, its read buffer, its batch of unsent frames, the write requests in
 * flight (each owns its bytes), and the sockets received but not yet claimed by a frame.
 * All of it is freed in ipc_close_cb. Frames written in one loop turn leave together: send()
 * appends to the channel's write queue (write_queue.c) and rt's flusher flushes every dirty
 * queue once per turn, with one uv_try_write when the pipe is idle. A frame that carries a
 * socket is written on its own with uv_write2, after the batch before it, so order is kept.
 * In the master, ROUTE and BCAST frames are forwarded here, in C, without entering Lua.
 * Sizes: a payload is at most LC_MAX_FRAME_PAYLOAD (what a LuaJIT string holds), every size is
 * a size_t and every sum is checked. What the peer controls: every header field, the order of
 * bytes and sockets; a socket is claimed only by the frame it came with (the first byte of
 * that frame's write), and one no frame can claim is closed at once.
 * Every entry into Lua from a libuv callback goes through lc_call_with (rt.c): the pushes of
 * the arguments happen inside the protected call, so out of memory there is an error logged,
 * not an abort.
 * Dispatched connections (CONN frames, master -> worker) are acknowledged here, per frame, as
 * they are read and before any Lua runs: a CONN frame back (worker -> master, no socket, same
 * key and seq) says taken (empty payload) or not (one byte: its socket did not arrive, or no
 * server here takes that key), and the master's dispatch (tcp.c) closes or re-sends its copy.
 * A frame with seq 0 was sent without a copy kept and is not acknowledged. The master counts
 * the frames each channel has not acknowledged yet (lc_ipc_unacked) and hears of a CONN frame
 * whose write failed (lc_tcp_conn_unsent). */
#include "lc.h"
#include "bindings.h"
#include "ipc.h"
#include "dispatch.h"
#include "tcp.h"
#include "write_queue.h"
#include "buf.h"
#include "ipc_frame.h"
#include "pubsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <limits.h>

#define MT "luacluster.ipc"
#define READ_CHUNK 65536
#define DEFAULT_MAX_FRAME LC_IPC_DEFAULT_MAX_FRAME
#define MAX_PENDING_HANDLES 64
#define LOST_QUIET_MS 1000       /* a burst of connections not taken ends after a quiet second */
#define LOST_BURST_MAX_MS 10000  /* or after 10 s: a line then, and another burst */

struct lc_ipc {
  lc_handle_base base;
  uv_pipe_t pipe;
  lc_buf in;               /* read, not yet delivered from in_off on */
  size_t in_off;
  lc_wq wq;                /* frames to write: batched, flushed once per loop turn (rt->flusher) */
  size_t discard;          /* payload bytes still to skip after an oversized frame */
  size_t max_frame;        /* payload bytes; LC_MAX_FRAME_PAYLOAD at most */
  int route_id;            /* > 0: reachable by ROUTE/BCAST frames (master side of a worker) */
  lc_ipc *route_next;      /* the channels of one id: the newest heads rt->routes[id - 1] and
                              gets ROUTE frames; older ones (a reload's draining workers) stay
                              on the list for BCAST frames until they close */
  int closing, close_when_flushed, started;
  uv_stream_t *handles[MAX_PENDING_HANDLES];
  int nhandles;
  int missing;             /* frames whose announced socket did not arrive, since one did */
  uv_stream_t *pending;    /* the socket of the frame being delivered, until Lua holds it */
  uint64_t serial;         /* unique per channel in this process: the master's dispatch keys
                              its copies by it (a reload's new worker reuses the route id) */
  int unacked;             /* the master: CONN frames with a copy kept, not yet acknowledged */
  double burst_lost, burst_returned;  /* a worker: connections not taken in the current burst */
  uint64_t burst_start;
  uv_timer_t *burst_timer; /* ends a burst (its log line); made on first use */
  double frames_in, frames_out, bytes_in, bytes_out;
  double msgs_in, msgs_out;  /* the scripts' own frames (messages, requests, replies), for metrics */
};

/* a frame a script sent (not the runtime's control frames or dispatched connections) */
#define IS_USER_KIND(k) ((k) != LC_KIND_CTRL && (k) != LC_KIND_CONN && (k) != LC_KIND_ROUTE_FAIL && (k) < LC_KIND_PS_PUB)

/* how much room to ask for when a frame has `have` bytes here and misses `missing` more:
 * all of them, or as many as it has already (a doubling of what arrived), when that is less */
static size_t growth(size_t have, size_t missing) {
  size_t step = have > READ_CHUNK ? have : READ_CHUNK;
  return missing < step ? missing : step;
}

#define free_handle_cb lc_free_handle_cb

/* ---- writing ---- */

static void try_close(lc_ipc *ch);

/* a frame that carried a socket is written (or failed): the socket's descriptor has left */
typedef struct ipc_sent_ctx {
  lc_ipc *ch;
  uv_stream_t *sent_handle;  /* closed once written: ownership moved to the peer */
  int conn_key;              /* a CONN frame with a copy kept by the master: its key and seq */
  uint32_t conn_seq;
} ipc_sent_ctx;

static void ipc_sent_cb(void *ctx, int status) {
  ipc_sent_ctx *s = ctx;
  lc_ipc *ch = s->ch;
  /* a failed write shows up as EOF or an error on the read side; but a connection that did not
   * leave goes back to the master's dispatch now (the channel may stay open: ETOOMANYREFS) */
  if (status < 0 && s->conn_seq != 0) lc_tcp_conn_unsent(ch->base.rt, ch, s->conn_key, s->conn_seq);
  if (s->sent_handle) uv_close((uv_handle_t *)s->sent_handle, free_handle_cb);
  free(s);
}

/* after each write of the channel's queue: a close waiting for its writes goes on */
static void ipc_written_cb(lc_wq *q, int status) {
  lc_ipc *ch = q->data;
  (void)status;
  if (ch->close_when_flushed) try_close(ch);
}

void lc_ipc_flush_all(lc_rt *rt) {
  lc_wq_flush_all(&rt->flusher);
}

/* (a channel that is closing takes nothing: it would go back on the dirty list after its
 * close callback freed it) */
static int append_frame(lc_ipc *ch, const lc_frame_header *h, const char *payload) {
  if (ch->closing) return UV_EPIPE;
  if (h->len > LC_MAX_FRAME_PAYLOAD) return UV_E2BIG;
  unsigned char head[LC_FRAME_HEADER];
  lc_frame_encode(head, h);
  uv_buf_t bufs[2];
  bufs[0].base = (char *)head;
  bufs[0].len = LC_FRAME_HEADER;
  bufs[1].base = (char *)payload;
  bufs[1].len = h->len;
  int r = lc_wq_write(&ch->wq, bufs, 2);
  if (r != 0) return r;
  ch->frames_out++;
  ch->msgs_out += IS_USER_KIND(h->kind);
  ch->bytes_out += (double)lc_frame_size(h->len);
  return 0;
}

/* a frame without a socket, queued behind the others (pubsub: ps_route.c): 0 or UV_E* */
int lc_ipc_send_frame(lc_ipc *ch, const lc_frame_header *h, const char *payload) {
  if (ch->close_when_flushed) return UV_EPIPE;
  return append_frame(ch, h, payload);
}

lc_rt *lc_ipc_rt(const lc_ipc *ch) { return ch->base.rt; }

size_t lc_ipc_max_frame(const lc_ipc *ch) { return ch->max_frame; }

size_t lc_ipc_queued(const lc_ipc *ch) { return lc_wq_queued(&ch->wq); }

static int write_with_handle(lc_ipc *ch, const lc_frame_header *h, const char *payload, uv_stream_t *handle,
                             uint32_t conn_seq) {
  if (ch->closing) return UV_EPIPE;
  if (h->len > LC_MAX_FRAME_PAYLOAD) return UV_E2BIG;
  size_t size = lc_frame_size(h->len);
  ipc_sent_ctx *s = malloc(sizeof *s);
  char *buf = malloc(size);
  if (s == NULL || buf == NULL) { free(s); free(buf); return UV_ENOMEM; }
  lc_frame_encode((unsigned char *)buf, h);
  memcpy(buf + LC_FRAME_HEADER, payload, h->len);
  s->ch = ch;
  s->sent_handle = NULL;
  s->conn_key = (int)h->peer;
  s->conn_seq = conn_seq;
  int r = lc_wq_write2(&ch->wq, buf, size, handle, ipc_sent_cb, s);
  free(buf);
  if (r != 0) { free(s); return r; }
  /* Written already (nothing left in the pipe's queue): the socket has left with sendmsg and
   * libuv no longer refers to it, so its descriptor is closed now, not at the write callback
   * of the next loop turn (a burst of dispatched connections held two descriptors each). */
  if (uv_stream_get_write_queue_size((uv_stream_t *)&ch->pipe) == 0) uv_close((uv_handle_t *)handle, free_handle_cb);
  else s->sent_handle = handle;
  ch->frames_out++;
  ch->msgs_out += IS_USER_KIND(h->kind);
  ch->bytes_out += (double)size;
  return 0;
}

/* Sends an accepted connection to the server `key` in the peer (dispatch mode); seq != 0: the
 * master keeps a copy and the peer acknowledges the frame (counted in unacked until then). */
int lc_ipc_send_conn(lc_ipc *ch, int key, uv_tcp_t *conn, uint32_t seq) {
  if (ch == NULL || ch->closing || ch->close_when_flushed) {
    uv_close((uv_handle_t *)conn, free_handle_cb);
    return UV_EPIPE;
  }
  lc_frame_header h = {0, LC_KIND_CONN, LC_FLAG_HANDLE, (uint32_t)key, seq};
  int r = write_with_handle(ch, &h, "", (uv_stream_t *)conn, seq);
  if (r != 0) uv_close((uv_handle_t *)conn, free_handle_cb);
  else if (seq != 0) ch->unacked++;
  return r;
}

uint64_t lc_ipc_serial(const lc_ipc *ch) { return ch->serial; }

int lc_ipc_unacked(const lc_ipc *ch) { return ch->unacked; }

/* unacked counts the master's copies kept for this channel: tcp.c settles each one once (its
 * ack matched, its frame was not written, or the dispatcher closed), never for a stray ack */
void lc_ipc_acked(lc_ipc *ch) {
  if (ch->unacked > 0) ch->unacked--;
}

lc_ipc *lc_ipc_by_serial(lc_rt *rt, int id, uint64_t serial) {
  if (id < 1 || id > rt->nroutes) return NULL;
  for (lc_ipc *ch = rt->routes[id - 1]; ch; ch = ch->route_next)
    if (ch->serial == serial) return ch->closing ? NULL : ch;
  return NULL;
}

lc_ipc *lc_ipc_route(lc_rt *rt, int id) {
  if (id < 1 || id > rt->nroutes) return NULL;
  lc_ipc *ch = rt->routes[id - 1];
  return (ch && !ch->closing && !ch->close_when_flushed) ? ch : NULL;
}

/* ---- closing ---- */

/* Takes ch off the list of its route id. */
static void unlink_route(lc_ipc *ch) {
  lc_rt *rt = ch->base.rt;
  if (ch->route_id > 0 && ch->route_id <= rt->nroutes) {
    lc_ipc **pp = &rt->routes[ch->route_id - 1];
    while (*pp && *pp != ch) pp = &(*pp)->route_next;
    if (*pp) *pp = ch->route_next;
  }
  ch->route_next = NULL;
  ch->route_id = 0;
}

static void ipc_close_cb(uv_handle_t *handle) {
  lc_ipc *ch = handle->data;
  lc_ps_channel_gone(ch->base.rt, ch);
  unlink_route(ch);
  for (int i = 0; i < ch->nhandles; i++) uv_close((uv_handle_t *)ch->handles[i], free_handle_cb);
  ch->nhandles = 0;
  if (ch->burst_timer) uv_close((uv_handle_t *)ch->burst_timer, free_handle_cb);
  ch->burst_timer = NULL;
  lc_call_cb_str(&ch->base, "close", NULL);
  lc_handle_release(&ch->base);
  lc_buf_free(&ch->in);
  lc_wq_close(&ch->wq);
  free(ch);
}

static void try_close(lc_ipc *ch) {
  if (ch->closing) return;
  if (!lc_wq_idle(&ch->wq)) {
    ch->close_when_flushed = 1;
    lc_wq_flush(&ch->wq);   /* (a failure drops what was queued: nothing left to wait for) */
    if (!lc_wq_idle(&ch->wq)) return;
  }
  ch->closing = 1;
  lc_wq_close(&ch->wq);
  uv_close((uv_handle_t *)&ch->pipe, ipc_close_cb);
}

/* ---- reading ---- */

static void emit_error(lc_ipc *ch, const char *msg) {
  lc_call_cb_str(&ch->base, "error", msg);
}

/* the channel takes no more frames: closed, or closing once its writes are out (by the Lua
 * side, maybe from inside a callback of this very read) */
static int ended(const lc_ipc *ch) { return ch->closing || ch->close_when_flushed; }

static void ipc_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  lc_ipc *ch = handle->data;
  lc_buf *b = &ch->in;
  (void)suggested;
  if (ch->in_off > 0 && (ch->in_off == b->len || lc_buf_room(b) < READ_CHUNK)) {
    lc_buf_consume(b, ch->in_off);
    ch->in_off = 0;
  }
  if (lc_buf_reserve(b, READ_CHUNK) != 0) { buf->base = NULL; buf->len = 0; return; }
  buf->base = lc_buf_end(b);
  buf->len = lc_buf_room(b);
}

static void take_pending_handles(lc_ipc *ch) {
  while (uv_pipe_pending_count(&ch->pipe) > 0) {
    uv_handle_type type = uv_pipe_pending_type(&ch->pipe);
    uv_stream_t *s;
    if (type == UV_TCP) {
      s = malloc(sizeof(uv_tcp_t));
      if (s == NULL || uv_tcp_init(ch->pipe.loop, (uv_tcp_t *)s) != 0) { free(s); return; }
    } else {
      s = malloc(sizeof(uv_pipe_t));
      if (s == NULL || uv_pipe_init(ch->pipe.loop, (uv_pipe_t *)s, 0) != 0) { free(s); return; }
    }
    if (uv_accept((uv_stream_t *)&ch->pipe, s) != 0 || type != UV_TCP || ch->nhandles == MAX_PENDING_HANDLES) {
      uv_close((uv_handle_t *)s, free_handle_cb);
      continue;
    }
    ch->handles[ch->nhandles++] = s;
  }
}

static uv_stream_t *pop_handle(lc_ipc *ch) {
  if (ch->nhandles == 0) return NULL;
  uv_stream_t *s = ch->handles[0];
  memmove(ch->handles, ch->handles + 1, (size_t)(ch->nhandles - 1) * sizeof ch->handles[0]);
  ch->nhandles--;
  return s;
}

/* A socket arrives with the first byte of the write of the frame it belongs to, so once the
 * complete frames read so far are delivered, only the incomplete frame left can claim one: a
 * header not read in full yet (which may announce one) or a read header that announced one.
 * Any other socket is one no frame will claim (a peer's mistake): it is closed now, instead of
 * being held and handed to a later frame that announces a socket of its own. */
static void drop_unclaimed(lc_ipc *ch) {
  lc_buf *b = &ch->in;
  size_t avail = b->len - ch->in_off;
  int keep = 0, dropped = 0;
  if (ch->discard == 0 && avail > 0) {
    lc_frame_header h;
    if (avail < LC_FRAME_HEADER) keep = 1;
    else if (lc_frame_decode((unsigned char *)b->data + ch->in_off, &h) == NULL && (h.flags & LC_FLAG_HANDLE)) keep = 1;
  }
  while (ch->nhandles > keep) {
    uv_close((uv_handle_t *)pop_handle(ch), free_handle_cb);
    dropped++;
  }
  if (dropped) emit_error(ch, "a socket arrived that no frame announced; closed");
}

/* whether a frame of this kind may bring a socket: the kinds the Lua side adopts one from
 * (a dispatched connection's, CONN, is taken by deliver_conn) */
static int may_carry_socket(const lc_frame_header *h) {
  switch (h->kind) {
    case LC_KIND_MSG: case LC_KIND_CTRL: case LC_KIND_REQ: return 1;
    default: return 0;
  }
}

/* Forwards a ROUTE or BCAST frame from worker `from` without decoding its payload. */
static void route(lc_ipc *from, const lc_frame_header *h, const char *payload) {
  lc_rt *rt = from->base.rt;
  lc_frame_header out = *h;
  out.kind = LC_KIND_MSG;
  out.peer = (uint32_t)from->route_id;
  out.seq = 0;
  if (h->kind == LC_KIND_BCAST) {
    for (int i = 0; i < rt->nroutes; i++) {
      for (lc_ipc *to = rt->routes[i]; to; to = to->route_next)
        if (to != from && !to->closing) append_frame(to, &out, payload);
    }
    return;
  }
  lc_ipc *to = (h->peer >= 1 && h->peer <= (uint32_t)rt->nroutes) ? rt->routes[h->peer - 1] : NULL;
  if (to && !to->closing && append_frame(to, &out, payload) == 0) return;
  lc_frame_header fail = {0, LC_KIND_ROUTE_FAIL, 0, h->peer, h->seq};
  append_frame(from, &fail, "");
}

/* Calls the channel's callback for frame h: callback(kind, peer, seq, payload, socket or nil).
 * Runs inside ipc_read_frames, a protected call whose stack holds the message handler at 1:
 * a push that raises (out of memory) unwinds to ipc_read_cb, which closes ch->pending (the
 * socket no Lua object took yet) and goes on with the next frame; an error in the callback is
 * logged here. One protected call per read, not one per frame. */
static void ipc_call_frame(lc_ipc *ch, const lc_frame_header *h, const char *payload, uv_stream_t *handle) {
  lua_State *L = ch->base.rt->L;
  ch->pending = handle;
  if (!lc_handle_push_cb(&ch->base)) {
    ch->pending = NULL;
    if (handle) uv_close((uv_handle_t *)handle, free_handle_cb);
    return;
  }
  lua_pushinteger(L, h->kind);
  lua_pushinteger(L, (lua_Integer)h->peer);
  lua_pushinteger(L, (lua_Integer)h->seq);
  lua_pushlstring(L, payload, h->len);
  if (handle) lc_tcp_push_received(L, ch->base.rt, handle, (h->flags & LC_FLAG_SERVER) != 0);
  else lua_pushnil(L);
  ch->pending = NULL;  /* last: until here, a raise leaves the socket to ipc_read_cb */
  if (lua_pcall(L, 5, 0, 1) != 0) lc_log(ch->base.rt, "error: %s", lua_tostring(L, -1));
  lua_settop(L, 1);
}

/* ---- dispatched connections, in a worker ---- */

/* the end of a burst of connections not taken: one line for each kind, with its count */
static void burst_end(lc_ipc *ch) {
  lc_rt *rt = ch->base.rt;
  if (ch->burst_timer) uv_timer_stop(ch->burst_timer);
  if (ch->burst_lost > 0)
    lc_log(rt, "warn: dispatch: %.0f connection%s sent by the master did not arrive (no free file descriptor"
           " here?); %s back to the master for another worker", ch->burst_lost, ch->burst_lost == 1 ? "" : "s",
           ch->burst_lost == 1 ? "it went" : "they went");
  if (ch->burst_returned > 0)
    lc_log(rt, "warn: dispatch: %.0f connection%s sent by the master found no server taking them here; %s back"
           " to the master for another worker", ch->burst_returned, ch->burst_returned == 1 ? "" : "s",
           ch->burst_returned == 1 ? "it went" : "they went");
  ch->burst_lost = ch->burst_returned = 0;
}

static void ipc_burst_timer_cb(uv_timer_t *timer) { burst_end(timer->data); }

/* one more connection not taken here (its socket did not arrive, or no server takes its key) */
static void count_not_taken(lc_ipc *ch, int returned) {
  uint64_t now = uv_now(ch->pipe.loop);
  if (ch->burst_lost + ch->burst_returned == 0) ch->burst_start = now;
  if (returned) ch->burst_returned++;
  else ch->burst_lost++;
  if (ch->burst_timer == NULL) {
    uv_timer_t *timer = malloc(sizeof *timer);
    if (timer && uv_timer_init(ch->pipe.loop, timer) == 0) {
      timer->data = ch;
      uv_unref((uv_handle_t *)timer);
      ch->burst_timer = timer;
    } else {
      free(timer);
    }
  }
  if (ch->burst_timer == NULL) burst_end(ch);   /* no timer: a line now rather than none */
  else if (now - ch->burst_start < LOST_BURST_MAX_MS || !uv_is_active((uv_handle_t *)ch->burst_timer))
    uv_timer_start(ch->burst_timer, ipc_burst_timer_cb, LOST_QUIET_MS, 0);
}

/* the acknowledgement of CONN frame h: taken, or not (the master sends its copy elsewhere) */
static void ack_conn(lc_ipc *ch, const lc_frame_header *h, int taken) {
  if (h->seq == 0) return;  /* sent without a copy: nothing to acknowledge */
  lc_frame_header a = {taken ? 0 : 1, LC_KIND_CONN, 0, h->peer, h->seq};
  append_frame(ch, &a, "n");
}

static int has_sink(lc_rt *rt, int key) {
  for (int i = 0; i < rt->nsinks; i++)
    if (rt->sinks[i].key == key) return 1;
  return 0;
}

/* A CONN frame that announced a socket: acknowledged at once, then handed to its server's sink */
static void deliver_conn(lc_ipc *ch, const lc_frame_header *h) {
  lc_rt *rt = ch->base.rt;
  int key = (int)h->peer;
  uv_stream_t *handle = pop_handle(ch);
  if (handle == NULL) {  /* out of file descriptors: the kernel dropped it */
    count_not_taken(ch, 0);
    ack_conn(ch, h, 0);
    return;
  }
  ch->missing = 0;
  if ((h->flags & LC_FLAG_SERVER) || !has_sink(rt, key)) {
    uv_close((uv_handle_t *)handle, free_handle_cb);
    count_not_taken(ch, 1);
    ack_conn(ch, h, 0);
    return;
  }
  ack_conn(ch, h, 1);
  if (ch->burst_lost + ch->burst_returned > 0) burst_end(ch);
  lc_sink_deliver(rt, key, (uv_tcp_t *)handle);
}

static void deliver(lc_ipc *ch, const lc_frame_header *h, const char *payload) {
  lc_rt *rt = ch->base.rt;
  uv_stream_t *handle = NULL;
  ch->frames_in++;
  ch->msgs_in += IS_USER_KIND(h->kind);
  ch->bytes_in += (double)lc_frame_size(h->len);
  if (h->kind == LC_KIND_CONN) {
    if (h->flags & LC_FLAG_HANDLE) {
      deliver_conn(ch, h);
    } else {  /* the master: a worker's acknowledgement (tcp.c settles unacked if it matches) */
      lc_tcp_conn_ack(rt, ch, (int)h->peer, h->seq, h->len == 0);
    }
    return;
  }
  if (h->flags & LC_FLAG_HANDLE) {
    handle = pop_handle(ch);
    if (handle == NULL) {
      /* (out of file descriptors, the kernel drops what would have come: one line per burst) */
      if (ch->missing++ == 0)
        emit_error(ch, "a frame announced a socket that did not arrive (out of file descriptors?); "
                       "more are not reported until one arrives");
    } else if ((ch->missing = 0), !may_carry_socket(h)) {
      uv_close((uv_handle_t *)handle, free_handle_cb);
      handle = NULL;
      char msg[96];
      snprintf(msg, sizeof msg, "a socket came with a frame of kind %d, which takes none; closed", h->kind);
      emit_error(ch, msg);
    }
    if (ended(ch)) {  /* the error handler closed the channel: nothing more is delivered */
      if (handle) uv_close((uv_handle_t *)handle, free_handle_cb);
      return;
    }
  }
  if (h->kind >= LC_KIND_PS_PUB) {   /* publish/subscribe: ps_route.c (never with a socket) */
    if (handle) uv_close((uv_handle_t *)handle, free_handle_cb);
    lc_ps_frame(ch, h, payload);
    return;
  }
  if ((h->kind == LC_KIND_ROUTE || h->kind == LC_KIND_BCAST) && ch->route_id > 0 && handle == NULL) {
    route(ch, h, payload);
    return;
  }
  ipc_call_frame(ch, h, payload, handle);
}

/* run by lc_call_with, protected (its message handler at 1): delivers every complete frame
 * read so far, until the channel ends; declines the call lc_call_with would make */
static int ipc_read_frames(lua_State *L, void *ud) {
  lc_ipc *ch = ud;
  lc_buf *b = &ch->in;
  (void)L;
  while (!ended(ch)) {
    size_t avail = b->len - ch->in_off;
    if (ch->discard > 0) {
      size_t n = avail < ch->discard ? avail : ch->discard;
      ch->in_off += n;
      ch->discard -= n;
      if (ch->discard > 0) break;
      continue;
    }
    if (avail < LC_FRAME_HEADER) break;
    lc_frame_header h;
    const char *bad = lc_frame_decode((unsigned char *)b->data + ch->in_off, &h);
    if (bad) {
      char msg[128];
      snprintf(msg, sizeof msg, "bad frame: %s; closing the channel", bad);
      emit_error(ch, msg);
      ch->in_off = b->len;
      uv_read_stop((uv_stream_t *)&ch->pipe);
      try_close(ch);
      return -1;
    }
    size_t size = lc_frame_size(h.len);
    /* an incomplete frame after delivered ones moves to the buffer's start before it grows:
     * else, in a stream of frames that never ends on a read's end (a burst of 64 KiB
     * publishes), the delivered bytes before it were kept and the buffer doubled on and on */
    if (avail < size && ch->in_off > 0) {
      lc_buf_consume(b, ch->in_off);
      ch->in_off = 0;
    }
    /* a frame over the limit, or one whose bytes cannot be held, is skipped (its payload is
     * read and dropped): the stream stays in sync and the channel goes on. The buffer grows
     * (at most doubling) as the frame's bytes arrive, not to the size its header claims: what
     * a peer makes this process allocate is what it has sent, not what it announced */
    const char *skip = h.len > ch->max_frame ? "is over the limit of"
                     : avail < size && lc_buf_reserve(b, growth(avail, size - avail)) != 0 ? "cannot be held in memory (limit"
                     : NULL;
    if (skip) {
      char msg[160];
      snprintf(msg, sizeof msg, "frame of %lu bytes %s %lu bytes%s; skipped", (unsigned long)h.len, skip,
               (unsigned long)ch->max_frame, skip[0] == 'c' ? ")" : "");
      ch->in_off += LC_FRAME_HEADER;
      ch->discard = h.len;
      if (h.flags & LC_FLAG_HANDLE) {
        uv_stream_t *s = pop_handle(ch);
        if (s) uv_close((uv_handle_t *)s, free_handle_cb);
      }
      emit_error(ch, msg);
      continue;
    }
    if (avail < size) break;
    const char *payload = b->data + ch->in_off + LC_FRAME_HEADER;
    ch->in_off += size;
    deliver(ch, &h, payload);
  }
  return -1;
}

/* drops the next frame if all of it was read (its socket too): 1, else 0 (nothing to drop now) */
static int drop_next_frame(lc_ipc *ch) {
  lc_buf *b = &ch->in;
  size_t avail = b->len - ch->in_off;
  lc_frame_header h;
  if (ch->discard > 0 || avail < LC_FRAME_HEADER) return 0;
  if (lc_frame_decode((unsigned char *)b->data + ch->in_off, &h) != NULL) return 0;
  if (avail < lc_frame_size(h.len)) return 0;
  ch->in_off += lc_frame_size(h.len);
  ch->frames_in++;
  if (h.kind == LC_KIND_CONN && !(h.flags & LC_FLAG_HANDLE)) {   /* an acknowledgement: C only */
    lc_tcp_conn_ack(ch->base.rt, ch, (int)h.peer, h.seq, h.len == 0);
    return 1;
  }
  if (h.flags & LC_FLAG_HANDLE) {
    uv_stream_t *s = pop_handle(ch);
    if (s) uv_close((uv_handle_t *)s, free_handle_cb);
  }
  if (h.kind == LC_KIND_CONN) {   /* not taken here: the master sends its copy elsewhere */
    count_not_taken(ch, 1);
    ack_conn(ch, &h, 0);
    return 1;
  }
  lc_log(ch->base.rt, "error: a channel frame of kind %d was dropped: its callback could not be called", h.kind);
  return 1;
}

static void ipc_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  lc_ipc *ch = stream->data;
  (void)buf;
  if (nread < 0) {
    if (nread != UV_EOF && nread != UV_ECONNRESET) {  /* a peer that died is a close, not an error */
      char msg[128];
      snprintf(msg, sizeof msg, "channel read failed: %s", uv_strerror((int)nread));
      emit_error(ch, msg);
    }
    uv_read_stop(stream);
    lc_wq_drop(&ch->wq);  /* nobody will read them */
    try_close(ch);
    return;
  }
  if (nread == 0) return;
  take_pending_handles(ch);
  lc_buf *b = &ch->in;
  b->len += (size_t)nread;
  /* the frames read, in one protected call; a push that raised lost one frame (logged by
   * lc_call_with): its socket is closed, and the next frames go on. A call that failed before
   * it took a frame (Lua could not be entered: out of memory) drops the next one itself, as a
   * raise would have: every failed call moves on by a frame, so the loop ends */
  size_t off = ch->in_off, discard = ch->discard;
  while (lc_call_with(ch->base.rt, ipc_read_frames, ch) > 0) {
    if (ch->pending) uv_close((uv_handle_t *)ch->pending, free_handle_cb);
    ch->pending = NULL;
    if (ch->in_off == off && ch->discard == discard && !drop_next_frame(ch)) break;
    off = ch->in_off;
    discard = ch->discard;
  }
  if (!ended(ch)) drop_unclaimed(ch);  /* (a channel that ends closes what it holds) */
  if (ch->in_off == b->len) ch->in_off = b->len = 0;
}

/* ---- construction ---- */

lc_ipc *lc_ipc_new(lua_State *L, int cb_idx) {
  lc_ipc *ch = lc_handle_new(L, sizeof *ch, MT);
  lc_handle_set_cb(L, &ch->base, cb_idx);
  ch->max_frame = DEFAULT_MAX_FRAME;
  ch->serial = ++ch->base.rt->ipc_serials;
  int r = uv_pipe_init(&ch->base.rt->loop, &ch->pipe, 1);
  if (r != 0) {
    lc_handle_release(&ch->base);
    free(ch);
    luaL_error(L, "uv_pipe_init: %s", uv_strerror(r));
  }
  ch->pipe.data = ch;
  lc_buf_init(&ch->in, 0);
  lc_wq_init(&ch->wq, (uv_stream_t *)&ch->pipe, &ch->base.rt->flusher, 0, ipc_written_cb, ch);
  return ch;
}

uv_pipe_t *lc_ipc_pipe(lc_ipc *ch) { return &ch->pipe; }

int lc_ipc_start(lc_ipc *ch) {
  ch->started = 1;
  return uv_read_start((uv_stream_t *)&ch->pipe, ipc_alloc_cb, ipc_read_cb);
}

/* ---- Lua bindings ---- */

static int f_ipc_open(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lc_ipc *ch = lc_ipc_new(L, 2);
  int r = uv_pipe_open(&ch->pipe, fd);
  if (r == 0) r = lc_ipc_start(ch);
  if (r != 0) {
    uv_close((uv_handle_t *)&ch->pipe, ipc_close_cb);
    return lc_push_error(L, r);
  }
  return 1;
}

/* core.ipc_new(cb): a channel whose pipe is given to core.spawn as a child's stdio entry */
static int f_ipc_new(lua_State *L) {
  lc_ipc_new(L, 1);
  return 1;
}

static int m_send(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  lc_frame_header h;
  size_t len;
  h.kind = (uint8_t)luaL_checkinteger(L, 2);
  h.peer = (uint32_t)luaL_optinteger(L, 3, 0);
  h.seq = (uint32_t)luaL_optinteger(L, 4, 0);
  const char *payload = luaL_checklstring(L, 5, &len);
  /* CONN frames (a dispatched connection, its acknowledgement) are the runtime's own: one
   * from Lua would settle or return the master's copies of connections it never had */
  if (h.kind == LC_KIND_CONN) return luaL_argerror(L, 2, "CONN frames are sent by the runtime only");
  h.flags = 0;
  if (ch->closing || ch->close_when_flushed) {
    return lc_push_fail(L, 0, "channel closed");
  }
  if (len > ch->max_frame) {
    char msg[128];   /* (lua_pushfstring has no %zu) */
    snprintf(msg, sizeof msg, "message of %zu bytes is over the limit of %zu bytes", len, ch->max_frame);
    return lc_push_fail(L, 0, "%s", msg);
  }
  h.len = (uint32_t)len;
  int r;
  if (!lua_isnoneornil(L, 6)) {
    int is_server = 0;
    uv_stream_t *s = lc_tcp_stream_for_send(L, 6, &is_server);
    h.flags = LC_FLAG_HANDLE | (is_server ? LC_FLAG_SERVER : 0);
    r = write_with_handle(ch, &h, payload, s, 0);
    if (r != 0) uv_close((uv_handle_t *)s, free_handle_cb);  /* it was detached from Lua already */
  } else {
    r = append_frame(ch, &h, payload);
  }
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_close(lua_State *L) {
  lc_ipc *ch = lc_handle_test(L, 1, MT);
  if (ch == NULL || ch->closing) return 0;
  if (ch->started) uv_read_stop((uv_stream_t *)&ch->pipe);
  try_close(ch);
  return 0;
}

static int m_set_route(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  lc_rt *rt = ch->base.rt;
  int id = (int)luaL_checkinteger(L, 2);
  luaL_argcheck(L, id >= 1 && id <= 1000000, 2, "worker id out of range");
  if (ch->closing) return 0;  /* its close callback is coming: a route to it would outlive it */
  if (id > rt->nroutes) {
    lc_ipc **p = realloc(rt->routes, (size_t)id * sizeof *p);
    if (p == NULL) return luaL_error(L, "out of memory");
    for (int i = rt->nroutes; i < id; i++) p[i] = NULL;
    rt->routes = p;
    rt->nroutes = id;
  }
  unlink_route(ch);
  ch->route_next = rt->routes[id - 1]; /* an older channel of this id stays, for broadcasts */
  rt->routes[id - 1] = ch;
  ch->route_id = id;
  return 0;
}

static int m_clear_route(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  unlink_route(ch);
  return 0;
}

static int m_set_max_frame(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  lua_Number n = luaL_checknumber(L, 2);
  if (!(n >= 16 && n <= (lua_Number)LC_MAX_FRAME_PAYLOAD))
    return luaL_error(L, "max_message_size must be from 16 to %d bytes (the longest string LuaJIT holds)",
                      (int)LC_MAX_FRAME_PAYLOAD);
  ch->max_frame = (size_t)n;
  return 0;
}

static int m_ref(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  if (lua_toboolean(L, 2)) uv_ref((uv_handle_t *)&ch->pipe);
  else uv_unref((uv_handle_t *)&ch->pipe);
  return 0;
}

static int m_stats(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, ch->frames_in); lua_setfield(L, -2, "frames_in");
  lua_pushnumber(L, ch->frames_out); lua_setfield(L, -2, "frames_out");
  lua_pushnumber(L, ch->bytes_in); lua_setfield(L, -2, "bytes_in");
  lua_pushnumber(L, ch->bytes_out); lua_setfield(L, -2, "bytes_out");
  lua_pushnumber(L, ch->msgs_in); lua_setfield(L, -2, "messages_in");
  lua_pushnumber(L, ch->msgs_out); lua_setfield(L, -2, "messages_out");
  lua_pushnumber(L, (lua_Number)lc_wq_queued(&ch->wq));
  lua_setfield(L, -2, "pending_bytes");
  return 1;
}

/* ch:serial() -> n: this channel's own number (a worker's, for its dispatched connections) */
static int m_serial(lua_State *L) {
  lc_ipc *ch = lc_handle_check(L, 1, MT);
  lua_pushnumber(L, (lua_Number)ch->serial);
  return 1;
}

static int m_is_closed(lua_State *L) {
  lc_ipc *ch = lc_handle_test(L, 1, MT);
  lua_pushboolean(L, ch == NULL || ch->closing || ch->close_when_flushed);
  return 1;
}

void lc_open_ipc(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"send", m_send}, {"close", m_close}, {"set_route", m_set_route}, {"clear_route", m_clear_route},
    {"set_max_frame", m_set_max_frame}, {"ref", m_ref}, {"stats", m_stats}, {"is_closed", m_is_closed},
    {"serial", m_serial},
    {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_ipc_open);
  lua_setfield(L, -2, "ipc_open");
  lua_pushcfunction(L, f_ipc_new);
  lua_setfield(L, -2, "ipc_new");
  static const struct { const char *name; int v; } K[] = {
    {"MSG", LC_KIND_MSG}, {"CTRL", LC_KIND_CTRL}, {"REQ", LC_KIND_REQ}, {"REPLY", LC_KIND_REPLY},
    {"ROUTE", LC_KIND_ROUTE}, {"BCAST", LC_KIND_BCAST}, {"ROUTE_FAIL", LC_KIND_ROUTE_FAIL}, {"CONN", LC_KIND_CONN}, {NULL, 0},
  };
  lua_pushnumber(L, (lua_Number)LC_MAX_FRAME_PAYLOAD);
  lua_setfield(L, -2, "max_message_size");
  lua_newtable(L);
  for (int i = 0; K[i].name; i++) { lua_pushinteger(L, K[i].v); lua_setfield(L, -2, K[i].name); }
  lua_setfield(L, -2, "kind");
}
