/* The HTTP side of the two libuv probes: a keep-alive "Hello, World!\n" server on libuv and
 * libhttp-parser with no Lua. Pipelined requests read in one chunk are answered with one write;
 * a request that asks for "Connection: close" is answered and the connection closed. It is the
 * least a server of this architecture has to do per request, so it is the ceiling luacluster's
 * HTTP figures are divided by. */
#ifndef BENCH_UV_HTTP_H
#define BENCH_UV_HTTP_H

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char RESP_KA[] =
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";
static const char RESP_CLOSE[] =
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\nHello, World!\n";

typedef struct conn {
  uv_tcp_t tcp;
  http_parser parser;
  char out[16384];
  size_t out_len;
  int close_after;
  char in[65536];
} conn_t;

typedef struct wreq {
  uv_write_t req;
  conn_t *c;
  int close_after;
  char data[];
} wreq_t;

static http_parser_settings probe_settings;

static void probe_on_close(uv_handle_t *h) { free(h->data); }

static void probe_close(conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, probe_on_close);
}

static int probe_on_complete(http_parser *p) {
  conn_t *c = p->data;
  int ka = http_should_keep_alive(p);
  const char *r = ka ? RESP_KA : RESP_CLOSE;
  size_t n = ka ? sizeof RESP_KA - 1 : sizeof RESP_CLOSE - 1;
  if (c->out_len + n <= sizeof c->out) {
    memcpy(c->out + c->out_len, r, n);
    c->out_len += n;
  }
  if (!ka) {
    c->close_after = 1;
    return 1; /* stop parsing: nothing after a close is answered */
  }
  return 0;
}

static void probe_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)sz;
  *buf = uv_buf_init(c->in, sizeof c->in);
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
  if (nread == 0 || c->close_after) return;
  size_t done = http_parser_execute(&c->parser, &probe_settings, buf->base, nread);
  if (c->parser.http_errno != HPE_OK && c->parser.http_errno != HPE_PAUSED && !c->close_after) {
    probe_close(c);
    return;
  }
  (void)done;
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
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, probe_on_close);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, probe_alloc, probe_read);
}

static void probe_http_init(void) {
  memset(&probe_settings, 0, sizeof probe_settings);
  probe_settings.on_message_complete = probe_on_complete;
}

#endif
