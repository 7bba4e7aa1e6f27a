/* log.c: the runtime's log lines, and the one writer of the process's stdout and stderr.
 * Every line the runtime writes about itself (lc_log in C, luacluster.log in Lua) arrives here as
 * "level: message" and leaves on stderr as one line:
 *   text: "[master] 2024-05-01T12:00:00.123Z warn: message"   (a worker writes no prefix:
 *         its master's forwarder adds "[worker N] " to each of its lines, stream.c)
 *   json: {"time":"2024-05-01T12:00:00.123Z","process":"master","pid":1,"level":"warn","msg":"message"}
 * A worker's output reaches its master through a pipe; the master wraps EVERY line of it
 * (lc_log_forward), so that nothing a worker prints (a string a client sent, say) can pass for
 * another process's record: in JSON mode the master writes
 *   {"time":..,"process":"worker","worker":N,"pid":P,"stream":"stdout"|"stderr","msg":".."}
 * A worker in JSON mode writes its own lines as `level: "JSON string"`; on its stderr the master
 * takes such a line's level (as journald takes a "<3>" prefix) into the same kind of record:
 *   {"time":..,"process":"worker","worker":N,"pid":P,"level":"warn","msg":".."}
 *
 * The writer: lines are queued (lc_log_queue) and written by a thread of their own, so a
 * reader that does not keep up (a slow journald, a full pipe nobody reads) never stalls the
 * loop that accepts and dispatches. stderr has at most LOG_MAX_QUEUED bytes waiting (stdout, where
 * the master's print() goes, OUT_MAX_QUEUED); past that
 * lines are dropped and counted, and the next line that fits is preceded by
 * "warn: N log lines dropped ...". lc_log_flush writes what waits, for a bounded time, before
 * the process exits (called from lc_alog_flush_all_sync and at exit()).
 * Owns: the writer thread and its queues (process-wide, as fds 1 and 2 are); stopped at exit()
 * or when this module is unloaded (atexit in a shared object runs at its dlclose). */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "log.h"
#include "buf.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* a line being built; failed: memory ran out, the line is not written (never a piece of one) */
typedef struct sbuf { char *p; size_t len, cap; int failed; char local[4096]; } sbuf;

static void sb_init(sbuf *b) { b->p = b->local; b->len = 0; b->cap = sizeof b->local; b->failed = 0; }
static void sb_free(sbuf *b) { if (b->p != b->local) free(b->p); }

static int sb_grow(sbuf *b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  size_t cap;
  if (extra > SIZE_MAX - b->len) return UV_E2BIG;
  int r = lc_buf_next_cap(b->cap, b->len + extra, 0, &cap);
  if (r != 0) return r;
  char *q = b->p == b->local ? malloc(cap) : realloc(b->p, cap);
  if (q == NULL) return UV_ENOMEM;
  if (b->p == b->local) memcpy(q, b->local, b->len);
  b->p = q;
  b->cap = cap;
  return 0;
}

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->failed || sb_grow(b, n) != 0) { b->failed = 1; return; }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* the length of a valid UTF-8 sequence at s (at most n bytes), or 0 */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned min;
  unsigned cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/* a JSON string (with its quotes); bytes that are not UTF-8 are kept as \u00XX */
static void sb_json(sbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  sb_add(b, "\"", 1);
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned char c = u[i];
    if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; sb_add(b, e, 2); i++; continue; }
    if (c == '\n') { sb_add(b, "\\n", 2); i++; continue; }
    if (c == '\t') { sb_add(b, "\\t", 2); i++; continue; }
    if (c == '\r') { sb_add(b, "\\r", 2); i++; continue; }
    size_t l = c >= 0x20 && c != 0x7f ? utf8_len(u + i, n - i) : 0;
    if (l == 0) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      sb_add(b, e, 6);
      i++;
      continue;
    }
    sb_add(b, s + i, l);
    i += l;
  }
  sb_add(b, "\"", 1);
}

/* "2024-05-01T12:00:00.123Z" */
static void sb_time(sbuf *b) {
  struct timespec ts;
  struct tm tm;
  char t[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(t + n, sizeof t - n, ".%03ldZ", ts.tv_nsec / 1000000);
  sb_add(b, t, n);
}

/* ---- the writer thread ---- */

#define LOG_MAX_QUEUED (256u << 10)  /* bytes waiting on stderr (log lines); past it, lines are dropped */
#define OUT_MAX_QUEUED (16u << 20)   /* bytes waiting on stdout: the app's print() output is its data
                                        (a tool piped into another program), so it gets more room */
#define LOG_FDS 4                    /* fds with a queue (1 and 2, in practice) */
#define LOG_FLUSH_MS 2000            /* at exit: how long a reader that takes nothing is waited for
                                        (one that still takes bytes is waited for as long as it does) */

typedef struct lq { int fd; lc_buf b; uint64_t dropped; } lq;   /* b.max: max_queued(fd) */

static struct {
  pthread_mutex_t mu;
  pthread_cond_t more, idle;
  pthread_t thread;
  int state;            /* 0: not started, 1: running, -1: cannot start (writes are synchronous) */
  int quit, busy;       /* busy: the thread is writing a chunk it took */
  uint64_t written;     /* bytes written so far (atomic): the exit flush's sign that the reader moves */
  int nq;
  lq q[LOG_FDS];
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .more = PTHREAD_COND_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

/* writes all of p to fd (a blocking call, on the writer thread or at exit); pieces of at most
 * PIPE_BUF bytes cut at line ends, so that other writers' lines never land inside one of ours */
static void write_out(int fd, const char *p, size_t n) {
  while (n > 0) {
    size_t take = n;
    if (take > PIPE_BUF) {
      const char *nl = memrchr(p, '\n', PIPE_BUF);
      take = nl ? (size_t)(nl - p) + 1 : PIPE_BUF;
    }
    ssize_t w = write(fd, p, take);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {   /* someone made the fd non-blocking: wait until it takes bytes */
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, 1000);
        continue;
      }
      return;                  /* the reader is gone: nothing sensible to do with log lines */
    }
    __atomic_add_fetch(&W.written, (uint64_t)w, __ATOMIC_RELAXED);
    p += w;
    n -= (size_t)w;
  }
}

static lq *pending_queue(void) {
  for (int i = 0; i < W.nq; i++)
    if (W.q[i].b.len > 0) return &W.q[i];
  return NULL;
}

static void *writer_main(void *arg) {
  (void)arg;
  lc_buf chunk;
  lc_buf_init(&chunk, 0);
  pthread_mutex_lock(&W.mu);
  for (;;) {
    lq *q = pending_queue();
    if (q == NULL) {
      W.busy = 0;
      pthread_cond_broadcast(&W.idle);
      if (W.quit) break;
      pthread_cond_wait(&W.more, &W.mu);
      continue;
    }
    /* take the queue's buffer, give it the spare one: the loop fills that one meanwhile */
    lc_buf taken = q->b;
    q->b = chunk;
    q->b.len = 0;
    lc_buf_set_max(&q->b, taken.max);   /* stdout's big spare is not stderr's: freed, not kept */
    int fd = q->fd;
    W.busy = 1;
    pthread_mutex_unlock(&W.mu);
    write_out(fd, taken.data, taken.len);
    chunk = taken;
    pthread_mutex_lock(&W.mu);
  }
  pthread_mutex_unlock(&W.mu);
  lc_buf_free(&chunk);
  return NULL;
}

static void writer_stop(void);

/* with W.mu held: starts the thread once; 0 when it runs */
static int writer_start(void) {
  if (W.state == 0) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals stay with the loop's thread */
    W.state = pthread_create(&W.thread, NULL, writer_main, NULL) == 0 ? 1 : -1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (W.state == 1) atexit(writer_stop);
  }
  return W.state == 1 ? 0 : -1;
}

static size_t max_queued(int fd);

static lq *queue_for(int fd) {
  for (int i = 0; i < W.nq; i++)
    if (W.q[i].fd == fd) return &W.q[i];
  if (W.nq == LOG_FDS) return NULL;
  lq *q = &W.q[W.nq++];
  memset(q, 0, sizeof *q);
  q->fd = fd;
  lc_buf_init(&q->b, max_queued(fd));
  return q;
}

static uint64_t count_lines(const char *p, size_t n) {
  uint64_t lines = 0;
  for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++) lines++;
  return lines ? lines : 1;
}

/* with W.mu held: 0 when queued, -1 when dropped (counted), 1 when there is no queue for it */
static size_t max_queued(int fd) {
  return fd == 1 ? OUT_MAX_QUEUED : LOG_MAX_QUEUED;
}

static int enqueue_locked(int fd, const char *p, size_t n) {
  if (writer_start() != 0) return 1;
  lq *q = queue_for(fd);
  if (q == NULL) return 1;
  if (lc_buf_append(&q->b, p, n) != 0) { q->dropped += count_lines(p, n); return -1; }  /* full, or no memory */
  pthread_cond_signal(&W.more);
  return 0;
}

static void format_line(sbuf *b, lc_rt *rt, const char *msg, size_t len);

/* Queues bytes (whole lines) for fd; never waits. With rt, a count of lines dropped before is
 * reported first, in rt's format, once there is room again. */
static void queue_line(lc_rt *rt, int fd, const char *p, size_t n) {
  uint64_t dropped = 0;
  pthread_mutex_lock(&W.mu);
  lq *q = W.state == 1 ? queue_for(fd) : NULL;
  if (rt && q && q->dropped > 0 && q->b.len + n + 512 <= max_queued(fd)) {
    dropped = q->dropped;
    q->dropped = 0;
  }
  pthread_mutex_unlock(&W.mu);
  if (dropped > 0) {
    char m[160];
    int k = snprintf(m, sizeof m, "warn: %llu log lines dropped: %s did not take them in time",
                     (unsigned long long)dropped, fd == 1 ? "stdout" : fd == 2 ? "stderr" : "the output");
    sbuf nb;
    sb_init(&nb);
    format_line(&nb, rt, m, (size_t)k);
    if (!nb.failed) {
      pthread_mutex_lock(&W.mu);
      enqueue_locked(fd, nb.p, nb.len);
      pthread_mutex_unlock(&W.mu);
    }
    sb_free(&nb);
  }
  pthread_mutex_lock(&W.mu);
  int r = enqueue_locked(fd, p, n);
  pthread_mutex_unlock(&W.mu);
  if (r == 1) write_out(fd, p, n);   /* no thread (cannot start one) or no queue left: as before */
}

void lc_log_queue(int fd, const char *p, size_t n) {
  queue_line(NULL, fd, p, n);
}

void lc_log_flush(void) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += LOG_FLUSH_MS / 1000;
  uint64_t seen = __atomic_load_n(&W.written, __ATOMIC_RELAXED);
  pthread_mutex_lock(&W.mu);
  while (W.state == 1 && (W.busy || pending_queue() != NULL)) {
    pthread_cond_signal(&W.more);
    if (pthread_cond_timedwait(&W.idle, &W.mu, &deadline) != ETIMEDOUT) continue;
    uint64_t now = __atomic_load_n(&W.written, __ATOMIC_RELAXED);
    if (now == seen) break;   /* a reader that took nothing for LOG_FLUSH_MS */
    seen = now;               /* a slow reader that still takes bytes: wait on */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += LOG_FLUSH_MS / 1000;
  }
  pthread_mutex_unlock(&W.mu);
}

/* at exit() or at this shared object's unloading: write what waits, then end the thread */
static void writer_stop(void) {
  lc_log_flush();
  pthread_mutex_lock(&W.mu);
  int stuck = W.busy || pending_queue() != NULL;
  W.quit = 1;
  pthread_cond_signal(&W.more);
  pthread_mutex_unlock(&W.mu);
  if (W.state == 1 && !stuck) pthread_join(W.thread, NULL);
}

/* ---- the lines ---- */

static const char *LEVELS[] = {"debug", "info", "warn", "error", NULL};

/* splits "level: message"; NULL (the message untouched) without a known level */
static const char *take_level(const char **msg, size_t *len) {
  for (int i = 0; LEVELS[i]; i++) {
    size_t l = strlen(LEVELS[i]);
    if (*len >= l + 2 && memcmp(*msg, LEVELS[i], l) == 0 && (*msg)[l] == ':' && (*msg)[l + 1] == ' ') {
      *msg += l + 2;
      *len -= l + 2;
      return LEVELS[i];
    }
  }
  return NULL;
}

static void json_num(sbuf *b, const char *key, long long v) {
  char num[64];
  snprintf(num, sizeof num, ",\"%s\":%lld", key, v);
  sb_str(b, num);
}

static void json_head(sbuf *b, const char *process) {
  sb_str(b, "{\"time\":\"");
  sb_time(b);
  sb_str(b, "\",\"process\":\"");
  sb_str(b, process);
  sb_str(b, "\"");
}

/* "level: message" -> one line in rt's format, with its newline */
static void format_line(sbuf *b, lc_rt *rt, const char *msg, size_t len) {
  const char *level = take_level(&msg, &len);
  if (level == NULL) level = "info";
  if (rt && rt->log_json && rt->log_worker > 0) {
    /* a worker: its master wraps the line into the record (lc_log_forward) */
    sb_str(b, level);
    sb_add(b, ": ", 2);
    sb_json(b, msg, len);
    sb_add(b, "\n", 1);
  } else if (rt && rt->log_json) {
    json_head(b, rt->log_prefix[0] ? "master" : "child");
    json_num(b, "pid", (long long)getpid());
    sb_str(b, ",\"level\":\"");
    sb_str(b, level);
    sb_str(b, "\",\"msg\":");
    sb_json(b, msg, len);
    sb_str(b, "}\n");
  } else {
    if (rt) sb_str(b, rt->log_prefix);
    sb_time(b);
    sb_add(b, " ", 1);
    sb_str(b, level);
    sb_add(b, ": ", 2);
    sb_add(b, msg, len);
    sb_add(b, "\n", 1);
  }
}

void lc_log_emit(lc_rt *rt, const char *msg, size_t len) {
  sbuf b;
  sb_init(&b);
  format_line(&b, rt, msg, len);
  if (!b.failed) queue_line(rt, 2, b.p, b.len);
  sb_free(&b);
}

/* the length of a JSON string literal at the start of s (quotes included) that ends exactly at
 * s + n, or 0: only the escapes sb_json writes or JSON allows, no control byte, valid UTF-8 */
static size_t json_literal(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  if (n < 2 || u[0] != '"') return 0;
  size_t i = 1;
  while (i < n) {
    unsigned char c = u[i];
    if (c == '"') return i + 1 == n ? n : 0;
    if (c == '\\') {
      if (i + 1 >= n) return 0;
      unsigned char e = u[i + 1];
      if (e == 'u') {
        if (i + 5 >= n) return 0;
        for (size_t k = i + 2; k < i + 6; k++)
          if (!((u[k] >= '0' && u[k] <= '9') || (u[k] >= 'a' && u[k] <= 'f') || (u[k] >= 'A' && u[k] <= 'F'))) return 0;
        i += 6;
      } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
        i += 2;
      } else {
        return 0;
      }
      continue;
    }
    if (c < 0x20) return 0;
    size_t l = utf8_len(u + i, n - i);
    if (l == 0) return 0;
    i += l;
  }
  return 0;
}

/* A line a child printed (without its newline), forwarded by its master: prefix is
 * "[worker N] "; fd the master's own fd (1 or 2) the child's stdout or stderr goes to. */
void lc_log_forward(lc_rt *rt, int fd, const char *prefix, int pid, const char *line, size_t len) {
  sbuf b;
  sb_init(&b);
  if (rt && rt->log_json) {
    int worker = 0;
    if (sscanf(prefix, "[worker %d]", &worker) != 1) worker = 0;
    json_head(&b, "worker");
    if (worker > 0) json_num(&b, "worker", worker);
    if (pid > 0) json_num(&b, "pid", pid);
    const char *msg = line;
    size_t mlen = len;
    const char *level = fd == 2 ? take_level(&msg, &mlen) : NULL;
    if (level && json_literal(msg, mlen) == mlen) {   /* the worker's own line */
      sb_str(&b, ",\"level\":\"");
      sb_str(&b, level);
      sb_str(&b, "\",\"msg\":");
      sb_add(&b, msg, mlen);
    } else {
      sb_str(&b, fd == 1 ? ",\"stream\":\"stdout\",\"msg\":" : ",\"stream\":\"stderr\",\"msg\":");
      sb_json(&b, line, len);
    }
    sb_str(&b, "}\n");
  } else {
    sb_str(&b, prefix);
    sb_add(&b, line, len);
    sb_add(&b, "\n", 1);
  }
  if (!b.failed) queue_line(rt, fd, b.p, b.len);
  sb_free(&b);
}

/* core.set_log_format("text" | "json" [, worker_id]) */
static int f_set_log_format(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  const char *fmt = luaL_checkstring(L, 1);
  if (strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0) return luaL_error(L, "log format must be text or json");
  rt->log_json = strcmp(fmt, "json") == 0;
  rt->log_worker = (int)luaL_optinteger(L, 2, rt->log_worker);
  return 0;
}

/* core.log_write(fd, text): text (whole lines) for fd 1 or 2 through the writer, as it is;
 * lines dropped before it are counted in a line of this process's format first */
static int f_log_write(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  int fd = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, fd == 1 || fd == 2, 1, "fd must be 1 or 2");
  if (n > 0) queue_line(rt, fd, s, n);
  return 0;
}

/* core.log_print(text): the master's print() output (whole lines) for stdout through the writer;
 * with --log-format json each line becomes a record of its own ("stream":"stdout"), as a
 * worker's printed lines do, so that a string an app prints cannot pass for a record */
static int f_log_print(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (n == 0) return 0;
  if (!rt->log_json) { queue_line(rt, 1, s, n); return 0; }
  sbuf b;
  sb_init(&b);
  for (const char *e = s + n; s < e;) {
    const char *nl = memchr(s, '\n', (size_t)(e - s));
    size_t len = nl ? (size_t)(nl - s) : (size_t)(e - s);
    json_head(&b, rt->log_prefix[0] ? "master" : "child");
    json_num(&b, "pid", (long long)getpid());
    sb_str(&b, ",\"stream\":\"stdout\",\"msg\":");
    sb_json(&b, s, len);
    sb_str(&b, "}\n");
    s += len + (nl ? 1 : 0);
  }
  if (!b.failed) queue_line(rt, 1, b.p, b.len);
  sb_free(&b);
  if (b.failed) return luaL_error(L, "not enough memory");
  return 0;
}

/* core.json_string(s) -> the JSON string literal of s (as the log lines write it) */
static int f_json_string(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  sbuf b;
  sb_init(&b);
  sb_json(&b, s, n);
  if (b.failed) { sb_free(&b); return luaL_error(L, "not enough memory"); }
  lua_pushlstring(L, b.p, b.len);
  sb_free(&b);
  return 1;
}

void lc_log(lc_rt *rt, const char *fmt, ...) {
  char line[8192];
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (m < 0) return;
  lc_log_emit(rt, line, (size_t)m < sizeof line ? (size_t)m : sizeof line - 1); /* log.c: time, level, prefix */
}

static int f_set_log_prefix(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  snprintf(rt->log_prefix, sizeof rt->log_prefix, "%s", luaL_checkstring(L, 1));
  return 0;
}

static int f_log(lua_State *L) {
  lc_log(lc_rt_get(L), "%s", luaL_checkstring(L, 1));
  return 0;
}

void lc_open_log(lua_State *L) {
  lua_pushcfunction(L, f_set_log_format);
  lua_setfield(L, -2, "set_log_format");
  lua_pushcfunction(L, f_json_string);
  lua_setfield(L, -2, "json_string");
  lua_pushcfunction(L, f_log_write);
  lua_setfield(L, -2, "log_write");
  lua_pushcfunction(L, f_log_print);
  lua_setfield(L, -2, "log_print");
  lua_pushcfunction(L, f_set_log_prefix);
  lua_setfield(L, -2, "set_log_prefix");
  lua_pushcfunction(L, f_log);
  lua_setfield(L, -2, "log");
}
