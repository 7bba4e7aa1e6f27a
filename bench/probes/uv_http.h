/* The HTTP side of the two libuv probes: a keep-alive "Hello, World!\n" server on libuv with
 * no Lua and no parser library. It frames requests without bodies (the bench sends GETs): each
 * head ends at the first empty line, a head cut by a read waits for the rest. Pipelined requests
 * read in one chunk are answered with one write; a request that asks for "Connection: close"
 * (or an HTTP/1.0 one without keep-alive) is answered and the connection closed. It is the least
 * a server of this architecture has to do per request, so it is the ceiling luacluster's HTTP
 * figures are divided by. */
#ifndef BENCH_UV_HTTP_H
#define BENCH_UV_HTTP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <uv.h>

static const char RESP_KA[] =
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";
static const char RESP_CLOSE[] =
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, World!\n";

typedef struct conn {
  uv_tcp_t tcp;
  char out[16384];
  size_t out_len;
  int close_after;
  size_t in_len; /* bytes of a head not complete yet, kept at the start of in */
  char in[65536];
} conn_t;

typedef struct wreq {
  uv_write_t req;
  conn_t *c;
  int close_after;
  char data[];
} wreq_t;

static void probe_on_close(uv_handle_t *h) { free(h->data); }

static void probe_close(conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, probe_on_close);
}

/* whether a whole head (request line and fields, CRLF line ends) keeps the connection open */
static int probe_keep_alive(const char *head, size_t len) {
  const char *eol = memchr(head, '\r', len);
  int http10 = eol && eol - head >= 8 && memcmp(eol - 8, "HTTP/1.0", 8) == 0;
  for (const char *p = eol; p && (size_t)(p - head) + 2 < len; p = memchr(p + 2, '\r', len - (size_t)(p + 2 - head))) {
    const char *f = p + 2;
    size_t left = len - (size_t)(f - head);
    if (left > 11 && strncasecmp(f, "connection:", 11) == 0) {
      f += 11;
      while (*f == ' ' || *f == '\t') f++;
      if (strncasecmp(f, "close", 5) == 0) return 0;
      if (strncasecmp(f, "keep-alive", 10) == 0) return 1;
    }
  }
  return !http10;
}

static void probe_answer(conn_t *c, int ka) {
  const char *r = ka ? RESP_KA : RESP_CLOSE;
  size_t n = ka ? sizeof RESP_KA - 1 : sizeof RESP_CLOSE - 1;
  if (c->out_len + n <= sizeof c->out) {
    memcpy(c->out + c->out_len, r, n);
    c->out_len += n;
  }
  if (!ka) c->close_after = 1; /* nothing after a close is answered */
}

static void probe_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)sz;
  *buf = uv_buf_init(c->in + c->in_len, sizeof c->in - c->in_len);
}

static void probe_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  if (status < 0 || w->close_after) probe_close(w->c);
  free(w);
}

static void probe_flush(conn_t *c) {
  if (c->out_len == 0) return;
  uv_buf_t b = uv_buf_init(c->out, c->out_len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->out_len) {
    c->out_len = 0;
    if (c->close_after) probe_close(c);
    return;
  }
  if (n < 0) n = 0;
  wreq_t *w = malloc(sizeof *w + c->out_len - n);
  memcpy(w->data, c->out + n, c->out_len - n);
  w->c = c;
  w->close_after = c->close_after;
  b = uv_buf_init(w->data, c->out_len - n);
  c->out_len = 0;
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, probe_written) < 0) {
    free(w);
    probe_close(c);
  }
}

static void probe_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (nread < 0) {
    probe_close(c);
    return;
  }
  (void)buf;
  if (nread == 0 || c->close_after) return;
  size_t len = c->in_len + (size_t)nread, at = 0;
  while (!c->close_after) {
    const char *end = memmem(c->in + at, len - at, "\r\n\r\n", 4);
    if (!end) break;
    size_t head = (size_t)(end + 4 - (c->in + at));
    probe_answer(c, probe_keep_alive(c->in + at, head));
    at += head;
  }
  c->in_len = len - at;
  if (c->in_len == sizeof c->in) { /* a head longer than the buffer: not a client of this bench */
    probe_close(c);
    return;
  }
  if (c->in_len > 0 && at > 0) memmove(c->in, c->in + at, c->in_len);
  if (c->close_after) uv_read_stop(s);
  probe_flush(c);
}

/* A connection accepted on (or received through) `server`: serve it. */
static void probe_serve(uv_loop_t *loop, uv_stream_t *server) {
  conn_t *c = malloc(sizeof *c);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  c->out_len = 0;
  c->close_after = 0;
  c->in_len = 0;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, probe_on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, probe_alloc, probe_read);
}

static void probe_http_init(void) {}

#endif
