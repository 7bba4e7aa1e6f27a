/* bench/probes/tls_load.c: figure 17's handshake client (issue 18). Opens TLS connections to
 * 127.0.0.1:PORT as fast as the server takes them: N at once, each a non-blocking connect, the
 * handshake, one "GET / HTTP/1.1" with "Connection: close", the answer read to the end (the
 * server closes), close; then the next. Full handshakes (no session offered) or resumed ones
 * (each slot offers the last session ticket its previous connection got: TLS 1.3 tickets arrive
 * after the handshake, through the new-session callback). Every handshake is counted as resumed
 * or full by SSL_session_reused(), so a server whose workers do not share ticket keys shows up as
 * a low resumed share, not as a silently faster or slower figure. The same client for every
 * server: its cost (ECDHE and the signature check of each full handshake) is the same for all.
 *
 *   tls_load full|resume PORT CONNS SECONDS [PROCS]
 *   tls_load get PORT          one connection, one GET; prints the protocol, cipher, group
 *                              and the answer (a readiness check)
 *
 * PROCS processes (default 1) of CONNS/PROCS connections each (one epoll loop per process).
 * Prints one line: "done D full F resumed R errors E seconds S rate X" over all processes, where
 * the first handshake of each slot in resume mode (it has no ticket yet) is not counted as a
 * miss: "first K" says how many there were. Bounded: SECONDS, and 5 s per connection.
 * Build: gcc -O2 -o tls_load tls_load.c -lssl -lcrypto */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECT, ST_HANDSHAKE, ST_WRITE, ST_READ };

typedef struct {
  int fd;
  int state;
  int first; /* this slot has never had a session: its handshake cannot resume */
  SSL *ssl;
  SSL_SESSION *sess; /* the newest ticket this slot got */
  size_t got;        /* response bytes read */
  int saw_200;
  double deadline;
  char *keep; /* get: the answer's first bytes go here */
  size_t keep_cap;
} slot_t;

typedef struct {
  unsigned long done, full, resumed, errors, first;
} counts_t;

static const char REQ[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
static int g_resume;
static int g_port;
static int g_ep;
static int g_idx; /* SSL ex_data index of the slot */
static counts_t g_c;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "tls_load: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* TLS 1.3: the server's tickets arrive after the handshake; keep the newest in the slot */
static int new_session(SSL *ssl, SSL_SESSION *sess) {
  slot_t *s = SSL_get_ex_data(ssl, g_idx);
  if (getenv("TLS_LOAD_DEBUG")) fprintf(stderr, "new session %p slot %p resumable %d\n", (void *)sess, (void *)s, SSL_SESSION_is_resumable(sess));
  if (!s) return 0;
  if (s->sess) SSL_SESSION_free(s->sess);
  s->sess = sess;
  return 1; /* we own it now */
}

static SSL_CTX *make_ctx(void) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) { ERR_print_errors_fp(stderr); exit(2); }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  const char *max = getenv("TLS_LOAD_MAX"); /* "1.2": force TLS 1.2 (tickets then too) */
  if (max && strcmp(max, "1.2") == 0) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, new_session);
  static const unsigned char alpn[] = "\x08http/1.1";
  if (!getenv("TLS_LOAD_NOALPN") && SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) { ERR_print_errors_fp(stderr); exit(2); }
  return ctx;
}

static void watch(slot_t *s, int op, unsigned events) {
  struct epoll_event ev = { .events = events, .data.ptr = s };
  if (epoll_ctl(g_ep, op, s->fd, &ev) != 0) die("epoll_ctl");
}

static void start(SSL_CTX *ctx, slot_t *s) {
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) die("socket");
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)g_port) };
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  s->ssl = SSL_new(ctx);
  if (!s->ssl) { ERR_print_errors_fp(stderr); exit(2); }
  SSL_set_ex_data(s->ssl, g_idx, s);
  SSL_set_fd(s->ssl, s->fd);
  if (g_resume && s->sess) SSL_set_session(s->ssl, s->sess);
  s->got = 0;
  s->saw_200 = 0;
  s->deadline = now() + 5.0;
  if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) die("connect");
  s->state = ST_CONNECT;
  watch(s, EPOLL_CTL_ADD, EPOLLOUT);
}

static void finish(slot_t *s, int ok) {
  epoll_ctl(g_ep, EPOLL_CTL_DEL, s->fd, NULL);
  if (ok) {
    g_c.done++;
    if (s->first) g_c.first++;
    else if (SSL_session_reused(s->ssl)) g_c.resumed++;
    else g_c.full++;
    s->first = 0;
  } else {
    g_c.errors++;
    if (getenv("TLS_LOAD_DEBUG")) ERR_print_errors_fp(stderr);
  }
  ERR_clear_error();
  /* a quiet close (the server has closed already): without it SSL_free marks the session, the
   * ticket this slot keeps, not resumable (ssl_clear_bad_session) */
  if (ok) SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_set_ex_data(s->ssl, g_idx, NULL);
  SSL_free(s->ssl);
  s->ssl = NULL;
  close(s->fd);
  s->fd = -1;
}

/* one step of a slot's state machine; returns 1 while the connection goes on */
static int step(slot_t *s) {
  int r, e;
  char buf[16384];
  switch (s->state) {
  case ST_CONNECT: {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return 0;
    s->state = ST_HANDSHAKE;
  } /* fall through */
  case ST_HANDSHAKE:
    r = SSL_connect(s->ssl);
    if (r != 1) {
      e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_READ) { watch(s, EPOLL_CTL_MOD, EPOLLIN); return 1; }
      if (e == SSL_ERROR_WANT_WRITE) { watch(s, EPOLL_CTL_MOD, EPOLLOUT); return 1; }
      return 0;
    }
    s->state = ST_WRITE;
    /* fall through */
  case ST_WRITE:
    r = SSL_write(s->ssl, REQ, (int)(sizeof REQ - 1));
    if (r <= 0) {
      e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_READ) { watch(s, EPOLL_CTL_MOD, EPOLLIN); return 1; }
      if (e == SSL_ERROR_WANT_WRITE) { watch(s, EPOLL_CTL_MOD, EPOLLOUT); return 1; }
      return 0;
    }
    s->state = ST_READ;
    watch(s, EPOLL_CTL_MOD, EPOLLIN);
    /* fall through */
  case ST_READ:
    for (;;) {
      r = SSL_read(s->ssl, buf, sizeof buf);
      if (r > 0) {
        if (s->got == 0 && r >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0) s->saw_200 = 1;
        if (s->keep && s->got + 1 < s->keep_cap) {
          size_t n = s->keep_cap - 1 - s->got < (size_t)r ? s->keep_cap - 1 - s->got : (size_t)r;
          memcpy(s->keep + s->got, buf, n);
          s->keep[s->got + n] = 0;
        }
        s->got += (size_t)r;
        continue;
      }
      e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return 1;
      if (e == SSL_ERROR_WANT_WRITE) { watch(s, EPOLL_CTL_MOD, EPOLLOUT); return 1; }
      /* the end: close_notify, or the TCP close (SSL_OP_IGNORE_UNEXPECTED_EOF) */
      if ((e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL) && s->saw_200) return -1;
      return 0;
    }
  }
  return 0;
}

static counts_t run(int conns, double seconds) {
  SSL_CTX *ctx = make_ctx();
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  if (g_ep < 0) die("epoll_create1");
  slot_t *slots = calloc((size_t)conns, sizeof *slots);
  if (!slots) die("calloc");
  for (int i = 0; i < conns; i++) {
    slots[i].first = g_resume;
    start(ctx, &slots[i]);
  }
  double t0 = now(), end = t0 + seconds, last_sweep = t0;
  struct epoll_event evs[256];
  while (now() < end) {
    int n = epoll_wait(g_ep, evs, 256, 50);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      slot_t *s = evs[i].data.ptr;
      int r = step(s);
      if (r == 1) continue;
      finish(s, r == -1);
      start(ctx, s);
    }
    double t = now();
    if (t - last_sweep > 0.25) { /* connections past their 5 s */
      last_sweep = t;
      for (int i = 0; i < conns; i++) {
        if (slots[i].fd >= 0 && slots[i].deadline < t) {
          finish(&slots[i], 0);
          start(ctx, &slots[i]);
        }
      }
    }
  }
  return g_c;
}

static int get(void) {
  SSL_CTX *ctx = make_ctx();
  char out[4096] = "";
  slot_t s = { .fd = -1, .keep = out, .keep_cap = sizeof out };
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  if (g_ep < 0) die("epoll_create1");
  start(ctx, &s);
  struct epoll_event ev;
  while (now() < s.deadline) {
    if (epoll_wait(g_ep, &ev, 1, 100) < 1) continue;
    int r = step(&s);
    if (r == 1) continue;
    if (r != -1) {
      printf("failed in state %d (%s)\n%s\n", s.state, s.state == ST_CONNECT ? "connect" : "TLS", out);
      ERR_print_errors_fp(stdout);
      return 1;
    }
    const char *group = "?";
    int nid = SSL_get_negotiated_group(s.ssl);
    if (nid > 0) group = OBJ_nid2sn(nid);
    const SSL_CIPHER *c = SSL_get_current_cipher(s.ssl);
    printf("ok %s %s %s\n%s\n", SSL_get_version(s.ssl), c ? SSL_CIPHER_get_name(c) : "?", group, out);
    return 0;
  }
  printf("failed: timeout\n");
  return 1;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "get") == 0) {
    g_port = atoi(argv[2]);
    g_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return get();
  }
  if (argc < 5 || (strcmp(argv[1], "full") != 0 && strcmp(argv[1], "resume") != 0)) {
    fprintf(stderr, "usage: tls_load full|resume PORT CONNS SECONDS [PROCS] | tls_load get PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g_resume = strcmp(argv[1], "resume") == 0;
  g_port = atoi(argv[2]);
  int conns = atoi(argv[3]);
  double seconds = atof(argv[4]);
  int procs = argc > 5 ? atoi(argv[5]) : 1;
  if (g_port <= 0 || conns <= 0 || seconds <= 0 || procs <= 0 || procs > conns) {
    fprintf(stderr, "tls_load: bad arguments\n");
    return 2;
  }
  g_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  int fds[2];
  if (pipe(fds) != 0) die("pipe");
  double t0 = now();
  for (int p = 0; p < procs; p++) {
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(fds[0]);
      int mine = conns / procs + (p < conns % procs ? 1 : 0);
      counts_t c = run(mine, seconds);
      if (write(fds[1], &c, sizeof c) != (ssize_t)sizeof c) _exit(3);
      _exit(0);
    }
  }
  close(fds[1]);
  counts_t sum = { 0 }, c;
  int got = 0;
  while (read(fds[0], &c, sizeof c) == (ssize_t)sizeof c) {
    sum.done += c.done; sum.full += c.full; sum.resumed += c.resumed; sum.errors += c.errors; sum.first += c.first;
    got++;
  }
  int status, bad = 0;
  while (wait(&status) > 0) if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bad = 1;
  double secs = now() - t0;
  if (got != procs || bad) { fprintf(stderr, "tls_load: %d of %d processes reported\n", got, procs); return 1; }
  printf("done %lu full %lu resumed %lu first %lu errors %lu seconds %.3f rate %.1f\n", sum.done, sum.full, sum.resumed,
         sum.first, sum.errors, secs, (double)sum.done / secs);
  return 0;
}
