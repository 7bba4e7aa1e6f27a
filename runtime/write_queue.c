/* write_queue.c: the write queue of write_queue.h. Owns each queue's buffer and its write
 * requests: a request owns the bytes it writes and frees itself in wq_write_cb (or goes back
 * to its queue as the spare); what a queue keeps is freed by lc_wq_close. */
#include "write_queue.h"

#include <stdlib.h>
#include <string.h>

#define SPARE_KEEP (64u * 1024u)   /* a spare buffer bigger than this is freed, not kept */

struct lc_wq_req {
  uv_write_t req;
  lc_wq *q;
  lc_buf bytes;             /* what this request writes (its own) */
  lc_wq_sent_fn sent;       /* a write2's completion, or NULL */
  void *ctx;
};

static void wq_mark_dirty(lc_wq *q);

static void wq_req_free(lc_wq_req *r) {
  lc_buf_free(&r->bytes);
  free(r);
}

/* a request with an empty buffer: the spare when there is one */
static lc_wq_req *wq_req_take(lc_wq *q) {
  lc_wq_req *r = q->spare;
  if (r != NULL) {
    q->spare = NULL;
  } else {
    r = malloc(sizeof *r);
    if (r == NULL) return NULL;
    lc_buf_init(&r->bytes, 0);
  }
  r->q = q;
  r->sent = NULL;
  r->ctx = NULL;
  r->bytes.len = 0;
  return r;
}

/* a request that was not submitted, or is done: kept as the spare, or freed */
static void wq_req_give(lc_wq *q, lc_wq_req *r) {
  if (q->closed || q->spare != NULL || r->sent != NULL) { wq_req_free(r); return; }
  if (r->bytes.cap > SPARE_KEEP) lc_buf_free(&r->bytes);
  r->bytes.len = 0;
  q->spare = r;
}

static void wq_write_cb(uv_write_t *req, int status) {
  lc_wq_req *r = (lc_wq_req *)req;
  lc_wq *q = r->q;
  q->inflight--;
  lc_wq_sent_fn sent = r->sent;
  void *ctx = r->ctx;
  wq_req_give(q, r);
  if (sent) sent(ctx, status);
  if (q->closed) return;
  if (status < 0) q->out.len = 0;      /* a stream that failed a write takes no more in order */
  if (status == 0 && q->out.len > 0) {
    int e = q->flusher ? (wq_mark_dirty(q), 0) : lc_wq_flush(q);
    if (e != 0) status = e;
  }
  if (q->written) q->written(q, status);
}

/* hands q->out to libuv in one uv_write (or uv_write2 with send_handle), whatever is in flight */
static int wq_submit(lc_wq *q, uv_stream_t *send_handle, lc_wq_sent_fn sent, void *ctx, lc_buf *bytes) {
  lc_wq_req *r = wq_req_take(q);
  if (r == NULL) return UV_ENOMEM;
  lc_buf tmp = r->bytes;             /* the request takes the bytes, the queue its empty buffer */
  r->bytes = *bytes;
  *bytes = tmp;
  lc_buf_set_max(bytes, r->bytes.max);   /* a write2's uncapped buffer is over q's max: freed */
  r->sent = sent;
  r->ctx = ctx;
  uv_buf_t b;
  b.base = r->bytes.data;
  b.len = r->bytes.len;
  int e = send_handle ? uv_write2(&r->req, q->stream, &b, 1, send_handle, wq_write_cb)
                      : uv_write(&r->req, q->stream, &b, 1, wq_write_cb);
  if (e != 0) {                      /* the bytes go back where they were */
    tmp = *bytes;
    *bytes = r->bytes;
    r->bytes = tmp;
    r->sent = NULL;
    wq_req_give(q, r);
    return e;
  }
  q->inflight++;
  q->writes++;
  return 0;
}

void lc_wq_init(lc_wq *q, uv_stream_t *stream, lc_wq_flusher *flusher, size_t max,
                lc_wq_written_fn written, void *data) {
  memset(q, 0, sizeof *q);
  q->stream = stream;
  q->flusher = flusher;
  lc_buf_init(&q->out, max);
  q->written = written;
  q->data = data;
}

int lc_wq_flush(lc_wq *q) {
  if (q->closed) return UV_EPIPE;
  if (q->out.len == 0 || q->inflight > 0) return 0;
  uv_buf_t b;
  b.base = q->out.data;
  b.len = q->out.len;
  int n = uv_try_write(q->stream, &b, 1);
  if (n < 0 && n != UV_EAGAIN) {
    q->out.len = 0;
    return n;
  }
  if (n > 0) lc_buf_consume(&q->out, (size_t)n);
  if (q->out.len == 0) return 0;
  int e = wq_submit(q, NULL, NULL, NULL, &q->out);
  /* nothing is in flight to hand the bytes over later, and they may be left unmarked: dropped,
   * as on a failed try, so that no one waits for a written that never comes */
  if (e != 0) q->out.len = 0;
  return e;
}

int lc_wq_write(lc_wq *q, const uv_buf_t *bufs, unsigned nbufs) {
  if (q->closed || q->ending) return UV_EPIPE;
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++) {
    if (bufs[i].len > SIZE_MAX - total) return UV_E2BIG;
    total += bufs[i].len;
  }
  if (total == 0) return 0;
  size_t done = 0;
  if (q->flusher == NULL && q->out.len == 0 && q->inflight == 0) {
    int n = uv_try_write(q->stream, bufs, nbufs);
    if (n < 0 && n != UV_EAGAIN) return n;
    if (n > 0) done = (size_t)n;
    if (done == total) return 0;
  }
  int e = lc_buf_reserve(&q->out, total - done);
  if (e != 0) return e;                /* the part the try wrote is gone: the caller closes */
  for (unsigned i = 0; i < nbufs; i++) {
    size_t len = bufs[i].len;
    if (done >= len) { done -= len; continue; }
    memcpy(lc_buf_end(&q->out), bufs[i].base + done, len - done);
    q->out.len += len - done;
    done = 0;
  }
  if (q->flusher) { wq_mark_dirty(q); return 0; }
  if (q->inflight > 0) return 0;       /* leaves when the write in flight is done */
  e = wq_submit(q, NULL, NULL, NULL, &q->out);
  if (e != 0) q->out.len = 0;
  return e;
}

int lc_wq_write2(lc_wq *q, const char *p, size_t n, uv_stream_t *send_handle,
                 lc_wq_sent_fn sent, void *ctx) {
  if (q->closed || q->ending) return UV_EPIPE;
  int e;
  if (q->out.len > 0) {                /* what was queued before goes first */
    e = q->inflight == 0 ? lc_wq_flush(q) : wq_submit(q, NULL, NULL, NULL, &q->out);
    if (e != 0) return e;
  }
  lc_buf bytes;
  lc_buf_init(&bytes, 0);
  if ((e = lc_buf_append(&bytes, p, n)) != 0) return e;
  if (n == 0 && (e = lc_buf_reserve(&bytes, 1)) != 0) return e;  /* uv_write2 needs a base */
  e = wq_submit(q, send_handle, sent, ctx, &bytes);
  lc_buf_free(&bytes);                 /* the request's empty buffer, or the bytes on failure */
  return e;
}

int lc_wq_end(lc_wq *q) {
  if (q->closed) return 1;
  q->ending = 1;
  /* a failure dropped what was queued (lc_wq_flush): nothing left to wait for but what is in flight */
  if (q->flusher && q->out.len > 0) (void)lc_wq_flush(q);
  return lc_wq_idle(q);
}

/* takes q off whichever list holds it: the marked ones, or those being flushed this turn (a
 * written callback may close a queue the walk has not reached yet) */
static void wq_unlink_dirty(lc_wq *q) {
  if (!q->dirty) return;
  lc_wq_flusher *f = q->flusher;
  lc_wq **lists[2] = {&f->dirty, &f->walking};
  for (int i = 0; i < 2; i++) {
    lc_wq **pp = lists[i];
    while (*pp && *pp != q) pp = &(*pp)->next_dirty;
    if (*pp == NULL) continue;
    *pp = q->next_dirty;
    if (i == 0 && f->dirty == NULL) uv_unref((uv_handle_t *)&f->prepare);
    break;
  }
  q->next_dirty = NULL;
  q->dirty = 0;
}

void lc_wq_drop(lc_wq *q) {
  q->out.len = 0;
}

void lc_wq_close(lc_wq *q) {
  if (q->closed) return;
  wq_unlink_dirty(q);
  q->closed = 1;
  lc_buf_free(&q->out);
  if (q->spare) wq_req_free(q->spare);
  q->spare = NULL;
}

void lc_wq_trim(lc_wq *q) {
  if (q->out.len == 0) lc_buf_free(&q->out);
  if (q->spare) wq_req_free(q->spare);
  q->spare = NULL;
}

/* ---- the flusher: once per loop turn ---- */

static void wq_mark_dirty(lc_wq *q) {
  if (q->dirty) return;
  lc_wq_flusher *f = q->flusher;
  if (f->dirty == NULL) uv_ref((uv_handle_t *)&f->prepare);   /* the loop waits for the flush */
  q->dirty = 1;
  q->next_dirty = f->dirty;
  f->dirty = q;
}

/* flushes the queues marked before this call; those marked meanwhile wait for the next turn.
 * One queue at a time leaves f->walking, so that a written callback that closes (unlinks)
 * another queue of this turn takes it off the list being walked */
void lc_wq_flush_all(lc_wq_flusher *f) {
  f->walking = f->dirty;
  f->dirty = NULL;
  if (f->walking) uv_unref((uv_handle_t *)&f->prepare);
  lc_wq *q;
  while ((q = f->walking) != NULL) {
    f->walking = q->next_dirty;
    q->dirty = 0;
    q->next_dirty = NULL;
    if (q->closed) continue;
    int e = lc_wq_flush(q);
    if (e != 0 && q->written) q->written(q, e);
    /* the try wrote it all: no write request will call back, so this does (an ending queue
     * is waiting for it; a queue that asks, notify_flush, wants to know it is idle) */
    else if (e == 0 && q->written && lc_wq_idle(q) && (q->ending || q->notify_flush)) q->written(q, 0);
  }
}

static void wq_prepare_cb(uv_prepare_t *p) {
  lc_wq_flush_all(p->data);
}

int lc_wq_flusher_init(uv_loop_t *loop, lc_wq_flusher *f) {
  f->dirty = f->walking = NULL;
  int e = uv_prepare_init(loop, &f->prepare);
  if (e != 0) return e;
  f->prepare.data = f;
  e = uv_prepare_start(&f->prepare, wq_prepare_cb);
  if (e != 0) return e;
  uv_unref((uv_handle_t *)&f->prepare);
  return 0;
}

void lc_wq_flusher_close(lc_wq_flusher *f, uv_close_cb cb) {
  while (f->dirty) wq_unlink_dirty(f->dirty);
  while (f->walking) wq_unlink_dirty(f->walking);
  uv_close((uv_handle_t *)&f->prepare, cb);
}
