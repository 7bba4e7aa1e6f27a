/* stream.c: byte pipes bound to Lua: a child process's stdin, stdout or stderr, and the
 * connections of the control channel's Unix sockets (unix_socket.c).
 * Data and end reach the Lua callback; writes go through the stream's write queue
 * (write_queue.c); close() waits for queued writes, then closes, unless the peer takes no
 * byte of them for send_timeout ms: then it closes at once and the rest is dropped (a child
 * that never reads its stdin cannot hold a pipe forever). (A worker's output lines that the
 * master forwards are log_forward.c's.)
 * Each lc_stream has two handles, the pipe and its send timer: the pipe is closed first, its
 * close callback closes the timer, and the timer's close callback frees the struct.
 * Every entry into Lua from a libuv callback goes through lc_call_with (rt.c): out of memory
 * building the arguments is logged, and a read event Lua had no room for waits (read_hold.h). */
#include "lc.h"
#include "bindings.h"
#include "stream.h"
#include "write_queue.h"
#include "read_hold.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MT "luacluster.stream"
#define SEND_TIMEOUT_MS 60000   /* close(): the longest a peer may take no byte of what is queued */

struct lc_stream {
  lc_handle_base base;
  uv_pipe_t pipe;
  uv_timer_t timer;        /* close(): the send timeout while queued writes wait */
  lc_wq wq;                /* what is written and not yet taken by the pipe (write_queue.c) */
  unsigned char closing, close_after_writes, reading;
  unsigned char want_read; /* Lua asked to read (read_start/resume, not pause since) */
  read_hold *hold;         /* a read event Lua had no memory for, delivered later (read_hold.h);
                              made on first use, so that a stream is no bigger than it was */
  uint64_t send_timeout;   /* ms; 0: close() waits for the queued writes however long */
  size_t stall_mark;       /* bytes queued when the timer was last started */
};

static void stream_free_cb(uv_handle_t *h) {
  lc_stream *s = h->data;
  free(s);
}

static void stream_close_cb(uv_handle_t *h) {
  lc_stream *s = h->data;
  lc_wq_close(&s->wq);
  if (s->hold) hold_close(s->hold);
  free(s->hold);
  s->hold = NULL;
  if (s->base.box || s->base.self_ref != LUA_NOREF) {
    lc_call_cb_str(&s->base, "close", NULL);
    lc_handle_release(&s->base);
  }
  uv_close((uv_handle_t *)&s->timer, stream_free_cb);
}

static void close_now(lc_stream *s) {
  if (s->closing) return;
  s->closing = 1;
  s->close_after_writes = 0;
  uv_timer_stop(&s->timer);
  if (s->hold) hold_clear(s->hold);   /* a held read event goes with its stream */
  lc_wq_close(&s->wq);                /* unsent bytes go; those in flight end with UV_ECANCELED */
  uv_close((uv_handle_t *)&s->pipe, stream_close_cb);
}

static size_t queued(lc_stream *s) { return lc_wq_queued(&s->wq); }

static void stream_send_timer_cb(uv_timer_t *t) {
  lc_stream *s = t->data;
  size_t now = queued(s);
  if (now < s->stall_mark) {          /* the peer took some: it gets another send_timeout */
    s->stall_mark = now;
    uv_timer_start(&s->timer, stream_send_timer_cb, s->send_timeout, 0);
    return;
  }
  close_now(s);
}

static void stream_close(lc_stream *s) {
  if (s->closing) return;
  if (!lc_wq_end(&s->wq)) {
    if (!s->close_after_writes && s->send_timeout > 0) {
      s->stall_mark = queued(s);
      uv_timer_start(&s->timer, stream_send_timer_cb, s->send_timeout, 0);
    }
    s->close_after_writes = 1;
    return;
  }
  close_now(s);
}

/* a write of s's queue is done: a close waiting for the writes goes on */
static void stream_written_cb(lc_wq *q, int status) {
  lc_stream *s = q->data;
  if (s->close_after_writes && (status < 0 || lc_wq_idle(q))) close_now(s);
}

static void stream_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[65536];  /* consumed before the next read on this thread */
  *buf = uv_buf_init(slab, sizeof slab);
}

typedef struct read_args { lc_stream *s; ssize_t nread; const char *data; } read_args;

/* run by lc_call_with, protected: cb("data", bytes) | cb("end") | cb("error", message) */
static int stream_push_read(lua_State *L, void *ud) {
  read_args *a = ud;
  if (!lc_handle_push_cb(&a->s->base)) return -1;
  if (a->nread > 0) {
    lua_pushliteral(L, "data");
    lua_pushlstring(L, a->data, (size_t)a->nread);
    return 2;
  }
  if (a->nread == UV_EOF) {
    lua_pushliteral(L, "end");
    return 1;
  }
  lua_pushliteral(L, "error");
  lua_pushstring(L, uv_strerror((int)a->nread));
  return 2;
}

/* 1 when Lua got the event (or has no callback for it), 0 when its arguments could not be built */
static int deliver_read(lc_stream *s, ssize_t nread, const char *data) {
  read_args a = {s, nread, data};
  return lc_call_with(s->base.rt, stream_push_read, &a) <= 0;
}

static int held(const lc_stream *s) { return s->hold && hold_active(s->hold); }

static void stop_reading(lc_stream *s) {
  if (s->reading) uv_read_stop((uv_stream_t *)&s->pipe);
  s->reading = 0;
}

static void resume_reading(lc_stream *s) {
  if (s->reading || !s->want_read || s->closing || held(s)) return;
  int r = lc_stream_start(s);
  if (r != 0) {
    s->reading = 0;
    lc_log(s->base.rt, "error: stream: reading cannot resume: %s; the stream is closed", uv_strerror(r));
    stream_close(s);
  }
}

static void stream_hold_timer_cb(uv_timer_t *timer) {
  lc_stream *s = timer->data;
  if (!held(s) || s->closing || !s->want_read) return;  /* read_start retries it */
  ssize_t nread = s->hold->nread;
  if (!deliver_read(s, nread, s->hold->data)) {
    hold_retry_later(s->hold, stream_hold_timer_cb);
    return;
  }
  hold_clear(s->hold);
  if (nread > 0) resume_reading(s);
}

/* Lua had no memory for this event: it waits (reading stops behind it) and is retried */
static void hold_read(lc_stream *s, ssize_t nread, const char *data) {
  stop_reading(s);
  if ((s->hold == NULL && (s->hold = calloc(1, sizeof *s->hold)) == NULL) ||
      hold_put(s->hold, s->pipe.loop, nread, data, stream_hold_timer_cb, s) != 0) {
    lc_log(s->base.rt, "error: stream: a read event could not be kept for a retry (out of memory); the stream is closed");
    close_now(s);
    return;
  }
  if (nread > 0)
    lc_log(s->base.rt, "warn: stream: Lua had no memory for %zd bytes a pipe read; they wait, and reading with them", nread);
  else
    lc_log(s->base.rt, "warn: stream: Lua had no memory for a pipe's %s event; it waits", nread == UV_EOF ? "end" : "error");
}

static void stream_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lc_stream *s = st->data;
  if (nread == 0) return;
  if (nread < 0) stop_reading(s);   /* the end, or an error: nothing more to read */
  if (!deliver_read(s, nread, buf->base)) hold_read(s, nread, buf->base);
}

/* both handles of a new stream; 0 or a UV_E* code (then nothing is left to close) */
static int handles_init(lc_rt *rt, lc_stream *s) {
  int r = uv_pipe_init(&rt->loop, &s->pipe, 0);
  if (r != 0) return r;
  uv_timer_init(&rt->loop, &s->timer);   /* cannot fail on a live loop */
  s->pipe.data = s->timer.data = s;
  s->send_timeout = SEND_TIMEOUT_MS;
  lc_wq_init(&s->wq, (uv_stream_t *)&s->pipe, NULL, 0, stream_written_cb, s);
  return 0;
}

lc_stream *lc_stream_new(lua_State *L, int cb_idx) {
  if (cb_idx != 0 && !lua_isnoneornil(L, cb_idx)) luaL_checktype(L, cb_idx, LUA_TFUNCTION);
  lc_stream *s = lc_handle_new(L, sizeof *s, MT);
  int r = handles_init(s->base.rt, s);
  if (r != 0) {
    lc_handle_release(&s->base);
    free(s);
    luaL_error(L, "uv_pipe_init: %s", uv_strerror(r));
  }
  lc_handle_set_cb(L, &s->base, cb_idx);
  return s;
}

uv_pipe_t *lc_stream_pipe(lc_stream *s) { return &s->pipe; }

lc_handle_base *lc_stream_base(lc_stream *s) { return &s->base; }

void lc_stream_close(lc_stream *s) { stream_close(s); }

/* (C's start of a child's pipe, and Lua's read_start/resume: reading is wanted from here on) */
int lc_stream_start(lc_stream *s) {
  s->want_read = 1;
  if (held(s)) { hold_retry_now(s->hold, stream_hold_timer_cb); return 0; }
  s->reading = 1;
  return uv_read_start((uv_stream_t *)&s->pipe, stream_alloc_cb, stream_read_cb);
}

/* ---- Lua bindings ---- */

static int f_stream_new(lua_State *L) {
  lc_stream_new(L, 1);
  return 1;
}

static int m_write(lua_State *L) {
  lc_stream *s = lc_handle_check(L, 1, MT);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (s->closing || s->close_after_writes) return lc_push_error(L, UV_EPIPE);
  uv_buf_t b;
  b.base = (char *)data;
  b.len = len;
  int r = lc_wq_write(&s->wq, &b, 1);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_close(lua_State *L) {
  lc_stream *s = lc_handle_test(L, 1, MT);
  if (s) stream_close(s);
  return 0;
}

/* stream:set_send_timeout(ms): how long close() lets the peer take no byte of what is queued
 * before it closes at once (SEND_TIMEOUT_MS by default; 0: no limit) */
static int m_set_send_timeout(lua_State *L) {
  lc_stream *s = lc_handle_check(L, 1, MT);
  lua_Number ms = luaL_checknumber(L, 2);
  if (!(ms >= 0 && ms <= 1e12)) return luaL_argerror(L, 2, "a number of milliseconds >= 0");
  s->send_timeout = (uint64_t)ms;
  return 0;
}

static int m_pause(lua_State *L) {
  lc_stream *s = lc_handle_check(L, 1, MT);
  s->want_read = 0;
  stop_reading(s);
  return 0;
}

static int m_resume(lua_State *L) {
  lc_stream *s = lc_handle_check(L, 1, MT);
  if (!s->reading && !s->closing) lc_stream_start(s);
  return 0;
}

static int m_fileno(lua_State *L) {
  lc_stream *s = lc_handle_check(L, 1, MT);
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&s->pipe, &fd) != 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

/* stream:read_start(cb): (re)sets the callback and starts reading */
static int m_read_start(lua_State *L) {
  lc_stream *s = lc_handle_check(L, 1, MT);
  lc_handle_set_cb(L, &s->base, 2);
  if (!s->reading && !s->closing) {
    int r = lc_stream_start(s);
    if (r != 0) return lc_push_error(L, r);
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lc_open_stream(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"write", m_write}, {"close", m_close}, {"pause", m_pause}, {"resume", m_resume},
    {"fileno", m_fileno}, {"read_start", m_read_start}, {"set_send_timeout", m_set_send_timeout},
    {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_stream_new);
  lua_setfield(L, -2, "stream_new");
}
