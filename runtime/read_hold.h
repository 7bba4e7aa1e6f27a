/* read_hold.h: a read event Lua had no memory for is held, not lost (tcp.c, stream.c).
 * When the arguments of a read callback (the bytes as a Lua string, an error message) cannot be
 * built, out of memory, the event is kept: its bytes are copied here, the stream stops reading
 * (so what follows waits in the kernel, behind it, and the peer feels the backpressure), and a
 * timer retries the delivery with a growing delay. Once Lua takes it, reading resumes. A stream
 * whose bytes were silently dropped would hand the application a corrupt byte stream.
 * Owns: the copied bytes and the timer (made on first use, closed by hold_close with a close
 * callback that frees it). Static functions: one copy in each file that includes it. */
#ifndef LC_READ_HOLD_H
#define LC_READ_HOLD_H

#include "lc.h"

#include <stdlib.h>
#include <string.h>

#define HOLD_FIRST_DELAY 50     /* ms before the first retry */
#define HOLD_MAX_DELAY 2000     /* ms: the longest wait between retries (each failure is logged) */

typedef struct read_hold {
  uv_timer_t *timer;   /* NULL until the first hold */
  ssize_t nread;       /* the held event: > 0 bytes in data, or UV_EOF / an error; 0: none */
  char *data;
  uint64_t delay;
} read_hold;

static inline int hold_active(const read_hold *h) { return h->nread != 0; }

/* keeps the event (copying its bytes) and arms the retry; 0, or UV_ENOMEM (nothing kept) */
static inline int hold_put(read_hold *h, uv_loop_t *loop, ssize_t nread, const char *bytes, uv_timer_cb cb, void *ctx) {
  if (h->timer == NULL) {
    uv_timer_t *t = malloc(sizeof *t);
    if (t == NULL) return UV_ENOMEM;
    if (uv_timer_init(loop, t) != 0) { free(t); return UV_ENOMEM; }
    t->data = ctx;
    h->timer = t;
  }
  char *copy = NULL;
  if (nread > 0) {
    copy = malloc((size_t)nread);
    if (copy == NULL) return UV_ENOMEM;
    memcpy(copy, bytes, (size_t)nread);
  }
  h->nread = nread;
  h->data = copy;
  h->delay = HOLD_FIRST_DELAY;
  uv_timer_start(h->timer, cb, h->delay, 0);
  return 0;
}

/* the delivery failed again: the next try comes later */
static inline void hold_retry_later(read_hold *h, uv_timer_cb cb) {
  h->delay = h->delay * 2 > HOLD_MAX_DELAY ? HOLD_MAX_DELAY : h->delay * 2;
  uv_timer_start(h->timer, cb, h->delay, 0);
}

/* the reader wants it now (read_start after a pause) */
static inline void hold_retry_now(read_hold *h, uv_timer_cb cb) {
  if (hold_active(h)) uv_timer_start(h->timer, cb, 0, 0);
}

/* the event was delivered (or is dropped with its stream) */
static inline void hold_clear(read_hold *h) {
  free(h->data);
  h->data = NULL;
  h->nread = 0;
  if (h->timer) uv_timer_stop(h->timer);
}

static inline void hold_close(read_hold *h) {
  hold_clear(h);
  if (h->timer) uv_close((uv_handle_t *)h->timer, lc_free_handle_cb);
  h->timer = NULL;
}

#endif
