/* test_tls.c: drives the TLS engine (runtime/tls.c) as the socket layer will, over a real TCP
 * socket (non-blocking, poll) to a real peer; run by spec/tls_engine_spec.lua, which starts
 * `openssl s_server` and checks what this prints.
 *
 *   test_tls connect --port N [--host NAME] [--server-name NAME] [--ca FILE] [--no-verify]
 *            [--alpn LIST] [--send-file FILE] [--send STR] [--out FILE] [--expect BYTES]
 *            [--feed MAX] [--times N] [--key KEY | --no-key] [--seed N] [--end-after-send]
 *            [--fail-alloc N]
 *     Makes N connections in turn (one engine store for all: a worker's), each to 127.0.0.1:N
 *     with NAME as the host the engine is told (SNI, verification). Ciphertext is fed in random
 *     pieces of 1..MAX bytes and plaintext read in random pieces as well. After the handshake it
 *     sends the file or string, then reads until the peer ends the stream (or BYTES came), and
 *     closes with close_notify (--end-after-send: once all is sent). Prints one line per event:
 *       conn I: handshake ok protocol=P cipher=C resumed=0|1 alpn=A sni=S
 *       conn I: error: MESSAGE
 *       conn I: received B bytes, end=close_notify|expected|sent|MESSAGE
 *     and at the end "sessions cached: K" and "allocations: A" (made after the store was).
 *     --fail-alloc N: the Nth of those fails, in any connection but the last (with --times 2 or
 *     more), which shows that what failed left nothing broken behind. Exit 0 unless the harness itself failed (2).
 *     --verify-seq 0110: connection I verifies when the (I-1 mod length)th digit is 1 (one pool key).
 *   test_tls api
 *     The calls' contracts without a network: refusals before the handshake, bad settings, a
 *     fatal alert, EOF in a handshake, a store freed before its session. Prints "ok api".
 *   test_tls garbage PORT [close]
 *     Listens on 127.0.0.1:PORT, prints "listening", answers one connection's first bytes
 *     with bytes that are not TLS (or, with close, closes), waits for the client to close,
 *     and exits. */
#define _GNU_SOURCE             /* memmem */
#include "../tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>
#include <openssl/crypto.h>

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); exit(1); } } while (0)
/* --fail-alloc N: the Nth allocation made by the engine or OpenSSL once the store exists
 * fails (once); the calls must fail cleanly, with a message and nothing leaked. Ours are
 * wrapped at link time (CMakeLists.txt: --wrap), OpenSSL's through CRYPTO_set_mem_functions. */
static long alloc_fail_at, alloc_count;
static int alloc_armed;

static int alloc_fails(void) {
  if (!alloc_armed) return 0;
  return ++alloc_count == alloc_fail_at;
}

void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_calloc(size_t k, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_realloc(void *p, size_t n) { return alloc_fails() ? NULL : __real_realloc(p, n); }
void *__wrap_calloc(size_t k, size_t n) { return alloc_fails() ? NULL : __real_calloc(k, n); }
char *__wrap_strdup(const char *s) { return alloc_fails() ? NULL : __real_strdup(s); }

static void *ossl_malloc(size_t n, const char *file, int line) {
  (void)file; (void)line;
  return alloc_fails() ? NULL : __real_malloc(n);
}
static void *ossl_realloc(void *p, size_t n, const char *file, int line) {
  (void)file; (void)line;
  return alloc_fails() ? NULL : __real_realloc(p, n);
}
static void ossl_free(void *p, const char *file, int line) {
  (void)file; (void)line;
  free(p);
}

#define DIE(...) do { fprintf(stderr, "test_tls: " __VA_ARGS__); fputc('\n', stderr); exit(2); } while (0)

static uint32_t rnd_state = 1;

static uint32_t rnd(void) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return rnd_state >> 8;
}


static size_t rnd_upto(size_t max) {       /* 1..max */
  return max <= 1 ? 1 : 1 + (size_t)rnd() % max;
}


static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) DIE("socket: %s", strerror(errno));
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) DIE("connect to port %d: %s", port, strerror(errno));
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) DIE("fcntl: %s", strerror(errno));
  return fd;
}


/* sends what the engine has for the peer; with wait_ms, waits until it is all gone */
static void flush_out(int fd, lc_tls *t, int wait_ms) {
  for (;;) {
    const char *p;
    size_t n = lc_tls_out(t, &p);
    if (n == 0) return;
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      lc_tls_out_consume(t, (size_t)w);
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_ms > 0) {
      struct pollfd pf = { fd, POLLOUT, 0 };
      if (poll(&pf, 1, wait_ms) <= 0) return;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    lc_tls_out_consume(t, n);                /* the peer is gone: nothing more will leave */
    return;
  }
}


typedef struct conn_args {
  int port;
  const char *host, *key;
  lc_tls_opts opts;
  const char *send;
  size_t send_len;
  FILE *out;
  size_t expect, feed;
  int end_after_send;
} conn_args;


static void run_conn(int idx, lc_tls_store *store, const conn_args *a) {
  char err[256];
  int fd = tcp_connect(a->port);
  lc_tls *t = lc_tls_client_new(store, &a->opts, a->host, a->key, err, sizeof err);
  if (!t) {
    printf("conn %d: error: %s\n", idx, err);
    close(fd);
    return;
  }
  static char buf[65536];
  size_t sent = 0, got = 0;
  const char *end = NULL;
  char endmsg[300];
  int done = 0;
  while (!end) {
    if (!done) {
      int r = lc_tls_handshake(t);
      if (r == 0) {
        done = 1;
        size_t alen;
        const char *alpn = lc_tls_alpn(t, &alen);
        const char *sni = lc_tls_server_name(t);
        printf("conn %d: handshake ok protocol=%s cipher=%s resumed=%d alpn=%.*s sni=%s\n", idx,
               lc_tls_protocol(t), lc_tls_cipher(t), lc_tls_resumed(t), alpn ? (int)alen : 1,
               alpn ? alpn : "-", sni ? sni : "-");
      } else if (r < 0) {
        printf("conn %d: error: %s\n", idx, lc_tls_error(t));
        flush_out(fd, t, 1000);             /* the alert, as the socket layer will send it */
        break;
      }
    }
    const char *p;
    if (done) {
      while (sent < a->send_len && lc_tls_out(t, &p) < 65536) {
        size_t n = rnd_upto(a->send_len - sent < 16384 ? a->send_len - sent : 16384);
        int r = lc_tls_write(t, a->send + sent, n);
        if (r != 0) {
          snprintf(endmsg, sizeof endmsg, "write %s: %s", uv_err_name(r), lc_tls_error(t));
          end = endmsg;
          break;
        }
        sent += n;
      }
      while (!end) {
        size_t n = 0;
        int r = lc_tls_read(t, buf, rnd_upto(a->feed < sizeof buf ? a->feed : sizeof buf), &n);
        if (r == 0) {
          if (n == 0) DIE("lc_tls_read: 0 with nothing read");
          if (a->out && (fwrite(buf, 1, n, a->out) != n || fflush(a->out) != 0)) DIE("write: %s", strerror(errno));
          got += n;
          if (a->expect && got >= a->expect) {
            end = "expected";
            break;
          }
          continue;
        }
        if (r == LC_TLS_WANT_READ) break;
        if (r == UV_EOF) {
          end = "close_notify";
        } else {
          snprintf(endmsg, sizeof endmsg, "%s: %s", uv_err_name(r), lc_tls_error(t));
          end = endmsg;
        }
        break;
      }
    }
    flush_out(fd, t, 0);
    if (!end && done && a->end_after_send && sent == a->send_len && lc_tls_out(t, &p) == 0) end = "sent";
    if (end) break;
    struct pollfd pf = { fd, (short)(POLLIN | (lc_tls_out(t, &p) ? POLLOUT : 0)), 0 };
    int pr = poll(&pf, 1, 10000);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) {
      end = "timeout (10 s without a byte)";
      break;
    }
    if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(fd, buf, rnd_upto(a->feed < sizeof buf ? a->feed : sizeof buf), 0);
      if (n > 0) {
        if (lc_tls_feed(t, buf, (size_t)n) != 0) {
          end = "feed: out of memory";
          break;
        }
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        lc_tls_feed_eof(t);
      }
    }
  }
  if (done) {
    printf("conn %d: received %zu bytes, end=%s\n", idx, got, end ? end : "?");
    if (lc_tls_shutdown(t) != 0) printf("conn %d: shutdown: %s\n", idx, lc_tls_error(t));
    flush_out(fd, t, 1000);
  }
  lc_tls_trim(t);
  close(fd);
  lc_tls_free(t);
}


static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) DIE("%s: %s", path, strerror(errno));
  size_t cap = 65536, n = 0;
  char *p = malloc(cap);
  if (!p) DIE("out of memory");
  for (;;) {
    size_t r = fread(p + n, 1, cap - n, f);
    n += r;
    if (n < cap) break;
    char *q = realloc(p, cap *= 2);
    if (!q) DIE("out of memory");
    p = q;
  }
  if (ferror(f)) DIE("%s: read error", path);
  fclose(f);
  *len = n;
  return p;
}


static int cmd_connect(int argc, char **argv) {
  conn_args a;
  memset(&a, 0, sizeof a);
  lc_tls_opts_init(&a.opts);
  a.host = "127.0.0.1";
  a.feed = 16384;
  int times = 1, no_key = 0;
  const char *verify_seq = NULL;
  char *send_file = NULL, *out_path = NULL;
  char keybuf[300];
  for (int i = 2; i < argc; i++) {
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(o, "--no-verify") == 0) { a.opts.verify = 0; continue; }
    if (strcmp(o, "--no-key") == 0) { no_key = 1; continue; }
    if (strcmp(o, "--end-after-send") == 0) { a.end_after_send = 1; continue; }
    if (!v) DIE("%s needs a value", o);
    i++;
    if (strcmp(o, "--port") == 0) a.port = atoi(v);
    else if (strcmp(o, "--host") == 0) a.host = v;
    else if (strcmp(o, "--server-name") == 0) a.opts.server_name = v;
    else if (strcmp(o, "--ca") == 0) a.opts.ca_file = v;
    else if (strcmp(o, "--alpn") == 0) a.opts.alpn = v;
    else if (strcmp(o, "--send-file") == 0) send_file = (char *)v;
    else if (strcmp(o, "--send") == 0) { a.send = v; a.send_len = strlen(v); }
    else if (strcmp(o, "--out") == 0) out_path = (char *)v;
    else if (strcmp(o, "--expect") == 0) a.expect = (size_t)strtoull(v, NULL, 10);
    else if (strcmp(o, "--feed") == 0) a.feed = (size_t)strtoull(v, NULL, 10);
    else if (strcmp(o, "--times") == 0) times = atoi(v);
    else if (strcmp(o, "--key") == 0) a.key = v;
    else if (strcmp(o, "--verify-seq") == 0) verify_seq = *v ? v : NULL;
    else if (strcmp(o, "--seed") == 0) rnd_state = (uint32_t)strtoul(v, NULL, 10);
    else if (strcmp(o, "--fail-alloc") == 0) alloc_fail_at = strtol(v, NULL, 10);
    else DIE("unknown option %s", o);
  }
  if (a.port <= 0) DIE("--port is needed");
  if (!a.key && !no_key) {
    snprintf(keybuf, sizeof keybuf, "%s:%d", a.host, a.port);
    a.key = keybuf;
  }
  if (no_key) a.key = NULL;
  char *file = NULL;
  if (send_file) {
    file = read_all(send_file, &a.send_len);
    a.send = file;
  }
  if (out_path && !(a.out = fopen(out_path, "wb"))) DIE("%s: %s", out_path, strerror(errno));
  if (alloc_fail_at > 0) {
    /* OpenSSL fills process-wide caches (algorithm names, fetched methods) on first use; an
     * allocation that fails in there leaks, or leaves an algorithm "unsupported" in the whole
     * process for good, which no caller can undo. A first connection ("conn 0", its own store)
     * warms them, so that what fails afterwards is what the engine can answer for. */
    lc_tls_store *warm = lc_tls_store_new();
    if (!warm) DIE("lc_tls_store_new failed");
    run_conn(0, warm, &a);
    lc_tls_store_free(warm);
  }
  lc_tls_store *store = lc_tls_store_new();
  if (!store) DIE("lc_tls_store_new failed");
  alloc_armed = 1;
  for (int i = 1; i <= times; i++) {
    if (alloc_fail_at > 0 && i == times && times > 1) alloc_armed = 0;   /* the last one: recovered? */
    if (verify_seq) a.opts.verify = verify_seq[(size_t)(i - 1) % strlen(verify_seq)] == '1';
    run_conn(i, store, &a);
    fflush(stdout);
  }
  printf("sessions cached: %zu\n", lc_tls_store_sessions(store));
  lc_tls_store_free(store);
  alloc_armed = 0;
  printf("allocations: %ld\n", alloc_count);
  if (a.out && fclose(a.out) != 0) DIE("%s: %s", out_path, strerror(errno));
  free(file);
  return 0;
}


static int cmd_garbage(int port, int close_only) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0) DIE("socket: %s", strerror(errno));
  int one = 1;
  if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) DIE("setsockopt: %s", strerror(errno));
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 4) != 0) DIE("listen: %s", strerror(errno));
  printf("listening\n");
  fflush(stdout);
  int fd = accept(ls, NULL, NULL);
  if (fd < 0) DIE("accept: %s", strerror(errno));
  char buf[4096];
  if (recv(fd, buf, sizeof buf, 0) <= 0) DIE("no ClientHello");
  if (close_only) {
    close(fd);
    close(ls);
    printf("closed\n");
    return 0;
  }
  static const char junk[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                             "\x16\x03\x03\xff\xff not a ServerHello at all";
  if (send(fd, junk, sizeof junk - 1, MSG_NOSIGNAL) < 0) DIE("send: %s", strerror(errno));
  while (recv(fd, buf, sizeof buf, 0) > 0) {}
  close(fd);
  close(ls);
  printf("client gone\n");
  return 0;
}


static int cmd_api(void) {
  char err[256], buf[16];
  size_t n;
  const char *p;
  lc_tls_opts o;
  lc_tls_opts_init(&o);
  CHECK(o.verify == 1 && !o.ca_file && !o.server_name && !o.alpn);
  lc_tls_store *s = lc_tls_store_new();
  CHECK(s != NULL);

  /* settings refused whole, with the reason */
  CHECK(lc_tls_client_new(s, &o, NULL, "k", err, sizeof err) == NULL && strstr(err, "no host name"));
  o.alpn = "h2,";
  CHECK(lc_tls_client_new(s, &o, "a.test", "k", err, sizeof err) == NULL && strstr(err, "bad ALPN list"));
  o.alpn = NULL;
  o.ca_file = "/nonexistent/ca.pem";
  CHECK(lc_tls_client_new(s, &o, "a.test", "k", err, sizeof err) == NULL);
  CHECK(strncmp(err, "cannot load ca_file /nonexistent/ca.pem: ", 41) == 0);
  o.ca_file = NULL;

  /* before the handshake: nothing to read or write, nothing known */
  lc_tls *t = lc_tls_client_new(s, &o, "example.com", "example.com:443", err, sizeof err);
  CHECK(t != NULL);
  CHECK(lc_tls_read(t, buf, sizeof buf, &n) == UV_ENOTCONN && n == 0);
  CHECK(lc_tls_write(t, "x", 1) == UV_ENOTCONN);
  CHECK(!lc_tls_done(t) && lc_tls_protocol(t) == NULL && lc_tls_cipher(t) == NULL && !lc_tls_resumed(t));
  CHECK(strcmp(lc_tls_server_name(t), "example.com") == 0 && strcmp(lc_tls_error(t), "") == 0);
  CHECK(lc_tls_alpn(t, &n) == NULL && n == 0);

  /* the ClientHello, a handshake record carrying the SNI, taken in two pieces */
  CHECK(lc_tls_handshake(t) == LC_TLS_WANT_READ);
  size_t len = lc_tls_out(t, &p);
  CHECK(len > 5 && p[0] == 0x16 && memmem(p, len, "example.com", 11) != NULL);
  lc_tls_out_consume(t, 5);
  CHECK(lc_tls_out(t, &p) == len - 5);
  lc_tls_out_consume(t, len - 5);
  CHECK(lc_tls_out(t, &p) == 0);
  CHECK(lc_tls_handshake(t) == LC_TLS_WANT_READ && lc_tls_out(t, &p) == 0);   /* nothing new */

  /* the owner lets the store go first: the session keeps it until its own free */
  lc_tls_store_free(s);

  /* a fatal alert (handshake_failure) instead of a ServerHello: a failure that stays */
  CHECK(lc_tls_feed(t, "\x15\x03\x03\x00\x02\x02\x28", 7) == 0);
  CHECK(lc_tls_handshake(t) == UV_EPROTO);
  CHECK(strstr(lc_tls_error(t), "TLS handshake failed: sslv3 alert handshake failure") == lc_tls_error(t));
  CHECK(lc_tls_handshake(t) == UV_EPROTO && lc_tls_write(t, "x", 1) == UV_EPROTO);
  CHECK(lc_tls_read(t, buf, sizeof buf, &n) == UV_EPROTO);
  len = lc_tls_out(t, &p);
  CHECK(lc_tls_shutdown(t) == 0 && lc_tls_out(t, &p) == len);   /* no close_notify after it */
  lc_tls_trim(t);
  lc_tls_free(t);                 /* and the store with it (LeakSanitizer checks) */

  s = lc_tls_store_new();
  CHECK(s != NULL);
  /* a fully qualified name is sent and verified without its trailing dot */
  t = lc_tls_client_new(s, &o, "example.com.", NULL, err, sizeof err);
  CHECK(t != NULL && strcmp(lc_tls_server_name(t), "example.com") == 0);
  CHECK(lc_tls_handshake(t) == LC_TLS_WANT_READ && (len = lc_tls_out(t, &p)) > 0);
  CHECK(p != NULL && memmem(p, len, "example.com", 11) != NULL && memmem(p, len, "example.com.", 12) == NULL);
  lc_tls_free(t);

  /* an IP literal gets no SNI; the peer closing in a handshake is said in those words */
  t = lc_tls_client_new(s, &o, "::1", NULL, err, sizeof err);
  CHECK(t != NULL && lc_tls_server_name(t) == NULL);
  CHECK(lc_tls_handshake(t) == LC_TLS_WANT_READ);
  lc_tls_feed_eof(t);
  CHECK(lc_tls_handshake(t) == UV_ECONNRESET);
  CHECK(strcmp(lc_tls_error(t), "TLS handshake failed: the peer closed the connection") == 0);
  CHECK(lc_tls_store_sessions(s) == 0);
  lc_tls_free(t);
  lc_tls_store_free(s);
  printf("ok api\n");
  return 0;
}


int main(int argc, char **argv) {
  /* before OpenSSL allocates anything */
  if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1) DIE("CRYPTO_set_mem_functions");
  if (argc >= 2 && strcmp(argv[1], "connect") == 0) return cmd_connect(argc, argv);
  if (argc == 2 && strcmp(argv[1], "api") == 0) return cmd_api();
  if ((argc == 3 || argc == 4) && strcmp(argv[1], "garbage") == 0)
    return cmd_garbage(atoi(argv[2]), argc == 4 && strcmp(argv[3], "close") == 0);
  fprintf(stderr, "usage: test_tls connect --port N [options] | test_tls api | test_tls garbage PORT [close]\n");
  return 2;
}
