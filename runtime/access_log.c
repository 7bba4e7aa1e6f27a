/* access_log.c: HTTP access logs in the combined log format, plus the request's duration:
 *   127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET /a?b HTTP/1.1" 200 5 "referer" "agent" 0.001
 * written without blocking the loop: http_account.c appends a line to a buffer at the end of each
 * response; the buffer goes to the file through libuv's thread pool (uv_queue_work) once it
 * holds FLUSH_AT bytes or every FLUSH_MS, one write in flight at a time (two buffers swap).
 * Past MAX_BUFFERED bytes waiting (a disk that does not keep up) lines are dropped and
 * counted, never waited for. reopen() (SIGUSR1, for logrotate) reopens the path in the pool
 * thread before its next write, as nginx does. "stderr" writes to fd 2 in pieces of at most
 * PIPE_BUF bytes cut at line ends, so other writers' lines never land inside one.
 * Owns: the lc_alog struct, its two buffers, its fd and its flush timer. An access log lives
 * as long as its Lua state (one per path, shared by servers: access_log.lua): nothing frees
 * it; lc_alog_flush_all_sync writes out what is buffered when the process exits. */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "access_log.h"
#include "log.h"
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MT "luacluster.access_log"
#define FLUSH_AT 32768
#define FLUSH_MS 1000
#define MAX_BUFFERED (8u << 20)

struct lc_alog {
  lc_handle_base base;
  uv_timer_t timer;
  uv_work_t work;
  char *path;                 /* NULL: stderr */
  int fd;
  lc_buf buf;                 /* filled by the loop (MAX_BUFFERED at most) */
  lc_buf wbuf;                /* written by the pool thread while busy */
  int busy, reopen_wanted, do_reopen;
  int work_done;              /* set (atomically) by the pool thread when its write is done */
  int reopen_err, write_err, last_write_err;
  double lines, dropped, errors, reopens;
  lc_alog *next;
};

/* ---- the pool thread's side ---- */

static int write_out(int fd, const char *p, size_t n, int pipe_sized) {
  while (n > 0) {
    size_t take = n;
    if (pipe_sized && take > PIPE_BUF) {
      const char *nl = memrchr(p, '\n', PIPE_BUF);
      take = nl ? (size_t)(nl - p) + 1 : PIPE_BUF;
    }
    ssize_t w = write(fd, p, take);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) { struct timespec ts = {0, 1000000}; nanosleep(&ts, NULL); continue; }
      return errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* a new file is made rw-r--r-- less the umask, which nothing in the runtime changes (the
 * control socket is chmod'ed instead: stream.c), so a reopen in the pool thread cannot race it */
#define LOG_FILE_MODE 0644

static int open_path(const char *path) {
  int fd;
  do fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_FILE_MODE);
  while (fd < 0 && errno == EINTR);
  return fd;
}

static void alog_work_cb(uv_work_t *w) {
  lc_alog *a = w->data;
  if (a->do_reopen && a->path) {
    int fd = open_path(a->path);
    if (fd < 0) a->reopen_err = errno;
    else {
      if (a->fd > 2) close(a->fd);
      a->fd = fd;
      a->reopen_err = 0;
    }
  }
  a->write_err = a->wbuf.len ? write_out(a->fd, a->wbuf.data, a->wbuf.len, a->path == NULL) : 0;
  __atomic_store_n(&a->work_done, 1, __ATOMIC_RELEASE);
}

/* ---- the loop's side ---- */

static void start_write(lc_alog *a);

static void alog_after_work_cb(uv_work_t *w, int status) {
  lc_alog *a = w->data;
  lc_rt *rt = a->base.rt;
  (void)status;
  a->busy = 0;
  a->wbuf.len = 0;
  if (a->do_reopen) {
    a->do_reopen = 0;
    if (a->reopen_err) {
      a->errors++;
      lc_log(rt, "error: access log: cannot reopen %s: %s", a->path, strerror(a->reopen_err));
    } else if (a->path) {
      a->reopens++;
    }
  }
  if (a->write_err) {
    a->errors++;
    if (a->write_err != a->last_write_err)  /* once per kind of failure, not per write */
      lc_log(rt, "error: access log: cannot write to %s: %s", a->path ? a->path : "stderr", strerror(a->write_err));
  }
  a->last_write_err = a->write_err;
  if (a->buf.len >= FLUSH_AT || a->reopen_wanted) start_write(a);
}

static void start_write(lc_alog *a) {
  if (a->busy || (a->buf.len == 0 && !a->reopen_wanted)) return;
  lc_buf spare = a->wbuf;     /* the two buffers swap: the loop fills the other one meanwhile */
  a->wbuf = a->buf;
  a->buf = spare;
  a->buf.len = 0;
  a->do_reopen = a->reopen_wanted;
  a->reopen_wanted = 0;
  a->busy = 1;
  a->work_done = 0;
  a->work.data = a;
  if (uv_queue_work(&a->base.rt->loop, &a->work, alog_work_cb, alog_after_work_cb) != 0) {
    a->busy = 0;          /* cannot happen with a valid loop; the lines are lost, counted */
    a->dropped += a->wbuf.len > 0;
    a->wbuf.len = 0;
  }
}

static void flush_access_logs(lc_rt *rt);

static void alog_timer_cb(uv_timer_t *t) {
  lc_alog *a = t->data;
  if (a->buf.len > 0) start_write(a);
}

void lc_alog_flush_all_sync(lc_rt *rt) {
  flush_access_logs(rt);
  lc_log_flush();   /* the runtime's own lines (log.c's writer), after the access logs' errors */
}

static void flush_access_logs(lc_rt *rt) {
  for (lc_alog *a = rt ? rt->alogs : NULL; a; a = a->next) {
    if (a->busy) {
      for (int i = 0; i < 3000 && !__atomic_load_n(&a->work_done, __ATOMIC_ACQUIRE); i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
      if (!__atomic_load_n(&a->work_done, __ATOMIC_ACQUIRE)) continue;  /* a stuck disk: give up */
    }
    /* stderr may be a pipe nobody reads: its lines go through log.c's writer, whose exit
     * flush gives up after a while, instead of a write that could wait forever */
    if (a->buf.len > 0 && a->path == NULL) lc_log_queue(2, a->buf.data, a->buf.len);
    else if (a->buf.len > 0) write_out(a->fd, a->buf.data, a->buf.len, 0);
    a->buf.len = 0;
  }
}

/* ---- formatting ---- */

static const char MONTHS[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "01/May/2024:12:00:00 +0200", local time, rebuilt once a second */
static const char *log_time(size_t *len) {
  static __thread char buf[48];
  static __thread size_t n;
  static __thread time_t last = -1;
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    localtime_r(&now, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    n = (size_t)snprintf(buf, sizeof buf, "%02d/%s/%04d:%02d:%02d:%02d %c%02ld%02ld", tm.tm_mday, MONTHS[tm.tm_mon],
                         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
    last = now;
  }
  *len = n;
  return buf;
}

/* a value inside quotes: '"', '\' and bytes outside printable ASCII as \xHH (as nginx does) */
static char *escape(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
      *out++ = '\\'; *out++ = 'x'; *out++ = hex[c >> 4]; *out++ = hex[c & 15];
    } else {
      *out++ = (char)c;
    }
  }
  return out;
}

void lc_alog_request(lc_alog *a, const lc_alog_entry *e) {
  size_t tlen;
  const char *t = log_time(&tlen);
  size_t fields = e->method_len + e->target_len + e->referer_len + e->agent_len;
  if (e->method_len > MAX_BUFFERED || e->target_len > MAX_BUFFERED || e->referer_len > MAX_BUFFERED ||
      e->agent_len > MAX_BUFFERED || lc_buf_reserve(&a->buf, 256 + tlen + 4 * fields) != 0) {
    a->dropped++;   /* (each under MAX_BUFFERED: the sum cannot wrap) */
    return;
  }
  char *o = lc_buf_end(&a->buf);
  const char *peer = e->peer && e->peer[0] ? e->peer : "-";
  int pn = snprintf(o, 64, "%s - - [", peer);   /* an address: never near 64, but bounded */
  o += pn < 0 ? 0 : pn < 64 ? pn : 63;
  memcpy(o, t, tlen);
  o += tlen;
  memcpy(o, "] \"", 3);
  o += 3;
  if (e->method) {
    o = escape(o, e->method, e->method_len);
    *o++ = ' ';
    o = escape(o, e->target, e->target_len);
    o += sprintf(o, " HTTP/1.%d", e->minor);
  } else {
    *o++ = '-';
  }
  o += sprintf(o, "\" %d %.0f \"", e->status, e->body_bytes);
  if (e->referer) o = escape(o, e->referer, e->referer_len); else *o++ = '-';
  memcpy(o, "\" \"", 3);
  o += 3;
  if (e->agent) o = escape(o, e->agent, e->agent_len); else *o++ = '-';
  o += sprintf(o, "\" %.3f\n", e->seconds);
  a->buf.len = (size_t)(o - a->buf.data);
  a->lines++;
  if (a->buf.len >= FLUSH_AT) start_write(a);
}

/* ---- Lua ---- */

lc_alog *lc_alog_check(lua_State *L, int idx) {
  return lc_handle_check(L, idx, MT);
}

/* core.access_log_open(path | "stderr") -> log | nil, err */
static int f_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int to_stderr = strcmp(path, "stderr") == 0;
  lc_alog *a = lc_handle_new(L, sizeof *a, MT);   /* first: it is the one call that raises */
  a->path = to_stderr ? NULL : strdup(path);
  a->fd = to_stderr ? 2 : a->path ? open_path(path) : -1;
  if (a->fd < 0) {
    int err = a->path ? uv_translate_sys_error(errno) : UV_ENOMEM;
    free(a->path);
    lc_handle_release(&a->base);
    free(a);
    return lc_push_error(L, err);
  }
  lc_buf_init(&a->buf, MAX_BUFFERED);
  lc_buf_init(&a->wbuf, MAX_BUFFERED);
  lc_rt *rt = a->base.rt;
  uv_timer_init(&rt->loop, &a->timer);   /* cannot fail on a live loop */
  a->timer.data = a;
  uv_timer_start(&a->timer, alog_timer_cb, FLUSH_MS, FLUSH_MS);
  uv_unref((uv_handle_t *)&a->timer);
  a->next = rt->alogs;
  rt->alogs = a;
  return 1;
}

/* log:reopen(): the next write goes to a file opened anew at the path (logrotate) */
static int m_reopen(lua_State *L) {
  lc_alog *a = lc_handle_check(L, 1, MT);
  if (a->path) {
    a->reopen_wanted = 1;
    start_write(a);
  }
  return 0;
}

static int m_flush(lua_State *L) {
  lc_alog *a = lc_handle_check(L, 1, MT);
  start_write(a);
  return 0;
}

static int m_stats(lua_State *L) {
  lc_alog *a = lc_handle_check(L, 1, MT);
  lua_createtable(L, 0, 5);
  lua_pushnumber(L, a->lines); lua_setfield(L, -2, "lines");
  lua_pushnumber(L, a->dropped); lua_setfield(L, -2, "dropped");
  lua_pushnumber(L, a->errors); lua_setfield(L, -2, "errors");
  lua_pushnumber(L, a->reopens); lua_setfield(L, -2, "reopens");
  lua_pushnumber(L, (lua_Number)(a->buf.len + a->wbuf.len)); lua_setfield(L, -2, "buffered");
  return 1;
}

void lc_open_access_log(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"reopen", m_reopen}, {"flush", m_flush}, {"stats", m_stats}, {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  lua_pushcfunction(L, f_open);
  lua_setfield(L, -2, "access_log_open");
}
