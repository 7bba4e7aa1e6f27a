/* Probe of figures 14 and 15 (WebSocket echo and fan-out): the ceiling of luacluster's
 * architecture, in C on libuv with nothing else: a master and WORKERS
 * worker processes, each worker with its own SO_REUSEPORT listening socket on 127.0.0.1:PORT and
 * a socketpair to the master. A worker answers a WebSocket upgrade with a 101 (the accept value
 * of bench/probes/ws_load.c's fixed key: this probe serves that client only), then, unless the
 * path is /echo, a text frame "ok" (ws_load's fan-out waits for it), and keeps the socket; GET /publish?DATA (keep-alive) sends DATA to the master, which
 * sends it to every worker (as luacluster's master routes a publish); each worker frames it once
 * and writes the same bytes to each of its sockets (uv_try_write; a copy queued when the socket
 * does not take it all). GET /ping answers "ok". A text or binary frame from a client is
 * unmasked and sent back (echo, figure 14); other frames are dropped.
 * Usage: ws_server PORT WORKERS */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "uv_send.h"

enum { MAX_WORKERS = 16, HEAD_MAX = 1024 };

static uv_loop_t *loop;

static void die(const char *what, int err) {
  fprintf(stderr, "ws_server: %s: %s\n", what, err ? uv_strerror(err) : "failed");
  exit(1);
}

/* ---- framing on the channels: a 4-byte length, then the bytes ---- */

struct chan {
  uv_pipe_t pipe;
  char *buf;
  size_t len, cap;
  void (*on_msg)(struct chan *, const char *, size_t);
};

static void chan_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  struct chan *c = (struct chan *)h;
  (void)s;
  if (c->cap - c->len < 65536) {
    c->cap = c->len + 65536;
    c->buf = realloc(c->buf, c->cap);
    if (!c->buf) die("realloc", 0);
  }
  *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void chan_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct chan *c = (struct chan *)s;
  (void)b;
  if (n < 0) exit(0); /* the other side is gone: the run is over */
  c->len += (size_t)n;
  size_t off = 0;
  while (c->len - off >= 4) {
    uint32_t l;
    memcpy(&l, c->buf + off, 4);
    if (c->len - off < 4 + (size_t)l) break;
    c->on_msg(c, c->buf + off + 4, l);
    off += 4 + l;
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
}

static void chan_send(struct chan *c, const char *data, size_t len) {
  char tmp[4 + 65536];
  uint32_t l = (uint32_t)len;
  if (len > 65536) return;
  memcpy(tmp, &l, 4);
  memcpy(tmp + 4, data, len);
  send_bytes((uv_stream_t *)&c->pipe, tmp, 4 + len);
}

static void chan_open(struct chan *c, int fd, void (*on_msg)(struct chan *, const char *, size_t)) {
  memset(c, 0, sizeof *c);
  c->on_msg = on_msg;
  int r = uv_pipe_init(loop, &c->pipe, 0);
  if (r == 0) r = uv_pipe_open(&c->pipe, fd);
  if (r == 0) r = uv_read_start((uv_stream_t *)&c->pipe, chan_alloc, chan_read);
  if (r != 0) die("channel", r);
}

/* ---- the master: relays each publish to every worker ---- */

static struct chan workers[MAX_WORKERS];
static int nworkers;

static void master_msg(struct chan *from, const char *data, size_t len) {
  (void)from;
  for (int i = 0; i < nworkers; i++) chan_send(&workers[i], data, len);
}

/* ---- a worker ---- */

struct conn {
  uv_tcp_t tcp;
  int ws;
  size_t index; /* in subs, when ws */
  char head[HEAD_MAX];
  size_t len;
};

static struct chan master;
static struct conn **subs;
static size_t nsubs, subs_cap;

static const char UPGRADE_101[] =
  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
static const char OK_FRAME[] = "\x81\x02ok";
static const char OK_200[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

static void conn_closed(uv_handle_t *h) { free(h); }

static void conn_end(struct conn *c) {
  if (c->ws) {
    subs[c->index] = subs[--nsubs];
    subs[c->index]->index = c->index;
    c->ws = 0;
  }
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static char rbuf[65536];

/* client frames (masked, length < 126 here: bigger ones end the connection): each text or
 * binary frame unmasked and sent back unmasked, the rest dropped */
static void echo_frames(struct conn *c) {
  size_t off = 0;
  while (c->len - off >= 6) {
    unsigned char *p = (unsigned char *)c->head + off;
    size_t plen = p[1] & 0x7f;
    if (plen >= 126 || !(p[1] & 0x80)) {
      conn_end(c);
      return;
    }
    if (c->len - off < 6 + plen) break;
    int op = p[0] & 0x0f;
    if (op == 1 || op == 2) {
      unsigned char out[2 + 125];
      out[0] = (unsigned char)(0x80 | op);
      out[1] = (unsigned char)plen;
      for (size_t i = 0; i < plen; i++) out[2 + i] = p[6 + i] ^ p[2 + (i & 3)];
      send_bytes((uv_stream_t *)&c->tcp, out, 2 + plen);
    }
    off += 6 + plen;
  }
  memmove(c->head, c->head + off, c->len - off);
  c->len -= off;
}

static void conn_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  (void)h;
  (void)s;
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct conn *c = (struct conn *)s;
  (void)b;
  if (n < 0) {
    conn_end(c);
    return;
  }
  if (c->len + (size_t)n > HEAD_MAX) {
    conn_end(c);
    return;
  }
  memcpy(c->head + c->len, rbuf, (size_t)n);
  c->len += (size_t)n;
  if (c->ws) {
    echo_frames(c);
    return;
  }
  for (;;) {
    char *end = memmem(c->head, c->len, "\r\n\r\n", 4);
    if (!end) return;
    size_t hl = (size_t)(end - c->head) + 4;
    if (memmem(c->head, hl, "Upgrade: websocket", 18)) {
      send_bytes(s, UPGRADE_101, sizeof UPGRADE_101 - 1);
      if (memcmp(c->head, "GET /echo ", 10) != 0) send_bytes(s, OK_FRAME, sizeof OK_FRAME - 1);
      if (nsubs == subs_cap) {
        subs_cap = subs_cap ? subs_cap * 2 : 1024;
        subs = realloc(subs, subs_cap * sizeof *subs);
        if (!subs) die("realloc", 0);
      }
      c->ws = 1;
      c->index = nsubs;
      subs[nsubs++] = c;
      memmove(c->head, c->head + hl, c->len - hl);
      c->len -= hl;
      echo_frames(c);
      return;
    }
    if (c->len > 14 && memcmp(c->head, "GET /publish?", 13) == 0) {
      char *sp = memchr(c->head + 13, ' ', hl - 13);
      if (sp) chan_send(&master, c->head + 13, (size_t)(sp - (c->head + 13)));
    }
    send_bytes(s, OK_200, sizeof OK_200 - 1);
    memmove(c->head, c->head + hl, c->len - hl);
    c->len -= hl;
  }
}

/* a publish from the master: framed once, the same bytes written to every socket */
static void worker_msg(struct chan *from, const char *data, size_t len) {
  (void)from;
  char frame[10 + 65536];
  size_t hl;
  frame[0] = (char)0x81;
  if (len < 126) {
    frame[1] = (char)len;
    hl = 2;
  } else {
    frame[1] = 126;
    frame[2] = (char)(len >> 8);
    frame[3] = (char)len;
    hl = 4;
  }
  memcpy(frame + hl, data, len);
  for (size_t i = 0; i < nsubs; i++) send_bytes((uv_stream_t *)&subs[i]->tcp, frame, hl + len);
}

static void on_connection(uv_stream_t *server, int status) {
  if (status != 0) return;
  struct conn *c = calloc(1, sizeof *c);
  if (!c) die("calloc", 0);
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

static void worker_main(int port, int fd) {
  loop = uv_default_loop();
  chan_open(&master, fd, worker_msg);
  static uv_tcp_t server;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(s, (struct sockaddr *)&addr, sizeof addr) != 0)
    die("socket/bind", 0);
  int r = uv_tcp_init(loop, &server);
  if (r == 0) r = uv_tcp_open(&server, s);
  if (r == 0) r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
  if (r != 0) die("listen", r);
  uv_run(loop, UV_RUN_DEFAULT);
  exit(0);
}

static pid_t pids[MAX_WORKERS];

static void on_term(uv_signal_t *s, int sig) {
  (void)s;
  (void)sig;
  for (int i = 0; i < nworkers; i++) kill(pids[i], SIGKILL);
  exit(0);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ws_server PORT WORKERS\n");
    return 2;
  }
  int port = atoi(argv[1]);
  nworkers = atoi(argv[2]);
  if (port <= 0 || port > 65535 || nworkers < 1 || nworkers > MAX_WORKERS) return 2;
  signal(SIGPIPE, SIG_IGN);
  int fds[MAX_WORKERS];
  for (int i = 0; i < nworkers; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair", 0);
    pid_t pid = fork();
    if (pid < 0) die("fork", 0);
    if (pid == 0) {
      close(sv[0]);
      for (int j = 0; j < i; j++) close(fds[j]);
      worker_main(port, sv[1]);
    }
    close(sv[1]);
    fds[i] = sv[0];
    pids[i] = pid;
  }
  loop = uv_default_loop();
  for (int i = 0; i < nworkers; i++) chan_open(&workers[i], fds[i], master_msg);
  uv_signal_t term, intr;
  uv_signal_init(loop, &term);
  uv_signal_init(loop, &intr);
  uv_signal_start(&term, on_term, SIGTERM);
  uv_signal_start(&intr, on_term, SIGINT);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
