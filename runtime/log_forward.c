/* log_forward.c: the master's forwarder of a worker's stdout or stderr. It reads the child's
 * end of a pipe, cuts the bytes into lines and hands each to log.c (lc_log_forward), which
 * prefixes it with "[worker N] " (or wraps it into a JSON record) and queues it for the
 * master's own fd without waiting. A line longer than LINE_MAX_BYTES goes on in pieces.
 * Owns: the pipe and its line buffer (made on the first read that ends inside a line), both
 * owned by C (no Lua object); it frees itself in
 * forward_close_cb once the child's end closes (or its spawn failed: lc_forward_close). */
#include "lc.h"
#include "log.h"
#include "log_forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 65536

struct lc_forward {
  uv_pipe_t pipe;
  lc_rt *rt;
  int fd, pid, closing;
  char prefix[32];
  char *line;              /* LINE_MAX_BYTES, made when a read ends inside a line: its start */
  size_t line_len;
};

static void forward_close_cb(uv_handle_t *h) {
  lc_forward *f = h->data;
  free(f->line);
  free(f);
}

void lc_forward_close(lc_forward *f) {
  if (f->closing) return;
  f->closing = 1;
  uv_close((uv_handle_t *)&f->pipe, forward_close_cb);
}

static void forward_emit(lc_forward *f, const char *p, size_t n) {
  lc_log_forward(f->rt, f->fd, f->prefix, f->pid, p, n);
}

static void forward_data(lc_forward *f, const char *p, size_t n) {
  while (n > 0) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n;
    int whole = nl && f->line_len == 0 && take <= LINE_MAX_BYTES;   /* goes as it is: no copy */
    if (!whole && f->line == NULL && (f->line = malloc(LINE_MAX_BYTES)) == NULL) {
      forward_emit(f, p, take);   /* no memory to keep its start: the piece goes as a line */
      p += take + (nl ? 1 : 0);
      n -= take + (nl ? 1 : 0);
      continue;
    }
    if (f->line_len + take > LINE_MAX_BYTES) {       /* an endless line: pass it on in pieces */
      size_t room = LINE_MAX_BYTES - f->line_len;
      memcpy(f->line + f->line_len, p, room);
      forward_emit(f, f->line, LINE_MAX_BYTES);
      f->line_len = 0;
      p += room;
      n -= room;
      continue;
    }
    if (nl && f->line_len == 0) forward_emit(f, p, take);
    else {
      memcpy(f->line + f->line_len, p, take);
      f->line_len += take;
      if (nl) { forward_emit(f, f->line, f->line_len); f->line_len = 0; }
    }
    p += take + (nl ? 1 : 0);
    n -= take + (nl ? 1 : 0);
  }
}

static void forward_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static __thread char slab[65536];  /* consumed before the next read on this thread */
  *buf = uv_buf_init(slab, sizeof slab);
}

static void forward_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lc_forward *f = st->data;
  if (nread == 0) return;
  if (nread > 0) { forward_data(f, buf->base, (size_t)nread); return; }
  if (f->line_len > 0) forward_emit(f, f->line, f->line_len);   /* the last line, unended */
  f->line_len = 0;
  lc_forward_close(f);
}

lc_forward *lc_forward_new(lc_rt *rt, int out_fd, const char *prefix) {
  lc_forward *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  if (uv_pipe_init(&rt->loop, &f->pipe, 0) != 0) { free(f); return NULL; }
  f->pipe.data = f;
  f->rt = rt;
  f->fd = out_fd;
  snprintf(f->prefix, sizeof f->prefix, "%s", prefix);
  return f;
}

uv_pipe_t *lc_forward_pipe(lc_forward *f) { return &f->pipe; }

int lc_forward_start(lc_forward *f, int pid) {
  f->pid = pid;
  return uv_read_start((uv_stream_t *)&f->pipe, forward_alloc_cb, forward_read_cb);
}
