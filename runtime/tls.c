/* tls.c: a TLS session over memory on OpenSSL 3 (tls.h). Owns, per store, the SSL_CTXs (one per
 * set of settings), the client session cache and the BIO method; per session, its SSL, its one
 * BIO (ours: it reads the session's input buffer and appends to its output buffer, no socket)
 * and those two buffers. lc_tls_free frees a session; the store goes with its last reference.
 *
 * How the socket layer plugs it in (runtime/tcp.c, after issue 15's branches merge):
 * - lc_rt holds one lc_tls_store, made on the first TLS connect and freed (lc_tls_store_free)
 *   when the runtime closes; sessions still open keep it alive until their own lc_tls_free.
 * - connect with opts.tls: once the TCP connect succeeds, t = lc_tls_client_new(rt's store,
 *   opts, host, pool_key, ...), then lc_tls_handshake(t) (WANT_READ: the ClientHello is in the
 *   output) and the output goes out (below). The connect's waiter resumes when a handshake
 *   returns 0 (the connect timeout covers the handshake), or gets nil, lc_tls_error(t).
 * - the stream's read callback feeds what libuv read: lc_tls_feed(t, buf, nread) (UV_EOF:
 *   lc_tls_feed_eof(t)); while handshaking it calls lc_tls_handshake again; once done it calls
 *   lc_tls_read into the socket's C read buffer until it is no longer 0, and the Lua side reads
 *   plaintext from that buffer as from a plain socket (UV_EOF and UV_ECONNRESET end the stream).
 * - backpressure as for a plain socket: while the socket's read buffer is full the stream stops
 *   reading (uv_read_stop), so nothing more is fed; what was fed waits in t (it is copied).
 * - sock:write(data): lc_tls_write(t, data), then the output goes out.
 * - "the output goes out", after every call on t (a read too: TLS 1.3 key updates answer):
 *   n = lc_tls_out(t, &p); lc_wq_write(q, {p, n}) (runtime/write_queue.c copies what the socket
 *   does not take at once), then lc_tls_out_consume(t, n). Ciphertext never waits in two places.
 * - close: lc_tls_shutdown(t), the output goes out, lc_wq_end, and lc_tls_free(t) in the
 *   stream's close callback (the one place, with the write queue's).
 * - pools: the pool key is the session cache key, so a pooled origin resumes; an idle pooled
 *   socket calls lc_tls_trim(t) (no buffers while idle). Bytes arriving on an idle TLS socket
 *   are not all data: a TLS 1.3 server sends session tickets after the handshake. Feed them,
 *   lc_tls_read: LC_TLS_WANT_READ means no plaintext came and the connection stays poolable.
 * - the server side (issue 18) adds a server constructor and context (certificates, SNI
 *   callback, ALPN selection) to this file; feed, read, write, out, shutdown and free are
 *   the same for both sides. */
#include "tls.h"
#include "buf.h"
#include "tls_tickets.h"

#include <unistd.h>
#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* no BIO_get_new_index(): its indexes are process-wide and few (128..255); ours is never looked
 * up by type, so one fixed type number serves every store */
#define TLS_BIO_TYPE (0x7e | BIO_TYPE_SOURCE_SINK)
#define TLS_MAX_SESSIONS 256      /* cached client sessions per store (least recent dropped) */
#define TLS_MSG 512                /* the longest failure message */
/* the most the store's shared server output buffer keeps allocated once emptied: a big write
 * (one 48 MiB answer) grew it for good, in every worker (review, rev18) */
#define TLS_SOUT_KEEP ((size_t)64 << 10)

typedef struct tls_ctx_entry {
  struct tls_ctx_entry *next;
  int verify;
  char *ca_file;                  /* NULL: the system store (or no verification) */
  SSL_CTX *ctx;
} tls_ctx_entry;

typedef struct tls_sess_entry {
  struct tls_sess_entry *next;
  char *key;
  SSL_SESSION *sess;              /* one reference, ours */
} tls_sess_entry;

struct lc_tls_store {
  size_t refs;                    /* the owner's + one per live session and server */
  lc_buf sout;                    /* the output of every server session: each call's output is
                                   * taken before the next call on any session (one buffer, no
                                   * idle connection holds one) */
  BIO_METHOD *bio_method;
  tls_ctx_entry *ctxs;
  tls_sess_entry *sessions;       /* most recently used first */
  size_t nsessions;
};

struct lc_tls {
  lc_tls_store *store;            /* one reference */
  SSL *ssl;                       /* owns the BIO */
  lc_buf in;                      /* ciphertext fed, not yet read by OpenSSL: from in_off */
  size_t in_off;
  lc_buf out;                     /* ciphertext for the peer (a client's) */
  lc_buf *outp;                   /* where output goes: &out, or the store's sout (a server's) */
  const char *bor;                /* a server's input lent for one call (lc_tls_feed_lend) */
  size_t bor_len;
  lc_tls_server *srv;             /* a server session's server (one reference), else NULL */
  char *key;                      /* the session cache key; NULL: no resumption */
  char *name;                     /* the name (or IP) connected to: SNI, verification, messages */
  const char *sni;                /* name when it was sent as SNI; NULL: none (an IP literal) */
  int failed;                     /* 0, or the code every later call returns */
  unsigned char verify, done, eof, shut, resumed, offered, oom;
  char *err;                      /* the failure's message (made when it fails); NULL: none */
};


static void server_unref(lc_tls_server *srv);


/* ---- the BIO: memory in, memory out ---- */

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}


static int bio_destroy(BIO *b) {
  BIO_set_data(b, NULL);          /* the buffers are the session's */
  return 1;
}


static int bio_read(BIO *b, char *buf, size_t size, size_t *got) {
  lc_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  *got = 0;
  size_t avail = t->in.len - t->in_off;
  if (avail == 0) {
    if (!t->eof) BIO_set_retry_read(b);
    return 0;
  }
  size_t n = size < avail ? size : avail;
  memcpy(buf, t->in.data + t->in_off, n);
  t->in_off += n;
  if (t->in_off == t->in.len) t->in.len = t->in_off = 0;
  *got = n;
  return 1;
}


/* what is lent is read after what is kept (lc_tls_feed_lend appends when something is kept) */
static int bio_read_any(BIO *b, char *buf, size_t size, size_t *got) {
  lc_tls *t = BIO_get_data(b);
  if (t->in.len > t->in_off || t->bor_len == 0) return bio_read(b, buf, size, got);
  BIO_clear_retry_flags(b);
  size_t n = size < t->bor_len ? size : t->bor_len;
  memcpy(buf, t->bor, n);
  t->bor += n;
  t->bor_len -= n;
  *got = n;
  return 1;
}


static int bio_write(BIO *b, const char *buf, size_t size, size_t *put) {
  lc_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  *put = 0;
  if (lc_buf_append(t->outp, buf, size) != 0) {
    t->oom = 1;
    return 0;
  }
  *put = size;
  return 1;
}


static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  lc_tls *t = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_PENDING: return (long)(t->in.len - t->in_off + t->bor_len);
  case BIO_CTRL_WPENDING: return (long)t->outp->len;
  case BIO_CTRL_EOF: return t->eof && t->in.len == t->in_off && t->bor_len == 0;
  default: return 0;
  }
}


/* ---- messages ---- */

/* the reason OpenSSL queued first (the cause; later entries are the calls it went through) */
static const char *ssl_reason(unsigned long e) {
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown error";
}


/* a short hint after the reasons a person meets most, in their terms */
static const char *ssl_hint(unsigned long e) {
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return "";
  switch (ERR_GET_REASON(e)) {
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
  case SSL_R_HTTP_REQUEST:
    return " (the peer does not speak TLS)";
  case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
  case SSL_R_UNSUPPORTED_PROTOCOL:
    return " (the peer and luacluster share no TLS version: TLS 1.2 and 1.3 only)";
  case SSL_R_NO_SHARED_CIPHER:
  case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    return " (no cipher or signature algorithm in common with the peer)";
  default:
    return "";
  }
}


/* the session fails with code: its message is set from sslerr (SSL_get_error's) and OpenSSL's
 * queue; a cached session it offered is dropped (it may be why), and so is the context (below) */
static void cache_drop(lc_tls_store *s, const char *key);
static void ctx_drop(lc_tls_store *s, SSL_CTX *ctx);

static int fail(lc_tls *t, int sslerr) {
  char msg[TLS_MSG];
  unsigned long e = ERR_peek_error();
  long v = t->verify ? SSL_get_verify_result(t->ssl) : X509_V_OK;
  int code = UV_EPROTO;
  if (t->oom) {
    code = UV_ENOMEM;
    snprintf(msg, sizeof msg, "TLS: out of memory");
  } else if (v != X509_V_OK && !t->done) {
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
      snprintf(msg, sizeof msg, "certificate verify failed: %s (the certificate is not for %s)",
               X509_verify_cert_error_string(v), t->name);
    else
      snprintf(msg, sizeof msg, "certificate verify failed: %s", X509_verify_cert_error_string(v));
  } else if (sslerr == SSL_ERROR_ZERO_RETURN || sslerr == SSL_ERROR_SYSCALL ||
             (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
    code = UV_ECONNRESET;
    snprintf(msg, sizeof msg, "%s", t->done ? "TLS: the peer closed the connection without close_notify"
                                            : "TLS handshake failed: the peer closed the connection");
  } else {
    snprintf(msg, sizeof msg, "%s%s%s", t->done ? "TLS: " : "TLS handshake failed: ",
             ssl_reason(e), ssl_hint(e));
  }
  ERR_clear_error();
  free(t->err);
  t->err = strdup(msg);
  if (!t->done) {
    if (t->offered && t->key) cache_drop(t->store, t->key);
    /* not for a peer that only closed: one that resets every handshake would make each
     * attempt reload the CA store on the loop (review) */
    if (code != UV_ECONNRESET) ctx_drop(t->store, SSL_get_SSL_CTX(t->ssl));
  }
  t->failed = code;
  return code;
}


/* ---- the session cache: key -> SSL_SESSION, most recent first ---- */

static void sess_entry_free(tls_sess_entry *x) {
  SSL_SESSION_free(x->sess);
  free(x->key);
  free(x);
}


/* the entry for key, unlinked (NULL when none) */
static tls_sess_entry *cache_take(lc_tls_store *s, const char *key) {
  for (tls_sess_entry **pp = &s->sessions; *pp; pp = &(*pp)->next) {
    tls_sess_entry *x = *pp;
    if (strcmp(x->key, key) == 0) {
      *pp = x->next;
      s->nsessions--;
      return x;
    }
  }
  return NULL;
}


static void cache_push(lc_tls_store *s, tls_sess_entry *x) {
  x->next = s->sessions;
  s->sessions = x;
  s->nsessions++;
  if (s->nsessions <= TLS_MAX_SESSIONS) return;
  tls_sess_entry **pp = &s->sessions;
  while ((*pp)->next) pp = &(*pp)->next;
  sess_entry_free(*pp);
  *pp = NULL;
  s->nsessions--;
}


static void cache_drop(lc_tls_store *s, const char *key) {
  tls_sess_entry *x = cache_take(s, key);
  if (x) sess_entry_free(x);
}


/* a session to offer for key (borrowed), or NULL; an expired one is dropped */
static SSL_SESSION *cache_get(lc_tls_store *s, const char *key) {
  tls_sess_entry *x = cache_take(s, key);
  if (!x) return NULL;
  long born = SSL_SESSION_get_time(x->sess), life = SSL_SESSION_get_timeout(x->sess);
  if (!SSL_SESSION_is_resumable(x->sess) || (long)time(NULL) - born >= life) {
    sess_entry_free(x);
    return NULL;
  }
  cache_push(s, x);
  return x->sess;
}


/* OpenSSL's new-session callback (a TLS 1.2 handshake's end, each TLS 1.3 ticket): 1 when the
 * reference is kept, 0 when OpenSSL keeps it (nothing cached) */
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  lc_tls *t = SSL_get_app_data(ssl);
  if (!t || !t->key || !SSL_SESSION_is_resumable(sess)) return 0;
  tls_sess_entry *x = cache_take(t->store, t->key);
  if (x) {
    SSL_SESSION_free(x->sess);
  } else {
    x = calloc(1, sizeof *x);
    if (!x) return 0;
    x->key = strdup(t->key);
    if (!x->key) {
      free(x);
      return 0;
    }
  }
  x->sess = sess;
  cache_push(t->store, x);
  return 1;
}


/* ---- the store ---- */

lc_tls_store *lc_tls_store_new(void) {
  if (OPENSSL_init_ssl(0, NULL) != 1) return NULL;
  lc_tls_store *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->refs = 1;
  BIO_METHOD *m = BIO_meth_new(TLS_BIO_TYPE, "luacluster tls");
  if (!m) {
    free(s);
    return NULL;
  }
  if (BIO_meth_set_create(m, bio_create) != 1 || BIO_meth_set_destroy(m, bio_destroy) != 1 ||
      BIO_meth_set_read_ex(m, bio_read_any) != 1 || BIO_meth_set_write_ex(m, bio_write) != 1 ||
      BIO_meth_set_ctrl(m, bio_ctrl) != 1) {
    BIO_meth_free(m);
    free(s);
    return NULL;
  }
  s->bio_method = m;
  return s;
}


static void store_unref(lc_tls_store *s) {
  if (--s->refs > 0) return;
  while (s->ctxs) ctx_drop(s, s->ctxs->ctx);
  while (s->sessions) {
    tls_sess_entry *x = s->sessions;
    s->sessions = x->next;
    sess_entry_free(x);
  }
  BIO_meth_free(s->bio_method);
  lc_buf_free(&s->sout);
  free(s);
}


void lc_tls_store_free(lc_tls_store *s) {
  if (s) store_unref(s);
}


size_t lc_tls_store_sessions(const lc_tls_store *s) {
  return s->nsessions;
}


void lc_tls_opts_init(lc_tls_opts *o) {
  memset(o, 0, sizeof *o);
  o->verify = 1;
}


/* the client context for (verify, ca_file), made once per store; NULL with a message in err */
static SSL_CTX *client_ctx(lc_tls_store *s, int verify, const char *ca_file, char *err, size_t errlen) {
  if (!verify) ca_file = NULL;
  for (tls_ctx_entry *c = s->ctxs; c; c = c->next)
    if (c->verify == verify && (c->ca_file ? ca_file && strcmp(c->ca_file, ca_file) == 0 : !ca_file))
      return c->ctx;
  tls_ctx_entry *c = calloc(1, sizeof *c);
  if (!c || (ca_file && !(c->ca_file = strdup(ca_file)))) {
    free(c);
    snprintf(err, errlen, "TLS: out of memory");
    return NULL;
  }
  c->verify = verify;
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  const char *what = "cannot make a TLS context";
  int loading = 0;
  int ok = ctx != NULL && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
           SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1;
  if (ok) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (verify && ca_file) {
      what = "cannot load ca_file";
      loading = 1;
      ok = SSL_CTX_load_verify_file(ctx, ca_file) == 1;
    } else if (verify) {
      what = "cannot load the system's CA store";
      ok = SSL_CTX_set_default_verify_paths(ctx) == 1;
    }
  }
  if (!ok) {
    unsigned long e = ERR_peek_error();
    /* a file that is not there or not readable says so (OpenSSL's reason was "unknown error") */
    if (loading && access(ca_file, R_OK) != 0)
      snprintf(err, errlen, "%s %s: %s", what, ca_file, strerror(errno));
    else if (loading)
      snprintf(err, errlen, "%s %s: %s", what, ca_file, ssl_reason(e));
    else
      snprintf(err, errlen, "%s: %s", what, ssl_reason(e));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    free(c->ca_file);
    free(c);
    return NULL;
  }
  c->ctx = ctx;
  c->next = s->ctxs;
  s->ctxs = c;
  return ctx;
}


/* A handshake that failed (other than by the peer's close) drops the context it used from the
 * store: the next connection with
 * those settings makes a fresh one. OpenSSL keeps some failures in a context for good (an
 * allocation that failed while it first checked a CA certificate marks that certificate invalid
 * in the context's store; a cipher it could not fetch at creation stays disabled), so a context
 * is never trusted again after a failure; a ca_file changed since is read again too. Failures
 * are rare and a context is cheap next to the handshake that failed. Sessions still using it
 * keep it (OpenSSL counts references). */
static void ctx_drop(lc_tls_store *s, SSL_CTX *ctx) {
  for (tls_ctx_entry **pp = &s->ctxs; *pp; pp = &(*pp)->next) {
    tls_ctx_entry *c = *pp;
    if (c->ctx == ctx) {
      *pp = c->next;
      SSL_CTX_free(c->ctx);
      free(c->ca_file);
      free(c);
      return;
    }
  }
}


/* ---- a session ---- */

static int is_ip_literal(const char *name) {
  unsigned char a[16];
  return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}


/* "h2,http/1.1" -> ALPN's wire format (each name after its length byte); 0, or -1 */
static int alpn_wire(const char *list, unsigned char *out, size_t cap, size_t *len) {
  size_t n = 0;
  const char *p = list;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    if (l == 0 || l > 255 || l + 1 > cap - n) return -1;
    out[n++] = (unsigned char)l;
    memcpy(out + n, p, l);
    n += l;
    p += l + (comma ? 1 : 0);
    if (comma && !*p) return -1;
  }
  if (n == 0) return -1;
  *len = n;
  return 0;
}


/* the cache key: the caller's pool key and every setting that decides what was verified */
static char *session_key(const char *key, const lc_tls_opts *o, const char *name) {
  const char *ca = o->verify && o->ca_file ? o->ca_file : "";
  const char *alpn = o->alpn ? o->alpn : "";
  int n = snprintf(NULL, 0, "%s\n%d\n%s\n%s\n%s", key, o->verify ? 1 : 0, ca, name, alpn);
  if (n < 0) return NULL;
  char *k = malloc((size_t)n + 1);
  if (k && snprintf(k, (size_t)n + 1, "%s\n%d\n%s\n%s\n%s", key, o->verify ? 1 : 0, ca, name, alpn) != n) {
    free(k);
    return NULL;
  }
  return k;
}


lc_tls *lc_tls_client_new(lc_tls_store *s, const lc_tls_opts *o, const char *host,
                          const char *key, char *err, size_t errlen) {
  const char *name = o->server_name ? o->server_name : host;
  if (!name || !*name) {
    snprintf(err, errlen, "TLS: no host name to connect to");
    return NULL;
  }
  unsigned char alpn[256];
  size_t alpn_len = 0;
  if (o->alpn && alpn_wire(o->alpn, alpn, sizeof alpn, &alpn_len) != 0) {
    snprintf(err, errlen, "TLS: bad ALPN list \"%s\" (names of 1 to 255 bytes, comma-separated)", o->alpn);
    return NULL;
  }
  SSL_CTX *ctx = client_ctx(s, o->verify, o->ca_file, err, errlen);
  if (!ctx) return NULL;

  lc_tls *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "TLS: out of memory");
    return NULL;
  }
  t->store = s;
  s->refs++;
  lc_buf_init(&t->in, 0);
  lc_buf_init(&t->out, 0);
  t->outp = &t->out;
  t->verify = o->verify != 0;
  const char *what = "out of memory";
  ERR_clear_error();
  /* "example.com." is "example.com": SNI carries no trailing dot (RFC 6066), names match without */
  size_t len = strlen(name);
  if (len > 1 && name[len - 1] == '.') len--;
  int ok = (t->name = malloc(len + 1)) != NULL;
  if (ok) {
    memcpy(t->name, name, len);
    t->name[len] = '\0';
    name = t->name;
  }
  BIO *b = NULL;
  int ip = ok && is_ip_literal(name);
  ok = ok && (t->ssl = SSL_new(ctx)) != NULL && (b = BIO_new(s->bio_method)) != NULL;
  if (ok) {
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);    /* the SSL owns it from here */
    ok = SSL_set_app_data(t->ssl, t) == 1;
    SSL_set_connect_state(t->ssl);
  } else {
    BIO_free(b);
  }
  if (ok && !ip) {
    what = "bad server name";
    ok = SSL_set_tlsext_host_name(t->ssl, name) == 1;
    t->sni = name;
  }
  if (ok && t->verify) {
    what = "bad name to verify";
    if (ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1;
    } else {
      SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(t->ssl, name) == 1;
    }
  }
  if (ok && alpn_len) {
    what = "cannot offer ALPN";
    ok = SSL_set_alpn_protos(t->ssl, alpn, (unsigned)alpn_len) == 0;   /* 0 is success here */
  }
  if (ok && key) {
    what = "out of memory";
    ok = (t->key = session_key(key, o, name)) != NULL;
    SSL_SESSION *cached = ok ? cache_get(s, t->key) : NULL;
    if (cached) {
      what = "cannot offer the cached session";
      ok = SSL_set_session(t->ssl, cached) == 1;
      t->offered = 1;
    }
  }
  if (!ok) {
    unsigned long e = ERR_peek_error();
    snprintf(err, errlen, "TLS: %s%s%s", what, e ? ": " : "", e ? ssl_reason(e) : "");
    ERR_clear_error();
    lc_tls_free(t);
    return NULL;
  }
  return t;
}


void lc_tls_free(lc_tls *t) {
  if (!t) return;
  /* A session that completed and never failed stays resumable though no close_notify was sent
   * (an idle pooled connection closed at its idle time, close(true)): SSL_free would otherwise
   * mark it not resumable in the cache (TLS 1.1 and later allow resuming it, RFC 4346 7.2.1). */
  if (t->ssl && t->done && !t->failed) SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(t->ssl);                 /* and the BIO, which points to t: before t's buffers go */
  lc_buf_free(&t->in);
  lc_buf_free(&t->out);
  free(t->key);
  free(t->name);
  free(t->err);
  if (t->srv) server_unref(t->srv);
  store_unref(t->store);
  free(t);
}


int lc_tls_feed(lc_tls *t, const char *p, size_t n) {
  if (t->in_off > 0) {              /* what OpenSSL read is dropped before the buffer grows */
    lc_buf_consume(&t->in, t->in_off);
    t->in_off = 0;
  }
  return lc_buf_append(&t->in, p, n);
}


void lc_tls_feed_eof(lc_tls *t) {
  t->eof = 1;
}


int lc_tls_handshake(lc_tls *t) {
  if (t->failed) return t->failed;
  if (t->done) return 0;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) {
    t->done = 1;
    t->resumed = SSL_session_reused(t->ssl) == 1;
    return 0;
  }
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ && !t->oom) return LC_TLS_WANT_READ;
  return fail(t, e);
}


int lc_tls_done(const lc_tls *t) {
  return t->done && !t->failed;
}


int lc_tls_read(lc_tls *t, char *buf, size_t cap, size_t *n) {
  *n = 0;
  if (t->failed) return t->failed;
  if (!t->done) return UV_ENOTCONN;
  if (cap == 0) return UV_EINVAL;
  ERR_clear_error();
  if (SSL_read_ex(t->ssl, buf, cap, n) == 1) return 0;
  int e = SSL_get_error(t->ssl, 0);
  if (e == SSL_ERROR_WANT_READ && !t->oom) return LC_TLS_WANT_READ;
  if (e == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return UV_EOF;
  }
  return fail(t, e);
}


int lc_tls_write(lc_tls *t, const char *p, size_t n) {
  if (t->failed) return t->failed;
  if (!t->done || t->shut) return UV_ENOTCONN;
  while (n > 0) {
    size_t put = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, p, n, &put) != 1) return fail(t, SSL_get_error(t->ssl, 0));
    p += put;
    n -= put;
  }
  return 0;
}


int lc_tls_shutdown(lc_tls *t) {
  if (t->shut || t->failed || !t->done) {
    t->shut = 1;
    return 0;
  }
  t->shut = 1;
  ERR_clear_error();
  int r = SSL_shutdown(t->ssl);     /* 0: close_notify queued, the peer's not seen; 1: both */
  if (r < 0) return fail(t, SSL_get_error(t->ssl, r));
  return 0;
}


size_t lc_tls_out(lc_tls *t, const char **p) {
  *p = t->outp->data;
  return t->outp->len;
}


void lc_tls_out_consume(lc_tls *t, size_t n) {
  if (n == t->outp->len) t->outp->len = 0;   /* the usual case: all of it, no move */
  else lc_buf_consume(t->outp, n);
  if (t->outp->len == 0 && t->outp != &t->out && t->outp->cap > TLS_SOUT_KEEP) lc_buf_free(t->outp);
}


void lc_tls_trim(lc_tls *t) {
  if (t->out.len == 0) lc_buf_free(&t->out);
  if (t->in.len == t->in_off) {
    lc_buf_free(&t->in);
    t->in_off = 0;
  }
}


const char *lc_tls_error(const lc_tls *t) {
  if (t->err) return t->err;
  return t->failed ? "TLS: out of memory" : "";   /* failed, and its message could not be kept */
}


int lc_tls_resumed(const lc_tls *t) {
  return t->resumed;
}


const char *lc_tls_protocol(const lc_tls *t) {
  return t->done ? SSL_get_version(t->ssl) : NULL;
}


const char *lc_tls_cipher(const lc_tls *t) {
  const SSL_CIPHER *c = t->done ? SSL_get_current_cipher(t->ssl) : NULL;
  return c ? SSL_CIPHER_get_name(c) : NULL;
}


const char *lc_tls_server_name(const lc_tls *t) {
  if (t->srv) return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
  return t->sni;
}


const char *lc_tls_alpn(const lc_tls *t, size_t *len) {
  const unsigned char *p = NULL;
  unsigned l = 0;
  SSL_get0_alpn_selected(t->ssl, &p, &l);
  *len = l;
  return l ? (const char *)p : NULL;
}


/* ---- input lent by a server's connection (no copy unless a record is cut) ---- */

int lc_tls_feed_lend(lc_tls *t, const char *p, size_t n) {
  if (t->bor_len > 0 && lc_tls_feed_keep(t) != 0) return UV_ENOMEM;
  if (t->in.len > t->in_off) return lc_tls_feed(t, p, n);   /* after what waits */
  t->bor = p;
  t->bor_len = n;
  return 0;
}


int lc_tls_feed_keep(lc_tls *t) {
  if (t->bor_len == 0) {
    if (t->in.len == t->in_off) lc_tls_trim(t);
    return 0;
  }
  size_t n = t->bor_len;
  t->bor_len = 0;
  return lc_tls_feed(t, t->bor, n);
}


/* ---- the server side: certificates by SNI, ALPN http/1.1 ---- */

/* TLS 1.2's suites: forward secret (ECDHE) and AEAD only (Mozilla's "intermediate" without DHE);
 * TLS 1.3's are OpenSSL's defaults (all AEAD) */
#define SERVER_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

typedef struct server_cert {
  char *name;                     /* the SNI it answers (lower case); NULL: the default's own */
  SSL_CTX *ctx;
} server_cert;

struct lc_tls_server {
  size_t refs;                    /* the owner's + one per live session */
  lc_tls_store *store;            /* one reference */
  server_cert *certs;             /* certs[0] is the default */
  size_t n;
  int alpn_http;
};


static void server_unref(lc_tls_server *srv) {
  if (--srv->refs > 0) return;
  for (size_t i = 0; i < srv->n; i++) {
    SSL_CTX_free(srv->certs[i].ctx);
    free(srv->certs[i].name);
  }
  free(srv->certs);
  store_unref(srv->store);
  free(srv);
}


void lc_tls_server_ref(lc_tls_server *srv) {
  srv->refs++;
}


void lc_tls_server_free(lc_tls_server *srv) {
  if (srv) server_unref(srv);
}


/* SNI: the context of the certificate for that name (exact, case-insensitive), else the default */
static int on_servername(SSL *ssl, int *alert, void *arg) {
  (void)alert;
  lc_tls_server *srv = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_OK;
  for (size_t i = 1; i < srv->n; i++) {
    if (srv->certs[i].name && strcasecmp(srv->certs[i].name, name) == 0) {
      if (srv->certs[i].ctx != srv->certs[0].ctx && !SSL_set_SSL_CTX(ssl, srv->certs[i].ctx))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK;
}


/* ALPN: http/1.1 when the client offers it; a client that offers only other protocols (h2)
 * fails with no_application_protocol (RFC 7301 3.2, as nginx does) rather than speak what it
 * did not ask for */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned inlen, void *arg) {
  (void)ssl;
  (void)arg;
  static const unsigned char http11[] = "\x08http/1.1";
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, http11, sizeof http11 - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}


/* the message of a file that did not load: the system's reason when it cannot be read */
static void load_error(char *err, size_t errlen, const char *file, const char *what) {
  unsigned long e = ERR_peek_last_error();
  if (access(file, R_OK) != 0)
    snprintf(err, errlen, "tls: cannot load %s: %s", file, strerror(errno));
  else
    snprintf(err, errlen, "tls: cannot load %s: %s (%s)", file, what, ssl_reason(e));
  ERR_clear_error();
}


/* the passphrase callback of a server's context: a server has nobody to ask (OpenSSL's default
 * prompts on the terminal and waits, a start or a reload hung on it), so an encrypted key does
 * not load; *asked (the context's user data while its key loads) says it was encrypted */
static int no_passphrase(char *buf, int size, int rwflag, void *asked) {
  (void)buf;
  (void)size;
  (void)rwflag;
  if (asked) *(int *)asked = 1;
  return -1;
}


static SSL_CTX *server_ctx(lc_tls_server *srv, lc_tls_tickets *tickets, const lc_tls_cert *c, char *err,
                           size_t errlen) {
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  static const unsigned char sid[] = "luacluster";
  if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, SERVER_CIPHERS) != 1 ||
      SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1) != 1 ||
      (tickets && lc_tls_tickets_use(tickets, ctx) != 0)) {
    snprintf(err, errlen, "tls: cannot make a TLS context: %s", ssl_reason(ERR_peek_error()));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* tickets do the resumption (tls_tickets.c): no stateful cache of sessions per worker */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (srv->alpn_http) SSL_CTX_set_alpn_select_cb(ctx, on_alpn, srv);
  int asked = 0;
  SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
  int cert_ok = SSL_CTX_use_certificate_chain_file(ctx, c->cert) == 1;
  int key_ok = cert_ok && SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) == 1;
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (!cert_ok) {
    load_error(err, errlen, c->cert, "not a PEM certificate");
  } else if (!key_ok && asked) {
    snprintf(err, errlen, "tls: cannot load %s: the key is encrypted (a server cannot ask for its passphrase: "
             "decrypt it once with openssl pkey -in KEY -out PLAIN_KEY)", c->key);
    ERR_clear_error();
  } else if (!key_ok) {
    unsigned long e = ERR_peek_last_error();
    if (access(c->key, R_OK) == 0 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      snprintf(err, errlen, "tls: cannot load %s: key does not match certificate %s", c->key, c->cert), ERR_clear_error();
    else
      load_error(err, errlen, c->key, "not a PEM private key");
  } else if (SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(err, errlen, "tls: cannot load %s: key does not match certificate %s", c->key, c->cert);
    ERR_clear_error();
  } else {
    return ctx;
  }
  SSL_CTX_free(ctx);
  return NULL;
}


lc_tls_server *lc_tls_server_new(lc_tls_store *s, lc_tls_tickets *tickets, const lc_tls_cert *certs, size_t n,
                                 int alpn_http, char *err, size_t errlen) {
  lc_tls_server *srv = calloc(1, sizeof *srv);
  if (!srv || n == 0 || !(srv->certs = calloc(n, sizeof *srv->certs))) {
    free(srv);
    snprintf(err, errlen, n == 0 ? "tls: no certificate" : "tls: out of memory");
    return NULL;
  }
  srv->refs = 1;
  srv->store = s;
  s->refs++;
  srv->alpn_http = alpn_http;
  for (size_t i = 0; i < n; i++) {
    if (certs[i].server_name && !(srv->certs[i].name = strdup(certs[i].server_name))) {
      snprintf(err, errlen, "tls: out of memory");
      server_unref(srv);
      return NULL;
    }
    srv->n = i + 1;
    if (!(srv->certs[i].ctx = server_ctx(srv, tickets, &certs[i], err, errlen))) {
      server_unref(srv);
      return NULL;
    }
  }
  SSL_CTX_set_tlsext_servername_callback(srv->certs[0].ctx, on_servername);
  SSL_CTX_set_tlsext_servername_arg(srv->certs[0].ctx, srv);
  return srv;
}


lc_tls *lc_tls_server_session(lc_tls_server *srv) {
  lc_tls *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->store = srv->store;
  srv->store->refs++;
  t->srv = srv;
  srv->refs++;
  t->outp = &srv->store->sout;
  BIO *b = NULL;
  if (!(t->ssl = SSL_new(srv->certs[0].ctx)) || !(b = BIO_new(srv->store->bio_method))) {
    BIO_free(b);
    ERR_clear_error();
    lc_tls_free(t);
    return NULL;
  }
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b);
  SSL_set_app_data(t->ssl, t);
  SSL_set_accept_state(t->ssl);
  return t;
}


int lc_tls_pending(const lc_tls *t) {
  return t->bor_len > 0 || t->in.len > t->in_off || SSL_has_pending(t->ssl);
}


int lc_tls_is_server(const lc_tls *t) {
  return t->srv != NULL;
}
