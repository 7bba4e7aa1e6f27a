/* Probe client of figure 7 (memory per idle keep-alive connection): opens N connections to
 * 127.0.0.1:PORT, sends one keep-alive GET on each and reads its whole answer (a 200 with a
 * Content-Length), then holds them all open and idle and prints "held N in MS ms". It stays
 * until SIGTERM or SIGINT (the bench stops it after reading the server's RSS) and prints
 * "closed K" whenever the server has closed K of the held connections meanwhile.
 * At most 128 connections are being opened or answered at once, within any server's listen
 * backlog. It raises its own RLIMIT_NOFILE to N + 64 (past the hard limit when it may).
 * Usage: idle_conns PORT N [PATH]   exit 0 when stopped by a signal; 1 on any failure */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IN_FLIGHT = 128, BUF = 2048, DEADLINE_MS = 120000 };
enum { S_CONNECTING, S_READING, S_HELD, S_CLOSED };

struct conn {
  int fd;
  int state;
  size_t got;
  char buf[BUF];
};

static char request[512];
static size_t request_len;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int fail(const char *what, int err) {
  fprintf(stderr, "idle_conns: %s: %s\n", what, strerror(err));
  return 1;
}

static int raise_nofile(size_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return fail("getrlimit", errno);
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= want) return 0;
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) {
    rl.rlim_cur = want;
  } else {
    rl.rlim_cur = want;
    rl.rlim_max = want; /* needs CAP_SYS_RESOURCE */
  }
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return fail("setrlimit RLIMIT_NOFILE", errno);
  return 0;
}

/* 1: a whole 200 answer is in c->buf; 0: not yet; -1: not a 200 or too long */
static int answered(struct conn *c) {
  c->buf[c->got] = '\0';
  char *end = strstr(c->buf, "\r\n\r\n");
  if (!end) return c->got + 1 >= BUF ? -1 : 0;
  if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0) return -1;
  size_t head = (size_t)(end - c->buf) + 4, length = 0;
  for (char *p = strstr(c->buf, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
    if (strncasecmp(p + 2, "content-length:", 15) == 0) length = strtoul(p + 17, NULL, 10);
  }
  if (head + length >= BUF) return -1;
  return c->got >= head + length;
}

static int open_one(int ep, struct conn *c, size_t i, int port) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return fail("socket", errno);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) return fail("connect", errno);
  c->state = S_CONNECTING;
  struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = i };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) return fail("epoll_ctl", errno);
  return 0;
}

/* one event on connection c: -> 1 when it became held, 0 when not yet, -1 on failure */
static int step(int ep, struct conn *c, size_t i, unsigned events) {
  if (c->state == S_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) { fail("getsockopt", errno); return -1; }
    if (err != 0) { fail("connect", err); return -1; }
    ssize_t n = send(c->fd, request, request_len, MSG_NOSIGNAL);
    if (n != (ssize_t)request_len) { fail("send", n < 0 ? errno : EAGAIN); return -1; }
    c->state = S_READING;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = i };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) { fail("epoll_ctl", errno); return -1; }
    return 0;
  }
  ssize_t n = recv(c->fd, c->buf + c->got, BUF - 1 - c->got, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n <= 0) {
    fprintf(stderr, "idle_conns: connection %zu closed by the server before its answer (events %#x)\n", i, events);
    return -1;
  }
  c->got += (size_t)n;
  int r = answered(c);
  if (r < 0) {
    fprintf(stderr, "idle_conns: connection %zu: not a whole 200 answer: %.200s\n", i, c->buf);
    return -1;
  }
  if (r == 1) c->state = S_HELD;
  return r;
}

/* an event on a held connection: the server closed it (counted once, then unwatched), or sent
 * something it should not have (read and dropped) */
static int watch_held(int ep, struct conn *c, size_t *closed) {
  if (c->state == S_CLOSED) return 0;
  char b[64];
  ssize_t r = recv(c->fd, b, sizeof b, 0);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
    c->state = S_CLOSED;
    (*closed)++;
    if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) != 0) return fail("epoll_ctl", errno);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: idle_conns PORT N [PATH]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long nl = atol(argv[2]);
  if (port <= 0 || port > 65535 || nl <= 0 || nl > 1000000) {
    fprintf(stderr, "idle_conns: bad PORT or N\n");
    return 2;
  }
  size_t n = (size_t)nl;
  const char *path = argc > 3 ? argv[3] : "/";
  int rl = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
  if (rl < 0 || (size_t)rl >= sizeof request) return fail("PATH", ENAMETOOLONG);
  request_len = (size_t)rl;
  if (raise_nofile(n + 64) != 0) return 1;

  struct conn *conns = calloc(n, sizeof *conns);
  if (!conns) return fail("calloc", errno);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return fail("epoll_create1", errno);

  double t0 = now_ms();
  size_t started = 0, held = 0, busy = 0, closed = 0;
  struct epoll_event evs[256];
  while (held < n) {
    while (busy < IN_FLIGHT && started < n) {
      if (open_one(ep, &conns[started], started, port) != 0) return 1;
      started++;
      busy++;
    }
    if (now_ms() - t0 > DEADLINE_MS) {
      fprintf(stderr, "idle_conns: only %zu of %zu connections answered within %d ms\n", held, n, DEADLINE_MS);
      return 1;
    }
    int k = epoll_wait(ep, evs, 256, 1000);
    if (k < 0 && errno != EINTR) return fail("epoll_wait", errno);
    for (int j = 0; j < k; j++) {
      size_t i = (size_t)evs[j].data.u64;
      struct conn *c = &conns[i];
      if (c->state == S_HELD || c->state == S_CLOSED) {
        if (watch_held(ep, c, &closed) != 0) return 1;
        continue;
      }
      int r = step(ep, c, i, evs[j].events);
      if (r < 0) return 1;
      if (r == 1) {
        held++;
        busy--;
      }
    }
  }
  printf("held %zu in %.0f ms\n", n, now_ms() - t0);
  if (closed > 0) printf("closed %zu\n", closed);
  fflush(stdout);

  /* idle: report connections the server closes, until a signal ends the process */
  for (;;) {
    int k = epoll_wait(ep, evs, 256, -1);
    if (k < 0 && errno != EINTR) return fail("epoll_wait", errno);
    size_t before = closed;
    for (int j = 0; j < k; j++) {
      if (watch_held(ep, &conns[(size_t)evs[j].data.u64], &closed) != 0) return 1;
    }
    if (closed != before) {
      printf("closed %zu\n", closed);
      fflush(stdout);
    }
  }
}
