/* ws_fanout_subs.c: N WebSocket subscribers for the fan-out figure (issue 17), one epoll loop.
 * Opens N sockets to ws://127.0.0.1:PORT/PATH (the server subscribes each and may send a first
 * "hello" message: --hello), then R rounds of: GET TRIGGER on a fresh connection (the server
 * publishes once), wait until every socket has one more message. Prints per round the time
 * from the trigger to the first and to the last delivery and deliveries/s (N / time to last),
 * then the medians. Frames are counted, not checked (the specs check contents).
 *   ws_fanout_subs PORT N PATH TRIGGER [ROUNDS [--hello]]
 * gcc -O2 -o ws_fanout_subs ws_fanout_subs.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct sub {
  int fd, upgraded;
  size_t have;             /* bytes of the head, or of a frame, kept in buf */
  long frames;
  unsigned char buf[512];
} sub;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void die(const char *what) { perror(what); exit(1); }

/* frames in s->buf[0..have): counted and dropped (payloads over the buffer are skipped) */
static void frames(sub *s, const unsigned char *p, size_t n, size_t *skip) {
  while (n > 0) {
    if (*skip > 0) {
      size_t k = n < *skip ? n : *skip;
      p += k; n -= k; *skip -= k;
      if (*skip == 0) s->frames++;
      continue;
    }
    size_t take = n < sizeof s->buf - s->have ? n : sizeof s->buf - s->have;
    memcpy(s->buf + s->have, p, take);
    s->have += take; p += take; n -= take;
    for (;;) {
      if (s->have < 2) break;
      size_t len = s->buf[1] & 0x7f, h = 2;
      if (len == 126) { if (s->have < 4) break; len = (size_t)s->buf[2] << 8 | s->buf[3]; h = 4; }
      else if (len == 127) { if (s->have < 10) break; len = 0; for (int i = 2; i < 10; i++) len = len << 8 | s->buf[i]; h = 10; }
      if (s->have >= h + len) {
        s->frames++;
        memmove(s->buf, s->buf + h + len, s->have - h - len);
        s->have -= h + len;
        continue;
      }
      *skip = h + len - s->have;   /* the rest of this frame arrives later */
      s->have = 0;
      break;
    }
  }
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) die("connect");
  return fd;
}

/* the request that makes the server publish once; its connection is closed after the round */
static int trigger(int port, const char *path) {
  int fd = connect_to(port);
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
  if (write(fd, req, (size_t)n) != n) die("trigger write");
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: %s PORT N PATH TRIGGER [ROUNDS [--hello]]\n", argv[0]); return 2; }
  int port = atoi(argv[1]), n = atoi(argv[2]);
  const char *path = argv[3], *trig = argv[4];
  int rounds = argc > 5 ? atoi(argv[5]) : 5;
  int hello = argc > 6 && strcmp(argv[6], "--hello") == 0;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll");
  sub *subs = calloc((size_t)n, sizeof *subs);
  size_t *skips = calloc((size_t)n, sizeof *skips);
  if (!subs || !skips) die("calloc");
  static const char head[] = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n";
  int opened = 0, upgraded = 0;
  double t_open = now_s();
  struct epoll_event evs[1024];
  /* open in batches of 500 so the listen backlog is not overrun */
  while (upgraded < n) {
    while (opened < n && opened - upgraded < 500) {
      sub *s = &subs[opened];
      s->fd = connect_to(port);
      struct epoll_event e = {EPOLLOUT | EPOLLIN, {.u32 = (uint32_t)opened}};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e) != 0) die("epoll_ctl");
      opened++;
    }
    int k = epoll_wait(ep, evs, 1024, 20000);
    if (k <= 0) { fprintf(stderr, "timeout opening: %d of %d upgraded\n", upgraded, n); return 1; }
    for (int i = 0; i < k; i++) {
      sub *s = &subs[evs[i].data.u32];
      if ((evs[i].events & EPOLLOUT) && !s->upgraded && s->have == 0 && s->frames == 0) {
        char req[512];
        int m = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%s", path, head);
        if (write(s->fd, req, (size_t)m) != m) die("handshake write");
        struct epoll_event e = {EPOLLIN, {.u32 = evs[i].data.u32}};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
        s->frames = -1;   /* the handshake is sent */
        continue;
      }
      if (!(evs[i].events & EPOLLIN)) continue;
      unsigned char b[4096];
      ssize_t r = read(s->fd, b, sizeof b);
      if (r <= 0) { fprintf(stderr, "socket closed while opening\n"); return 1; }
      size_t off = 0;
      if (!s->upgraded) {
        size_t take = (size_t)r < sizeof s->buf - s->have ? (size_t)r : sizeof s->buf - s->have;
        memcpy(s->buf + s->have, b, take);
        s->have += take;
        unsigned char *end = memmem(s->buf, s->have, "\r\n\r\n", 4);
        if (!end) continue;
        if (memcmp(s->buf, "HTTP/1.1 101", 12) != 0) { fprintf(stderr, "no 101\n"); return 1; }
        size_t hl = (size_t)(end - s->buf) + 4;
        size_t rest = s->have - hl;
        off = (size_t)r - rest;
        s->upgraded = 1;
        s->have = 0;
        s->frames = 0;
        upgraded++;
      }
      frames(s, b + off, (size_t)r - off, &skips[evs[i].data.u32]);
    }
  }
  /* the hellos */
  long base = hello ? 1 : 0;
  for (;;) {
    int missing = 0;
    for (int i = 0; i < n; i++) missing += subs[i].frames < base;
    if (!missing) break;
    int k = epoll_wait(ep, evs, 1024, 20000);
    if (k <= 0) { fprintf(stderr, "timeout waiting for hellos (%d missing)\n", missing); return 1; }
    for (int i = 0; i < k; i++) {
      sub *s = &subs[evs[i].data.u32];
      unsigned char b[65536];
      ssize_t r = read(s->fd, b, sizeof b);
      if (r <= 0) { fprintf(stderr, "socket closed\n"); return 1; }
      frames(s, b, (size_t)r, &skips[evs[i].data.u32]);
    }
  }
  printf("sockets %d open in %.2f s\n", n, now_s() - t_open);
  double *lasts = calloc((size_t)rounds, sizeof *lasts), *rates = calloc((size_t)rounds, sizeof *rates);
  for (int round = 0; round < rounds; round++) {
    long target = base + round + 1;
    int done = 0;
    double t0 = now_s(), first = 0, last = 0;
    int tfd = trigger(port, trig);
    while (done < n) {
      int k = epoll_wait(ep, evs, 1024, 30000);
      if (k <= 0) { fprintf(stderr, "round %d: timeout, %d of %d got it\n", round + 1, done, n); return 1; }
      for (int i = 0; i < k; i++) {
        sub *s = &subs[evs[i].data.u32];
        unsigned char b[65536];
        ssize_t r = read(s->fd, b, sizeof b);
        if (r <= 0) { fprintf(stderr, "socket closed\n"); return 1; }
        long before = s->frames;
        frames(s, b, (size_t)r, &skips[evs[i].data.u32]);
        if (before < target && s->frames >= target) {
          double t = now_s() - t0;
          if (done == 0) first = t;
          last = t;
          done++;
        }
      }
    }
    close(tfd);
    lasts[round] = last;
    rates[round] = n / last;
    printf("round %d: first %.2f ms, last %.2f ms, %.0f deliveries/s\n", round + 1, first * 1e3, last * 1e3, n / last);
    fflush(stdout);
    usleep(200000);
  }
  qsort(lasts, (size_t)rounds, sizeof *lasts, cmp_d);
  qsort(rates, (size_t)rounds, sizeof *rates, cmp_d);
  printf("median: time to last %.2f ms, %.0f deliveries/s\n", lasts[rounds / 2] * 1e3, rates[rounds / 2]);
  return 0;
}
