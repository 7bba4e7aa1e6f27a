/* uv_send.h: send_bytes() for the probes on libuv (ws_load.c, ws_server.c): writes what the
 * socket takes now (uv_try_write) and queues a copy of the rest (uv_write, freed when written).
 * A write error is left to the read side, which sees the connection end. */
#ifndef BENCH_UV_SEND_H
#define BENCH_UV_SEND_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct send_req {
  uv_write_t req;
  char data[];
};

static void send_done(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void send_bytes(uv_stream_t *s, const void *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_try_write(s, &b, 1);
  size_t done = r > 0 ? (size_t)r : 0;
  if (r < 0 && r != UV_EAGAIN) return;
  if (done == len) return;
  struct send_req *w = malloc(sizeof *w + (len - done));
  if (!w) {
    fprintf(stderr, "send_bytes: out of memory\n");
    exit(1);
  }
  memcpy(w->data, (const char *)data + done, len - done);
  b = uv_buf_init(w->data, (unsigned)(len - done));
  if (uv_write(&w->req, s, &b, 1, send_done) != 0) free(w);
}

#endif
