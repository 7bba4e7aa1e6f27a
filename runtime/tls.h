/* tls.h: a TLS session over memory, on OpenSSL 3 (tls.c).
 * The engine never touches a socket: ciphertext from the peer is fed in (lc_tls_feed), ciphertext
 * to the peer is taken out (lc_tls_out / lc_tls_out_consume), plaintext goes through lc_tls_read
 * and lc_tls_write. Whoever owns the stream moves the bytes (see the comment at the top of tls.c).
 *
 * Three objects, each with one owner:
 * - lc_tls_store: per lc_rt (never shared by two Lua states): the OpenSSL contexts, one per set
 *   of settings, and the cache of client sessions for resumption. Counted: the owner's
 *   lc_tls_store_free and each session's lc_tls_free drop one reference; the last frees it.
 * - lc_tls: one session (one connection), owned by its stream; lc_tls_free is the one place.
 * - the bytes: the session owns its input and output buffers.
 *
 * Return values, as libuv's: 0 or a negative UV_E* code; LC_TLS_WANT_READ (> 0) when more
 * ciphertext from the peer is needed. Every failure of a session leaves a message a person
 * understands in lc_tls_error(t), e.g. "certificate verify failed: hostname mismatch (...)". */
#ifndef LC_TLS_H
#define LC_TLS_H

#include <stddef.h>

#define LC_TLS_WANT_READ 1

typedef struct lc_tls_store lc_tls_store;
typedef struct lc_tls lc_tls;
typedef struct lc_tls_server lc_tls_server;
struct lc_tls_tickets;

/* The settings of a client session (net.connect's opts.tls). Strings are copied. */
typedef struct lc_tls_opts {
  int verify;               /* nonzero (the default): verify the chain and the name */
  const char *ca_file;      /* PEM file of trusted CAs, in place of the system store; NULL */
  const char *server_name;  /* SNI and the name verified; NULL: the host connected to */
  const char *alpn;         /* protocols offered, comma-separated ("h2,http/1.1"); NULL none */
} lc_tls_opts;

void lc_tls_opts_init(lc_tls_opts *o);   /* verify on, everything else NULL */

/* ---- the store (per lc_rt) ---- */
lc_tls_store *lc_tls_store_new(void);    /* NULL when out of memory */
void lc_tls_store_free(lc_tls_store *s); /* the owner lets go; freed with its last session */
size_t lc_tls_store_sessions(const lc_tls_store *s);   /* client sessions cached (for tests) */

/* ---- a client session ----
 * host: the name or IP literal connected to (SNI and the name verified unless o->server_name;
 * an IP literal is sent no SNI and is verified against the certificate's IP addresses).
 * key: the pool key (host:port, or the pool's name); the engine adds the TLS settings to it,
 * so two connections resume each other's sessions only when everything that was verified is
 * the same. NULL: no resumption. On failure returns NULL with a message in err (errlen bytes). */
lc_tls *lc_tls_client_new(lc_tls_store *s, const lc_tls_opts *o, const char *host,
                          const char *key, char *err, size_t errlen);
void lc_tls_free(lc_tls *t);

/* Ciphertext from the peer (copied): 0, or UV_ENOMEM. */
int lc_tls_feed(lc_tls *t, const char *p, size_t n);
/* The peer closed its side (read EOF): what is fed stays readable, then reads fail. */
void lc_tls_feed_eof(lc_tls *t);

/* Drives the handshake with what was fed: 0 done (lc_tls_resumed and the info below are set),
 * LC_TLS_WANT_READ (send lc_tls_out, then feed more), or < 0 failed (lc_tls_error says why;
 * lc_tls_out may hold an alert worth sending before closing). Call again after each feed. */
int lc_tls_handshake(lc_tls *t);
int lc_tls_done(const lc_tls *t);        /* the handshake completed */

/* Plaintext received, up to cap bytes: 0 and *n > 0, LC_TLS_WANT_READ (nothing yet: feed more),
 * UV_EOF (the peer's close_notify), UV_ECONNRESET (the peer closed without close_notify: what
 * came may be truncated), or another < 0 (a protocol error; lc_tls_error). Call until it is
 * not 0: plaintext may be buffered without a new feed (right after the handshake, too). A read
 * may produce output (TLS 1.3 key updates): check lc_tls_out after it. */
int lc_tls_read(lc_tls *t, char *buf, size_t cap, size_t *n);

/* Encrypts n bytes of plaintext into the output: 0, UV_ENOTCONN (no handshake yet, or closed),
 * UV_ENOMEM, or another < 0 (lc_tls_error). */
int lc_tls_write(lc_tls *t, const char *p, size_t n);

/* Queues close_notify in the output (once; nothing after a failure or before the handshake's
 * end): send it, then close. 0, or < 0 (lc_tls_error). */
int lc_tls_shutdown(lc_tls *t);

/* The ciphertext waiting to be sent: *p and the count (0: nothing). Valid until the next call
 * on t; drop what was handed over with lc_tls_out_consume. */
size_t lc_tls_out(lc_tls *t, const char **p);
void lc_tls_out_consume(lc_tls *t, size_t n);
/* Frees the buffers while they are empty (an idle pooled connection holds none). */
void lc_tls_trim(lc_tls *t);

/* ---- what the session is ---- */
const char *lc_tls_error(const lc_tls *t);   /* the last failure's message; "" when none */
int lc_tls_resumed(const lc_tls *t);         /* the handshake resumed a cached session */
const char *lc_tls_protocol(const lc_tls *t);/* "TLSv1.3", "TLSv1.2"; NULL before the handshake */
const char *lc_tls_cipher(const lc_tls *t);  /* OpenSSL's name; NULL before the handshake */
const char *lc_tls_server_name(const lc_tls *t); /* the SNI sent (client); NULL: none */
/* the protocol ALPN agreed on, *len bytes (not NUL-terminated); NULL when none */
const char *lc_tls_alpn(const lc_tls *t, size_t *len);

/* ---- the server side (issue 18) ----
 * lc_tls_server: the certificates of one server (one SSL_CTX each, loaded once), the first the
 * default (no SNI, or a name none has), the others chosen by SNI (exact, case-insensitive).
 * TLS 1.2 and 1.3, ECDHE + AEAD suites; alpn_http: ALPN selects http/1.1 (a client offering
 * only other protocols fails the handshake). tickets: the runtime's key ring (tls_tickets.h), or
 * NULL for OpenSSL's own. Counted: the owner's lc_tls_server_free and each session's end.
 * A server session's output goes to a buffer its store shares among server sessions: take it
 * (lc_tls_out, lc_tls_out_consume) after every call, before any other session is used. */
typedef struct lc_tls_cert {
  const char *server_name;   /* NULL for the default (the first) */
  const char *cert;          /* PEM: the leaf, then its chain */
  const char *key;           /* PEM private key */
} lc_tls_cert;

/* NULL with "tls: cannot load FILE: reason" (or another "tls: ..." message) in err */
lc_tls_server *lc_tls_server_new(lc_tls_store *s, struct lc_tls_tickets *tickets, const lc_tls_cert *certs,
                                 size_t n, int alpn_http, char *err, size_t errlen);
void lc_tls_server_free(lc_tls_server *srv);   /* the owner lets go (or a holder: lc_tls_server_ref) */
void lc_tls_server_ref(lc_tls_server *srv);
lc_tls *lc_tls_server_session(lc_tls_server *srv);   /* an accepted connection's; NULL: no memory */
int lc_tls_is_server(const lc_tls *t);
/* 1 when a read may give more without a new feed (bytes fed and not read, or a record held) */
int lc_tls_pending(const lc_tls *t);
/* Ciphertext lent, not copied: valid only until lc_tls_feed_keep, which copies what the session
 * has not read yet (a record cut by the read) and must be called before the bytes go. */
int lc_tls_feed_lend(lc_tls *t, const char *p, size_t n);
int lc_tls_feed_keep(lc_tls *t);

#endif
