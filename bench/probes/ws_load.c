/* Load client of figures 14-16 (WebSocket): one libuv loop, N WebSocket connections to
 * 127.0.0.1:PORT PATH (the RFC 6455 upgrade, then client-masked frames), at most 128 being
 * opened at once. Three modes:
 *   echo PORT PATH N SECONDS WARMUP   closed loop: each connection sends a 32-byte text frame,
 *       waits for the same bytes back, sends again; after WARMUP s the round trips of SECONDS s
 *       are counted: prints "echo N round trips in S s: R/s" (and "mismatch K" if an echo differed)
 *   fanout PORT PATH N PUBLISHES PUBPATH   every connection waits for the server's "ok" (it is
 *       subscribed), then PUBLISHES + 1 times (the first a warm-up): GET PUBPATH?p=I on one
 *       keep-alive HTTP connection; the server publishes the query "p=I" (padded by this client
 *       to 32 bytes) and every connection must receive exactly that once. Prints per publish
 *       "publish I: N delivered, first F ms, last L ms" (from the write of the GET), 200 ms apart,
 *       then "done" (and it exits 300 ms later)
 *   idle PORT PATH N   opens N, prints "held N in MS ms", holds them until SIGTERM (at most 300 s)
 *       and prints "closed K" whenever the server has closed K of them
 * Everything is bounded in time: a phase that does not complete in 60 s fails (exit 1).
 * It raises its own RLIMIT_NOFILE to N + 1024 (past the hard limit when it may). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "uv_send.h"

enum { IN_FLIGHT = 128, PHASE_MS = 60000, IDLE_MAX_MS = 300000, GAP_MS = 200, PAYLOAD = 32 };
enum { M_ECHO, M_FANOUT, M_IDLE };
enum { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSED };

struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  int state;
  int ready;
  long last_pub;
  char *buf;
  size_t len, cap;
};

static uv_loop_t *loop;
static int mode;
static struct sockaddr_in addr;
static const char *path;
static size_t n, started, opened, ready_count, closed_count;
static struct conn *conns;
static char upgrade[512];
static size_t upgrade_len;
static char rbuf[65536];

/* echo */
static double seconds, warmup;
static unsigned char frame[6 + PAYLOAD];
static const char payload[PAYLOAD + 1] = "Hello, World! (32-byte message).";
static unsigned long long round_trips, mismatches, count_at_warm;
static double t_warm;

/* fanout */
static long publishes, cur_pub = -1;
static size_t got;
static double t_pub, t_first;
static char expect[PAYLOAD + 1];
static uv_tcp_t http;
static uv_connect_t http_creq;
static int http_open;
static const char *pub_path;

static uv_timer_t phase_timer, tick_timer;
static double t_phase;

static double now_ms(void) { return (double)uv_hrtime() / 1e6; }

static void die(const char *fmt, const char *what, long a) {
  fprintf(stdout, "ws_load: ");
  fprintf(stdout, fmt, what, a);
  fprintf(stdout, "\n");
  fflush(stdout);
  exit(1);
}

static int raise_nofile(size_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want) return 0;
  rl.rlim_cur = want;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) rl.rlim_max = want; /* needs CAP_SYS_RESOURCE */
  return setrlimit(RLIMIT_NOFILE, &rl);
}

/* a client frame (FIN, masked, length < 126) of text */
static size_t make_frame(unsigned char *out, int opcode, const void *data, size_t len) {
  static const unsigned char key[4] = { 0x37, 0xfa, 0x21, 0x3d };
  out[0] = (unsigned char)(0x80 | opcode);
  out[1] = (unsigned char)(0x80 | len);
  memcpy(out + 2, key, 4);
  for (size_t i = 0; i < len; i++) out[6 + i] = ((const unsigned char *)data)[i] ^ key[i % 4];
  return 6 + len;
}

static void open_next(void);
static void start_publish(uv_timer_t *t);
static void echo_warm(uv_timer_t *t);

static void idle_end(uv_timer_t *t) {
  (void)t;
  exit(0);
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void lost(struct conn *c, const char *why) {
  if (c->state == S_CLOSED) return;
  int was = c->state;
  c->state = S_CLOSED;
  closed_count++;
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, close_cb);
  if (mode == M_IDLE && was == S_OPEN && opened == n) {
    printf("closed %zu\n", closed_count);
    fflush(stdout);
    return;
  }
  die("connection %s (%ld)", why, (long)(c - conns));
}

static void on_open(void) {
  opened++;
  open_next();
  if (mode == M_ECHO) {
    if (opened == n) {
      t_phase = now_ms();
      for (size_t i = 0; i < n; i++) send_bytes((uv_stream_t *)&conns[i].tcp, frame, sizeof frame);
      uv_timer_stop(&phase_timer);
      uv_timer_start(&tick_timer, echo_warm, (uint64_t)(warmup * 1000), 0);
    }
  } else if (mode == M_IDLE) {
    if (opened == n) {
      printf("held %zu in %.0f ms\n", n, now_ms() - t_phase);
      fflush(stdout);
      uv_timer_stop(&phase_timer);
      uv_timer_start(&phase_timer, idle_end, IDLE_MAX_MS, 0);
    }
  }
}

static void on_message(struct conn *c, const char *data, size_t len) {
  if (mode == M_ECHO) {
    if (len != PAYLOAD || memcmp(data, payload, PAYLOAD) != 0) mismatches++;
    round_trips++;
    send_bytes((uv_stream_t *)&c->tcp, frame, sizeof frame);
  } else if (mode == M_FANOUT) {
    if (!c->ready) {
      if (len != 2 || memcmp(data, "ok", 2) != 0) {
        printf("ws_load: the server said %.*s instead of ok\n", (int)(len > 200 ? 200 : len), data);
        fflush(stdout);
        exit(2);
      }
      c->ready = 1;
      if (++ready_count == n) {
        printf("subscribed %zu in %.0f ms\n", n, now_ms() - t_phase);
        fflush(stdout);
        uv_timer_stop(&phase_timer);
        uv_timer_start(&tick_timer, start_publish, GAP_MS, 0);
      }
      return;
    }
    if (cur_pub < 0 || len != PAYLOAD || memcmp(data, expect, PAYLOAD) != 0) {
      printf("ws_load: unexpected message %.*s (publish %ld)\n", (int)(len > 200 ? 200 : len), data, cur_pub);
      fflush(stdout);
      exit(1);
    }
    if (c->last_pub == cur_pub) die("%s %ld", "a message delivered twice to one connection, publish", cur_pub);
    c->last_pub = cur_pub;
    double t = now_ms();
    if (got == 0) t_first = t;
    if (++got == n) {
      printf("publish %ld: %zu delivered, first %.3f ms, last %.3f ms\n", cur_pub, n, t_first - t_pub, t - t_pub);
      fflush(stdout);
      uv_timer_stop(&phase_timer);
      if (cur_pub >= publishes) {
        /* the connections stay open 300 ms more: the bench reads the server's CPU time on
         * "done", before the server has the 10,000 closes to handle */
        printf("done\n");
        fflush(stdout);
        uv_timer_start(&tick_timer, idle_end, 300, 0);
        return;
      }
      uv_timer_start(&tick_timer, start_publish, GAP_MS, 0);
    }
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

/* consumes what it can of data: -> bytes used */
static size_t consume(struct conn *c, const char *data, size_t len) {
  size_t off = 0;
  if (c->state == S_HANDSHAKE) {
    const char *end = memmem(data, len, "\r\n\r\n", 4);
    if (!end) {
      if (len > 8192) lost(c, "sent a head over 8 KiB");
      return 0;
    }
    if (len < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
      printf("ws_load: not a 101: %.*s\n", (int)(len > 300 ? 300 : len), data);
      fflush(stdout);
      exit(1);
    }
    off = (size_t)(end - data) + 4;
    c->state = S_OPEN;
    on_open();
  }
  while (c->state == S_OPEN && len - off >= 2) {
    const unsigned char *p = (const unsigned char *)data + off;
    size_t avail = len - off, hl = 2;
    unsigned long long plen = p[1] & 0x7f;
    if (p[1] & 0x80) lost(c, "got a masked frame from the server");
    if (plen == 126) {
      if (avail < 4) break;
      plen = ((unsigned)p[2] << 8) | p[3];
      hl = 4;
    } else if (plen == 127) {
      if (avail < 10) break;
      plen = 0;
      for (int i = 0; i < 8; i++) plen = (plen << 8) | p[2 + i];
      hl = 10;
    }
    if (plen > (1u << 24)) lost(c, "got a frame over 16 MiB");
    if (avail < hl + plen) break;
    int op = p[0] & 0x0f;
    const char *pl = (const char *)p + hl;
    off += hl + (size_t)plen;
    if (op == 1 || op == 2) {
      on_message(c, pl, (size_t)plen);
    } else if (op == 9) {
      unsigned char pong[6 + 125];
      send_bytes((uv_stream_t *)&c->tcp, pong, make_frame(pong, 10, pl, (size_t)plen));
    } else if (op == 8) {
      lost(c, "closed by the server with a close frame");
    }
  }
  return off;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  struct conn *c = (struct conn *)s;
  (void)b;
  if (nread < 0) {
    lost(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) return;
  if (c->len == 0) {
    size_t used = consume(c, rbuf, (size_t)nread);
    if (c->state == S_CLOSED || used == (size_t)nread) return;
    size_t rest = (size_t)nread - used;
    if (c->cap < rest) {
      c->buf = realloc(c->buf, rest);
      if (!c->buf) die("%s %ld", "out of memory", 0);
      c->cap = rest;
    }
    memcpy(c->buf, rbuf + used, rest);
    c->len = rest;
    return;
  }
  if (c->cap < c->len + (size_t)nread) {
    c->cap = c->len + (size_t)nread;
    c->buf = realloc(c->buf, c->cap);
    if (!c->buf) die("%s %ld", "out of memory", 0);
  }
  memcpy(c->buf + c->len, rbuf, (size_t)nread);
  c->len += (size_t)nread;
  size_t used = consume(c, c->buf, c->len);
  if (c->state == S_CLOSED) return;
  memmove(c->buf, c->buf + used, c->len - used);
  c->len -= used;
}

static void connect_cb(uv_connect_t *req, int status) {
  struct conn *c = req->data;
  if (status != 0) die("connect: %s (%ld)", uv_strerror(status), (long)(c - conns));
  c->state = S_HANDSHAKE;
  int r = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  if (r != 0) die("uv_read_start: %s %ld", uv_strerror(r), 0);
  send_bytes((uv_stream_t *)&c->tcp, upgrade, upgrade_len);
}

/* keeps IN_FLIGHT connections being opened until all n are started */
static void open_next(void) {
  while (started < n && started - opened - closed_count < IN_FLIGHT) {
    struct conn *c = &conns[started++];
    c->last_pub = -1;
    int r = uv_tcp_init(loop, &c->tcp);
    if (r != 0) die("uv_tcp_init: %s %ld", uv_strerror(r), 0);
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, connect_cb);
    if (r != 0) die("uv_tcp_connect: %s (%ld)", uv_strerror(r), (long)(started - 1));
  }
}

static void phase_timeout(uv_timer_t *t) {
  (void)t;
  if (mode == M_FANOUT && cur_pub >= 0) {
    printf("ws_load: publish %ld: only %zu of %zu delivered within %d ms\n", cur_pub, got, n, PHASE_MS);
  } else {
    printf("ws_load: only %zu of %zu connections open (%zu subscribed) within %d ms\n", opened, n, ready_count, PHASE_MS);
  }
  fflush(stdout);
  exit(1);
}

/* ---- echo timing ---- */

static void echo_end(uv_timer_t *t) {
  (void)t;
  double secs = (now_ms() - t_warm) / 1000.0;
  unsigned long long count = round_trips - count_at_warm;
  printf("echo %llu round trips in %.3f s: %.0f/s\n", count, secs, (double)count / secs);
  if (mismatches) printf("mismatch %llu\n", mismatches);
  fflush(stdout);
  exit(mismatches ? 1 : 0);
}

static void echo_warm(uv_timer_t *t) {
  (void)t;
  t_warm = now_ms();
  count_at_warm = round_trips;
  uv_timer_start(&tick_timer, echo_end, (uint64_t)(seconds * 1000), 0);
}

/* ---- fanout publishing ---- */

static void http_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  (void)h;
  (void)s;
  static char hb[4096];
  *b = uv_buf_init(hb, sizeof hb);
}

static void http_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  (void)s;
  (void)b;
  if (nread < 0) {
    http_open = 0;
    uv_close((uv_handle_t *)&http, close_cb);
    if (cur_pub < publishes || got < n) die("%s %ld", "the publishing HTTP connection was closed, publish", cur_pub);
  }
}

static void http_connect_cb(uv_connect_t *req, int status) {
  (void)req;
  if (status != 0) die("publish connection: %s %ld", uv_strerror(status), 0);
  http_open = 1;
  uv_read_start((uv_stream_t *)&http, http_alloc, http_read);
}

static void start_publish(uv_timer_t *t) {
  (void)t;
  if (!http_open) die("%s %ld", "the publishing HTTP connection is not open, publish", cur_pub + 1);
  cur_pub++;
  got = 0;
  char q[64];
  int ql = snprintf(q, sizeof q, "p=%ld", cur_pub);
  memset(expect, '.', PAYLOAD);
  memcpy(expect, q, (size_t)ql);
  expect[PAYLOAD] = 0;
  char req[256];
  int rl = snprintf(req, sizeof req, "GET %s?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", pub_path, expect);
  uv_timer_start(&phase_timer, phase_timeout, PHASE_MS, 0);
  t_pub = now_ms();
  send_bytes((uv_stream_t *)&http, req, (size_t)rl);
}

static void on_signal(uv_signal_t *s, int sig) {
  (void)s;
  (void)sig;
  exit(0);
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: ws_load echo PORT PATH N SECONDS WARMUP | fanout PORT PATH N PUBLISHES PUBPATH | idle PORT PATH N\n");
    return 2;
  }
  mode = strcmp(argv[1], "echo") == 0 ? M_ECHO : strcmp(argv[1], "fanout") == 0 ? M_FANOUT : strcmp(argv[1], "idle") == 0 ? M_IDLE : -1;
  int port = atoi(argv[2]);
  path = argv[3];
  n = (size_t)strtoul(argv[4], NULL, 10);
  if (mode < 0 || port <= 0 || port > 65535 || n == 0 || n > 1000000) {
    fprintf(stderr, "ws_load: bad arguments\n");
    return 2;
  }
  if (mode == M_ECHO) {
    if (argc < 7) return 2;
    seconds = atof(argv[5]);
    warmup = atof(argv[6]);
    if (!(seconds > 0) || seconds > 600 || warmup < 0 || warmup > 600) return 2;
  } else if (mode == M_FANOUT) {
    if (argc < 7) return 2;
    publishes = atol(argv[5]);
    pub_path = argv[6];
    if (publishes < 1 || publishes > 10000) return 2;
  }
  if (raise_nofile(n + 1024) != 0) {
    fprintf(stderr, "ws_load: cannot raise RLIMIT_NOFILE to %zu: %s\n", n + 1024, strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", port, &addr);
  upgrade_len = (size_t)snprintf(upgrade, sizeof upgrade,
    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, port);
  make_frame(frame, 1, payload, PAYLOAD);
  conns = calloc(n, sizeof *conns);
  if (!conns) die("%s %ld", "out of memory", 0);
  uv_timer_init(loop, &phase_timer);
  uv_timer_init(loop, &tick_timer);
  uv_signal_t sigterm, sigint;
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  if (mode == M_FANOUT) {
    uv_tcp_init(loop, &http);
    uv_tcp_nodelay(&http, 1);
    int r = uv_tcp_connect(&http_creq, &http, (const struct sockaddr *)&addr, http_connect_cb);
    if (r != 0) die("publish connection: %s %ld", uv_strerror(r), 0);
  }
  t_phase = now_ms();
  uv_timer_start(&phase_timer, phase_timeout, PHASE_MS, 0);
  open_next();
  /* echo: the clock starts once all n are open (on_open): the warm-up, then the counted run */
  uv_run(loop, UV_RUN_DEFAULT);
  return 1;
}
