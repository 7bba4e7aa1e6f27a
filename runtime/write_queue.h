/* write_queue.h: the runtime's one write path for a libuv stream (tcp, pipe, IPC channel).
 * A write is tried at once (uv_try_write) while nothing is queued; what the socket did not take
 * is copied into the queue, and everything queued leaves in one uv_write: at once when no write
 * is in flight, else when the one in flight is done. With a flusher (one per loop) writes are
 * only appended, and each dirty queue is flushed once per loop turn (try first, then one
 * uv_write): frames written in one turn leave in one system call.
 * The queue owns its bytes and its write requests; the stream stays its owner's. Its owner
 * calls lc_wq_close when it closes the stream; the queue must live until libuv has cancelled
 * what was in flight (the stream's close callback is the place to free it). */
#ifndef LC_WRITE_QUEUE_H
#define LC_WRITE_QUEUE_H

#include <uv.h>
#include "buf.h"

typedef struct lc_wq lc_wq;
typedef struct lc_wq_req lc_wq_req;
/* after a write completed (status 0) or failed (< 0), never after lc_wq_close */
typedef void (*lc_wq_written_fn)(lc_wq *q, int status);
/* a lc_wq_write2's own completion: always called once it was accepted, even after lc_wq_close */
typedef void (*lc_wq_sent_fn)(void *ctx, int status);

/* flushes the queues written to in a loop turn, once per turn (a prepare handle) */
typedef struct lc_wq_flusher {
  uv_prepare_t prepare;
  lc_wq *dirty;             /* marked since the last flush (the prepare is ref'd while there are) */
  lc_wq *walking;           /* the ones lc_wq_flush_all has yet to flush this turn */
} lc_wq_flusher;

struct lc_wq {
  uv_stream_t *stream;
  lc_wq_flusher *flusher;   /* NULL: what the try left leaves at once */
  lc_buf out;               /* accepted, not yet handed to libuv */
  unsigned inflight;        /* write requests not completed */
  unsigned char dirty, ending, closed;
  unsigned char notify_flush; /* written(q, 0) also when the flusher's try leaves it idle */
  lc_wq *next_dirty;
  lc_wq_req *spare;         /* a completed request and its buffer, kept for the next write */
  lc_wq_written_fn written;
  void *data;               /* the owner's */
  double writes;            /* write requests made (uv_write, uv_write2) */
};

/* max: most bytes queued (lc_buf's max; 0: no cap); written may be NULL */
void lc_wq_init(lc_wq *q, uv_stream_t *stream, lc_wq_flusher *flusher, size_t max,
                lc_wq_written_fn written, void *data);
/* Queues bufs in order: 0, or UV_EPIPE (ended or closed), UV_E2BIG (over max), UV_ENOMEM, or
 * the try's error (nothing of bufs is queued then). */
int lc_wq_write(lc_wq *q, const uv_buf_t *bufs, unsigned nbufs);
/* n bytes copied with send_handle attached (uv_write2, an IPC pipe), after what is queued;
 * sent(ctx, status) once written or failed. 0, or an error (sent is not called then). */
int lc_wq_write2(lc_wq *q, const char *p, size_t n, uv_stream_t *send_handle,
                 lc_wq_sent_fn sent, void *ctx);
int lc_wq_flush(lc_wq *q);          /* hands what is queued to libuv now (a try first when idle) */
/* No more writes; 1 when nothing is left to write (close now), 0 when written will be called
 * once it is all written (lc_wq_idle) or failed */
int lc_wq_end(lc_wq *q);
void lc_wq_drop(lc_wq *q);           /* drops what is queued and not in flight (a peer gone) */
void lc_wq_close(lc_wq *q);          /* the stream closes: drops what is not in flight; idempotent */
void lc_wq_trim(lc_wq *q);           /* frees the buffers an idle queue keeps */
static inline int lc_wq_idle(const lc_wq *q) { return q->out.len == 0 && q->inflight == 0; }
/* bytes accepted and not yet written (queued here, or left in libuv's requests): backpressure */
static inline size_t lc_wq_queued(const lc_wq *q) {
  return q->out.len + uv_stream_get_write_queue_size(q->stream);
}

int lc_wq_flusher_init(uv_loop_t *loop, lc_wq_flusher *f);   /* the prepare is unref'd */
void lc_wq_flush_all(lc_wq_flusher *f);
void lc_wq_flusher_close(lc_wq_flusher *f, uv_close_cb cb);

#endif
