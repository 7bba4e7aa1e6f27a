/* test_wq.c: unit checks of buf.c and write_queue.c on a real loop with real sockets
 * (socketpairs whose peer reads slowly), run by spec/write_queue_spec.lua one case at a time:
 * `test_wq CASE` prints "ok CASE" and exits 0, or names the failed check and exits 1. */
#include "../buf.h"
#include "../write_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + i / 251); }

/* ---- the buffer ---- */

static void t_buf(void) {
  size_t c;
  /* doubling from LC_BUF_MIN, and exactly the cap at the end */
  CHECK(lc_buf_next_cap(0, 1, 1000, &c) == 0 && c == LC_BUF_MIN);
  CHECK(lc_buf_next_cap(256, 257, 1000, &c) == 0 && c == 512);
  CHECK(lc_buf_next_cap(512, 513, 1000, &c) == 0 && c == 1000);
  CHECK(lc_buf_next_cap(512, 1001, 1000, &c) == UV_E2BIG);
  CHECK(lc_buf_next_cap(0, 10, 100, &c) == 0 && c == 100);
  CHECK(lc_buf_next_cap(0, 1, 0, &c) == 0 && c == LC_BUF_MIN);   /* max 0: no cap */
  /* the overflow edge: doubling past SIZE_MAX / 2 stops at the cap, never wraps */
  CHECK(lc_buf_next_cap(SIZE_MAX / 4 + 1, SIZE_MAX / 4 + 2, 0 - (size_t)1, &c) == 0 && c == LC_BUF_NO_CAP);
  CHECK(lc_buf_next_cap(LC_BUF_NO_CAP - 1, LC_BUF_NO_CAP, SIZE_MAX, &c) == 0 && c == LC_BUF_NO_CAP);
  CHECK(lc_buf_next_cap(LC_BUF_NO_CAP, LC_BUF_NO_CAP + 1, SIZE_MAX, &c) == UV_E2BIG);
  CHECK(lc_buf_next_cap(1, SIZE_MAX, SIZE_MAX, &c) == UV_E2BIG);

  lc_buf b;
  lc_buf_init(&b, 1000);
  for (size_t i = 0; i < 1000; i++) { unsigned char x = pattern(i); CHECK(lc_buf_append(&b, &x, 1) == 0); }
  CHECK(b.len == 1000 && b.cap == 1000);
  CHECK(lc_buf_append(&b, "x", 1) == UV_E2BIG);          /* the cap: refused, nothing changed */
  CHECK(b.len == 1000 && b.cap == 1000);
  /* len + extra would wrap SIZE_MAX: refused before any sum is made */
  CHECK(lc_buf_reserve(&b, SIZE_MAX - 999) == UV_E2BIG);
  CHECK(lc_buf_reserve(&b, SIZE_MAX) == UV_E2BIG);
  lc_buf_consume(&b, 10);
  CHECK(b.len == 990);
  for (size_t i = 0; i < 990; i++) CHECK((unsigned char)b.data[i] == pattern(i + 10));
  lc_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0 && b.max == 1000);

  /* no cap: an allocation that cannot be had is UV_ENOMEM, and the buffer is as it was
   * (not under ASan, which reports any allocation that big, even one that returns NULL) */
  lc_buf_init(&b, 0);
  CHECK(lc_buf_append(&b, "abc", 3) == 0);
#ifndef __SANITIZE_ADDRESS__
  CHECK(lc_buf_reserve(&b, LC_BUF_NO_CAP - 3) == UV_ENOMEM);
  CHECK(b.len == 3 && memcmp(b.data, "abc", 3) == 0);
#endif
  CHECK(lc_buf_reserve(&b, LC_BUF_NO_CAP) == UV_E2BIG);
  lc_buf_free(&b);

  /* a buffer handed to an owner with a smaller max (log.c's spare, a write queue's request) has
   * more room than that max: appends past max are refused all the same */
  lc_buf_init(&b, 0);
  static char big[64800];
  CHECK(lc_buf_append(&b, big, sizeof big) == 0 && b.cap >= sizeof big);
  b.len = 0;
  b.max = 1000;
  CHECK(lc_buf_append(&b, big, 1000) == 0);
  CHECK(lc_buf_append(&b, "x", 1) == UV_E2BIG && b.len == 1000);
  CHECK(lc_buf_reserve(&b, 1) == UV_E2BIG);
  /* lc_buf_set_max: an empty buffer bigger than its new max is freed, a full one shrunk */
  b.len = 0;
  lc_buf_set_max(&b, 1000);
  CHECK(b.data == NULL && b.cap == 0 && b.max == 1000);
  lc_buf_init(&b, 0);
  CHECK(lc_buf_append(&b, big, sizeof big) == 0);
  b.len = 10;
  lc_buf_set_max(&b, 100);
  CHECK(b.cap == 100 && b.len == 10 && b.max == 100);
  lc_buf_set_max(&b, 0);
  CHECK(b.cap == 100 && b.max == LC_BUF_NO_CAP);
  lc_buf_free(&b);
}

/* ---- the write queue ---- */

typedef struct slow_reader {
  int fd;
  size_t got, per_tick;
  int eof, bad;
  uv_timer_t timer;
} slow_reader;

static void reader_tick(uv_timer_t *t) {
  slow_reader *r = t->data;
  char buf[65536];
  size_t want = r->per_tick < sizeof buf ? r->per_tick : sizeof buf;
  ssize_t n = read(r->fd, buf, want);
  if (n > 0) {
    for (ssize_t i = 0; i < n; i++) if ((unsigned char)buf[i] != pattern(r->got + (size_t)i)) r->bad = 1;
    r->got += (size_t)n;
  } else if (n == 0) {
    r->eof = 1;
  }
  if (r->eof) uv_close((uv_handle_t *)t, NULL);
}

static void small_buffers(int fds[2]) {
  int sz = 4096;
  CHECK(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) == 0);
  CHECK(setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz) == 0);
  CHECK(fcntl(fds[1], F_SETFL, O_NONBLOCK) == 0);
}

typedef struct writer {
  lc_wq q;
  uv_pipe_t pipe;
  uv_timer_t timer;
  size_t sent, total, chunk, calls, calls_queued, max_queued;
  slow_reader *r;
  int closed, written_calls, end_on_done, err;
} writer;

static void writer_written(lc_wq *q, int status) {
  writer *w = q->data;
  w->written_calls++;
  if (status < 0) w->err = status;
  if (w->end_on_done && q->ending && (lc_wq_idle(q) || status < 0) && !w->closed) {
    w->closed = 1;
    lc_wq_close(q);
    uv_close((uv_handle_t *)&w->pipe, NULL);
  }
}

static void writer_tick(uv_timer_t *t) {
  writer *w = t->data;
  char buf[65536];
  size_t n = w->total - w->sent < w->chunk ? w->total - w->sent : w->chunk;
  for (size_t i = 0; i < n; i++) buf[i] = (char)pattern(w->sent + i);
  /* two buffers, to check the copy of a partly written vector */
  uv_buf_t bufs[2] = {uv_buf_init(buf, (unsigned)(n / 3)), uv_buf_init(buf + n / 3, (unsigned)(n - n / 3))};
  size_t before = lc_wq_queued(&w->q);
  CHECK(lc_wq_write(&w->q, bufs, 2) == 0);
  w->sent += n;
  w->calls++;
  if (lc_wq_queued(&w->q) > before) w->calls_queued++;
  if (lc_wq_queued(&w->q) > w->max_queued) w->max_queued = lc_wq_queued(&w->q);
  /* the backpressure count: never more than what was accepted and not yet read */
  CHECK(lc_wq_queued(&w->q) <= w->sent - w->r->got);
  if (w->sent == w->total) {
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, NULL);
    if (w->end_on_done) {
      if (lc_wq_end(&w->q) && !w->closed) {
        w->closed = 1;
        lc_wq_close(&w->q);
        uv_close((uv_handle_t *)&w->pipe, NULL);
      }
      CHECK(lc_wq_write(&w->q, bufs, 1) == UV_EPIPE);
    }
  }
}

/* a writer faster than its reader: partial tries, queued bytes, coalesced writes, order kept */
static void t_slow(int end_on_done) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  int fds[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  small_buffers(fds);
  slow_reader r = {.fd = fds[1], .per_tick = 2048};
  writer w = {.total = 512 * 1024, .chunk = 32 * 1024, .r = &r, .end_on_done = end_on_done};
  CHECK(uv_pipe_init(&loop, &w.pipe, 0) == 0);
  CHECK(uv_pipe_open(&w.pipe, fds[0]) == 0);
  lc_wq_init(&w.q, (uv_stream_t *)&w.pipe, NULL, 0, writer_written, &w);
  CHECK(uv_timer_init(&loop, &r.timer) == 0);
  r.timer.data = &r;
  CHECK(uv_timer_start(&r.timer, reader_tick, 1, 1) == 0);
  CHECK(uv_timer_init(&loop, &w.timer) == 0);
  w.timer.data = &w;
  CHECK(uv_timer_start(&w.timer, writer_tick, 0, 2) == 0);
  /* until everything is read (and, ending, until the reader sees the end) */
  while (!(r.got == w.total && (!end_on_done || r.eof))) {
    CHECK(uv_run(&loop, UV_RUN_ONCE) != 0 || r.got == w.total);
    if (!end_on_done && r.got == w.total) break;
  }
  CHECK(!r.bad);
  CHECK(w.err == 0);
  CHECK(w.max_queued > 0);                  /* the socket did not take it all at once */
  CHECK(w.calls_queued > 1);
  CHECK(w.q.writes < w.calls_queued);       /* writes made while one was in flight coalesced */
  CHECK(w.q.writes >= 1 && w.written_calls >= 1);
  if (end_on_done) {
    CHECK(w.closed && r.eof);
  } else {
    CHECK(lc_wq_idle(&w.q));
    lc_wq_close(&w.q);
    uv_close((uv_handle_t *)&w.pipe, NULL);
    if (!uv_is_closing((uv_handle_t *)&r.timer)) uv_close((uv_handle_t *)&r.timer, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  close(fds[1]);
  fprintf(stderr, "writes %.0f for %zu calls (%zu queued), most queued %zu bytes\n",
          w.q.writes, w.calls, w.calls_queued, w.max_queued);
}

/* with a flusher: writes of one loop turn leave together, at the turn's flush */
static void t_batch(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  lc_wq_flusher f;
  CHECK(lc_wq_flusher_init(&loop, &f) == 0);
  int fds[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  CHECK(fcntl(fds[1], F_SETFL, O_NONBLOCK) == 0);
  uv_pipe_t p;
  CHECK(uv_pipe_init(&loop, &p, 0) == 0);
  CHECK(uv_pipe_open(&p, fds[0]) == 0);
  lc_wq q;
  lc_wq_init(&q, (uv_stream_t *)&p, &f, 0, NULL, NULL);
  char frame[100];
  for (int i = 0; i < 100; i++) {
    for (size_t j = 0; j < sizeof frame; j++) frame[j] = (char)pattern((size_t)i * sizeof frame + j);
    uv_buf_t b = uv_buf_init(frame, sizeof frame);
    CHECK(lc_wq_write(&q, &b, 1) == 0);
  }
  char buf[20000];
  CHECK(read(fds[1], buf, sizeof buf) < 0 && errno == EAGAIN);   /* nothing left before the flush */
  CHECK(lc_wq_queued(&q) == 10000 && q.dirty);
  CHECK(uv_run(&loop, UV_RUN_NOWAIT) == 0);   /* one turn; the flusher lets the loop end then */
  CHECK(lc_wq_idle(&q) && !q.dirty);
  CHECK(q.writes == 0);                       /* one try took all 100 frames: no request */
  ssize_t n = read(fds[1], buf, sizeof buf);
  CHECK(n == 10000);
  for (ssize_t i = 0; i < n; i++) CHECK((unsigned char)buf[i] == pattern((size_t)i));
  /* a closed queue leaves the flusher's list and takes nothing more */
  uv_buf_t b = uv_buf_init(frame, 1);
  CHECK(lc_wq_write(&q, &b, 1) == 0 && q.dirty);
  lc_wq_close(&q);
  CHECK(!q.dirty && f.dirty == NULL && lc_wq_queued(&q) == 0);
  CHECK(lc_wq_write(&q, &b, 1) == UV_EPIPE);
  uv_close((uv_handle_t *)&p, NULL);
  lc_wq_flusher_close(&f, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  close(fds[1]);
}

/* uv_write2: the bytes queued before go first, the socket arrives with the bytes after */
typedef struct h2 { uv_pipe_t a, b; lc_wq q; char got[16]; size_t ngot; int sent_status, sent_calls, handles; } h2;

static void h2_sent(void *ctx, int status) {
  h2 *t = ctx;
  t->sent_status = status;
  t->sent_calls++;
}

static void h2_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) { (void)s; h2 *t = h->data; b->base = t->got + t->ngot; b->len = sizeof t->got - t->ngot; }

static void h2_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  h2 *t = s->data;
  if (n < 0) { uv_read_stop(s); return; }
  t->ngot += (size_t)n;
  while (uv_pipe_pending_count(&t->b) > 0) {
    CHECK(uv_pipe_pending_type(&t->b) == UV_TCP);
    uv_tcp_t *c = malloc(sizeof *c);
    CHECK(c && uv_tcp_init(s->loop, c) == 0 && uv_accept(s, (uv_stream_t *)c) == 0);
    CHECK(t->ngot >= 4);                      /* the socket came with the write2's byte */
    t->handles++;
    uv_close((uv_handle_t *)c, (uv_close_cb)free);
  }
  if (t->ngot == 5) { uv_read_stop(s); }
}

static void t_write2(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  int fds[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  h2 t;
  memset(&t, 0, sizeof t);
  t.sent_status = 1;
  CHECK(uv_pipe_init(&loop, &t.a, 1) == 0 && uv_pipe_open(&t.a, fds[0]) == 0);
  CHECK(uv_pipe_init(&loop, &t.b, 1) == 0 && uv_pipe_open(&t.b, fds[1]) == 0);
  t.b.data = &t;
  lc_wq_init(&t.q, (uv_stream_t *)&t.a, NULL, 0, NULL, NULL);
  uv_tcp_t sock;
  CHECK(uv_tcp_init(&loop, &sock) == 0);
  struct sockaddr_in addr;
  CHECK(uv_ip4_addr("127.0.0.1", 0, &addr) == 0);
  CHECK(uv_tcp_bind(&sock, (const struct sockaddr *)&addr, 0) == 0);
  uv_buf_t b = uv_buf_init("abc", 3);
  CHECK(lc_wq_write(&t.q, &b, 1) == 0);
  CHECK(lc_wq_write2(&t.q, "x", 1, (uv_stream_t *)&sock, h2_sent, &t) == 0);
  b = uv_buf_init("y", 1);
  CHECK(lc_wq_write(&t.q, &b, 1) == 0);
  CHECK(uv_read_start((uv_stream_t *)&t.b, h2_alloc, h2_read) == 0);
  while (t.ngot < 5) { uv_run(&loop, UV_RUN_ONCE); CHECK(t.ngot >= 5 || uv_loop_alive(&loop)); }
  CHECK(memcmp(t.got, "abcxy", 5) == 0);
  CHECK(t.handles == 1 && t.sent_calls == 1 && t.sent_status == 0);
  CHECK(lc_wq_idle(&t.q));
  lc_wq_close(&t.q);
  uv_close((uv_handle_t *)&sock, NULL);
  uv_close((uv_handle_t *)&t.a, NULL);
  uv_close((uv_handle_t *)&t.b, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

/* a pipe on one end of a socketpair with small buffers; fds[1] is the peer's end */
static void small_pair(uv_loop_t *loop, uv_pipe_t *p, int fds[2]) {
  CHECK(uv_loop_init(loop) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  small_buffers(fds);
  CHECK(uv_pipe_init(loop, p, 0) == 0 && uv_pipe_open(p, fds[0]) == 0);
}

/* the peer is gone: the queued write fails through written, a new one at once */
typedef struct gone { lc_wq q; int status; } gone;
static void gone_written(lc_wq *q, int status) { ((gone *)q->data)->status = status; }

static void t_peer_gone(void) {
  uv_loop_t loop;
  uv_pipe_t p;
  int fds[2];
  small_pair(&loop, &p, fds);
  gone g = {.status = 1};
  lc_wq_init(&g.q, (uv_stream_t *)&p, NULL, 0, gone_written, &g);
  static char big[256 * 1024];
  uv_buf_t b = uv_buf_init(big, sizeof big);
  CHECK(lc_wq_write(&g.q, &b, 1) == 0);
  CHECK(lc_wq_queued(&g.q) > 0 && g.q.inflight == 1);
  close(fds[1]);
  while (g.status == 1) CHECK(uv_run(&loop, UV_RUN_ONCE) != 0 || g.status != 1);
  CHECK(g.status == UV_EPIPE || g.status == UV_ECONNRESET);
  CHECK(lc_wq_idle(&g.q));
  CHECK(lc_wq_write(&g.q, &b, 1) < 0);
  lc_wq_close(&g.q);
  uv_close((uv_handle_t *)&p, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

/* the queue's cap: a write over it is refused whole */
static void t_cap(void) {
  uv_loop_t loop;
  uv_pipe_t p;
  int fds[2];
  small_pair(&loop, &p, fds);
  lc_wq q;
  lc_wq_init(&q, (uv_stream_t *)&p, NULL, 64 * 1024, NULL, NULL);
  static char big[48 * 1024];
  uv_buf_t b = uv_buf_init(big, sizeof big);
  CHECK(lc_wq_write(&q, &b, 1) == 0);              /* the try takes some, the rest is queued */
  CHECK(lc_wq_write(&q, &b, 1) == 0);              /* in flight: queued, under the cap */
  size_t before = lc_wq_queued(&q);
  CHECK(lc_wq_write(&q, &b, 1) == UV_E2BIG && lc_wq_queued(&q) == before);
  lc_wq_close(&q);
  uv_close((uv_handle_t *)&p, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  close(fds[1]);
}

/* fills the socket fd until it takes nothing more */
static void fill_socket(int fd) {
  static char junk[65536];
  while (write(fd, junk, sizeof junk) > 0) {}
  CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* reads what fd holds now: the bytes read */
static size_t drain_socket(int fd) {
  static char buf[65536];
  size_t got = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) got += (size_t)n;
  return got;
}

/* a write2 without a handle or sent callback leaves its (uncapped) buffer as the spare; the
 * queue's next write takes that buffer, and the queue's cap holds all the same */
static void t_write2_cap(void) {
  uv_loop_t loop;
  uv_pipe_t p;
  int fds[2];
  small_pair(&loop, &p, fds);
  lc_wq q;
  lc_wq_init(&q, (uv_stream_t *)&p, NULL, 1000, NULL, NULL);
  static char big[64800];
  CHECK(lc_wq_write2(&q, big, sizeof big, NULL, NULL, NULL) == 0);
  size_t got = 0;
  while (got < sizeof big) {
    got += drain_socket(fds[1]);
    CHECK(uv_run(&loop, UV_RUN_NOWAIT) >= 0);
  }
  while (!lc_wq_idle(&q)) uv_run(&loop, UV_RUN_NOWAIT);
  fill_socket(fds[0]);
  uv_buf_t b = uv_buf_init(big, 100);
  size_t accepted = 0;
  while (lc_wq_write(&q, &b, 1) == 0) {
    accepted += 100;
    CHECK(accepted <= 2 * sizeof big);
  }
  CHECK(q.out.len <= 1000 && q.out.cap <= 1000);   /* the big buffer was freed, not kept */
  CHECK(accepted <= 2000);               /* one request in flight (at most 1000), the cap queued */
  lc_wq_close(&q);
  uv_close((uv_handle_t *)&p, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  close(fds[1]);
}

/* the flusher's walk: A's written closes B, which the walk has not reached yet; B hears
 * nothing after its close, and C, after B on the list, is flushed */
typedef struct wq_link { lc_wq q; uv_pipe_t p; int fds[2]; int written, closed, written_after_close; struct wq_link *closes; } wq_link;

static void link_written(lc_wq *q, int status) {
  wq_link *l = q->data;
  (void)status;
  l->written++;
  if (l->closed) l->written_after_close++;
  if (l->closes && !l->closes->closed) {
    l->closes->closed = 1;
    lc_wq_close(&l->closes->q);
    uv_close((uv_handle_t *)&l->closes->p, NULL);
  }
}

static void t_chain(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  lc_wq_flusher f;
  CHECK(lc_wq_flusher_init(&loop, &f) == 0);
  wq_link l[3];
  memset(l, 0, sizeof l);
  for (int i = 0; i < 3; i++) {
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, l[i].fds) == 0);
    CHECK(fcntl(l[i].fds[1], F_SETFL, O_NONBLOCK) == 0);
    CHECK(uv_pipe_init(&loop, &l[i].p, 0) == 0 && uv_pipe_open(&l[i].p, l[i].fds[0]) == 0);
    lc_wq_init(&l[i].q, (uv_stream_t *)&l[i].p, &f, 0, link_written, &l[i]);
  }
  l[0].closes = &l[1];
  close(l[0].fds[1]);                        /* A's peer is gone: its flush fails */
  uv_buf_t b = uv_buf_init("abc", 3);
  for (int i = 2; i >= 0; i--) CHECK(lc_wq_write(&l[i].q, &b, 1) == 0);   /* the list: A, B, C */
  CHECK(f.dirty == &l[0].q && l[0].q.next_dirty == &l[1].q && l[1].q.next_dirty == &l[2].q);
  lc_wq_flush_all(&f);
  CHECK(l[0].written == 1 && l[1].closed);
  CHECK(l[1].written_after_close == 0);
  CHECK(!l[2].q.dirty && lc_wq_idle(&l[2].q));   /* C was flushed */
  char got[8];
  CHECK(read(l[2].fds[1], got, sizeof got) == 3 && memcmp(got, "abc", 3) == 0);
  CHECK(f.dirty == NULL && f.walking == NULL);
  /* C goes back on the list at its next write */
  CHECK(lc_wq_write(&l[2].q, &b, 1) == 0 && l[2].q.dirty && f.dirty == &l[2].q);
  CHECK(uv_run(&loop, UV_RUN_NOWAIT) == 0);
  CHECK(read(l[2].fds[1], got, sizeof got) == 3);
  for (int i = 0; i < 3; i++) {
    if (i != 1) { lc_wq_close(&l[i].q); uv_close((uv_handle_t *)&l[i].p, NULL); }
    if (i != 0) close(l[i].fds[1]);
  }
  lc_wq_flusher_close(&f, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

/* allocations that fail on demand: the test target links with --wrap=malloc,--wrap=realloc, so
 * buf.c's and write_queue.c's allocations come here */
static int fail_allocs;   /* the next this many allocations fail */
void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n) {
  if (fail_allocs > 0) { fail_allocs--; return NULL; }
  return __real_malloc(n);
}
void *__wrap_realloc(void *p, size_t n) {
  if (fail_allocs > 0) { fail_allocs--; return NULL; }
  return __real_realloc(p, n);
}

typedef struct oomq { lc_wq q; int status, calls; } oomq;
static void oom_written(lc_wq *q, int status) { oomq *o = q->data; o->status = status; o->calls++; }

/* a flush that cannot get a write request: the bytes are dropped and the failure reported, so
 * that nothing waits for a written that never comes (an ending queue, ipc's try_close) */
static void t_oom(void) {
  uv_loop_t loop;
  uv_pipe_t p;
  int fds[2];
  small_pair(&loop, &p, fds);
  lc_wq_flusher f;
  CHECK(lc_wq_flusher_init(&loop, &f) == 0);
  oomq o = {.status = 1};
  lc_wq_init(&o.q, (uv_stream_t *)&p, &f, 0, oom_written, &o);
  fill_socket(fds[0]);
  static char bytes[1000];
  uv_buf_t b = uv_buf_init(bytes, sizeof bytes);
  /* the loop turn's flush */
  CHECK(lc_wq_write(&o.q, &b, 1) == 0 && o.q.dirty);
  fail_allocs = 1;
  lc_wq_flush_all(&f);
  CHECK(fail_allocs == 0);
  CHECK(o.calls == 1 && o.status == UV_ENOMEM);
  CHECK(lc_wq_idle(&o.q) || o.q.dirty);          /* dropped, or to be tried again */
  CHECK(lc_wq_idle(&o.q));
  /* a flush asked for (ipc's try_close): its failure leaves nothing to wait for */
  CHECK(lc_wq_write(&o.q, &b, 1) == 0);
  fail_allocs = 1;
  CHECK(lc_wq_flush(&o.q) == UV_ENOMEM && fail_allocs == 0);
  CHECK(lc_wq_idle(&o.q));
  /* lc_wq_end: nothing in flight, the failed flush dropped the rest: close now */
  CHECK(lc_wq_write(&o.q, &b, 1) == 0);
  fail_allocs = 1;
  CHECK(lc_wq_end(&o.q) == 1 && fail_allocs == 0);
  /* with memory again, the queue works: a fresh one on the same stream */
  lc_wq_close(&o.q);
  lc_wq_init(&o.q, (uv_stream_t *)&p, &f, 0, oom_written, &o);
  CHECK(lc_wq_write(&o.q, &b, 1) == 0);
  lc_wq_flush_all(&f);
  CHECK(o.q.inflight == 1);
  while (!lc_wq_idle(&o.q)) { drain_socket(fds[1]); uv_run(&loop, UV_RUN_NOWAIT); }
  lc_wq_close(&o.q);
  uv_close((uv_handle_t *)&p, NULL);
  lc_wq_flusher_close(&f, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  close(fds[1]);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc != 2) { fprintf(stderr, "usage: test_wq buf|slow|end|batch|write2|peer_gone|cap|write2_cap|chain|oom\n"); return 2; }
  const char *c = argv[1];
  if (strcmp(c, "buf") == 0) t_buf();
  else if (strcmp(c, "slow") == 0) t_slow(0);
  else if (strcmp(c, "end") == 0) t_slow(1);
  else if (strcmp(c, "batch") == 0) t_batch();
  else if (strcmp(c, "write2") == 0) t_write2();
  else if (strcmp(c, "peer_gone") == 0) t_peer_gone();
  else if (strcmp(c, "cap") == 0) t_cap();
  else if (strcmp(c, "write2_cap") == 0) t_write2_cap();
  else if (strcmp(c, "chain") == 0) t_chain();
  else if (strcmp(c, "oom") == 0) t_oom();
  else { fprintf(stderr, "unknown case %s\n", c); return 2; }
  printf("ok %s\n", c);
  return 0;
}
