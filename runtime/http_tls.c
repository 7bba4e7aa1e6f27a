/* http_tls.c: HTTPS under an HTTP connection (http_conn.c), as a source and sink of bytes.
 * Ciphertext is read into the server's shared ciphertext buffer (s->tbuf) and lent to the
 * session (tls.c: no copy, unless a record is cut by the read); while the handshake runs, its
 * flights go out; once done, plaintext is decrypted straight into the buffer http_conn.c's own
 * allocator gives, and handed to its read callback as a plain read would be: parsing, limits,
 * pipelining, keep-alive, WebSocket, backpressure and lingering close do not know about TLS.
 * All the plaintext of one read is decrypted at once (at most one read's worth, 64 KiB, even
 * while reading is paused: the bound a plain read has too). The HTTP code's writes are
 * encrypted as they are made (a head and its body in one record when they fit) and the
 * ciphertext goes into the connection's write queue (write_queue.c), in the same order.
 * The handshake is bounded by the connection's header deadline (header_timeout, armed at
 * accept). A failed handshake costs its connection only: counted in the server's stats
 * (tls_handshake_failures), not logged per connection. Owns nothing of its own: the session is
 * the connection's (freed in free_conn), the buffer the server's (freed with it). */
#include "http_int.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>

#define SEAL_MAX 16384   /* a head and body up to a record's payload are sealed as one record */
#define SLICE ((size_t)64 << 10)   /* a big write is encrypted and queued this much at a time, so
                                    * the session's output never holds more (not a copy of it all) */

int lc_http_tls_start(http_conn *c) {
  c->tls = lc_tls_server_session(c->srv->tls);
  return c->tls ? 0 : UV_ENOMEM;
}

/* the session's output into the write queue: 0 or a UV_E* code (the connection is closed) */
static int push_out(http_conn *c) {
  const char *p;
  size_t n = lc_tls_out(c->tls, &p);
  if (n == 0) return 0;
  int r = lc_http_conn_queue(c, p, n, NULL, 0);
  lc_tls_out_consume(c->tls, n);
  return r;
}

void lc_http_tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  http_conn *c = h->data;
  http_server *s = c->srv;
  (void)suggested;
  if (s->tbuf == NULL) s->tbuf = malloc(LC_HTTP_READ_BUF);
  *buf = s->tbuf ? uv_buf_init(s->tbuf, LC_HTTP_READ_BUF) : uv_buf_init(NULL, 0);
}

/* a failed handshake: its alert (if any) is tried once, then the connection closes */
static void handshake_failed(http_conn *c) {
  c->srv->tls_failures++;
  if (push_out(c) == 0) lc_http_conn_flush(c);
  lc_http_conn_close(c);
}

/* the plaintext the session holds, into the connection as plain reads: 0, or the read's end
 * (UV_EOF: close_notify; another code: the stream failed) */
static int drain(http_conn *c, uv_stream_t *st) {
  while (!c->closed && c->state != LC_HTTP_S_CLOSING) {
    uv_buf_t pb;
    lc_http_conn_alloc_cb((uv_handle_t *)st, LC_HTTP_READ_CHUNK, &pb);
    if (pb.base == NULL || pb.len == 0) return UV_ENOBUFS;
    size_t n = 0;
    int r = lc_tls_read(c->tls, pb.base, pb.len, &n);
    if (push_out(c) != 0) return UV_EPIPE;   /* (a TLS 1.3 key update's answer) */
    /* a read of n bytes, or of none: http_conn.c gives back the shared buffer either way */
    lc_http_conn_read_cb(st, r == 0 ? (ssize_t)n : 0, &pb);
    if (r == LC_TLS_WANT_READ) return 0;
    if (r != 0) return r;
    if (!lc_tls_pending(c->tls)) return 0;   /* all read: no call that only says WANT_READ */
  }
  return 0;
}

void lc_http_tls_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  http_conn *c = st->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (!lc_tls_done(c->tls)) { handshake_failed(c); return; }
    /* the peer's FIN, with or without close_notify: HTTP's own framing says whether what came
     * was whole, so both end the input as a plain connection's FIN does */
    lc_http_conn_read_cb(st, nread, buf);
    return;
  }
  if (lc_tls_feed_lend(c->tls, buf->base, (size_t)nread) != 0) { lc_http_conn_close(c); return; }
  int r = 0;
  if (!lc_tls_done(c->tls)) {
    int hs = lc_tls_handshake(c->tls);
    if (hs < 0) { handshake_failed(c); return; }
    if (push_out(c) != 0) return;
    lc_http_conn_flush(c);   /* the server's flight leaves now, not at the loop's turn */
    if (c->closed) return;
  }
  if (lc_tls_done(c->tls)) r = drain(c, st);
  if (!c->closed && lc_tls_feed_keep(c->tls) != 0) { lc_http_conn_close(c); return; }
  if (c->closed || r == 0) return;
  /* close_notify (UV_EOF) ends the input as a FIN does; a broken record closes */
  lc_http_conn_read_cb(st, r == UV_EOF ? UV_EOF : UV_ECONNRESET, buf);
}

/* p (n bytes) encrypted and queued a slice at a time: 0, or a UV_E* code (output left dropped) */
static int seal(http_conn *c, const char *p, size_t n) {
  while (n > 0) {
    size_t k = n < SLICE ? n : SLICE;
    int r = lc_tls_write(c->tls, p, k);
    if (r != 0) {
      lc_tls_out_consume(c->tls, lc_tls_out(c->tls, &(const char *){NULL}));
      return r;
    }
    if ((r = push_out(c)) != 0) return r;
    p += k;
    n -= k;
  }
  return 0;
}

int lc_http_tls_write(http_conn *c, const char *a, size_t alen, const char *b, size_t blen) {
  int r;
  if (alen > 0 && blen > 0 && alen + blen <= SEAL_MAX) {
    char one[SEAL_MAX];
    memcpy(one, a, alen);
    memcpy(one + alen, b, blen);
    r = seal(c, one, alen + blen);
  } else {
    r = seal(c, a, alen);
    if (r == 0) r = seal(c, b, blen);
  }
  if (r != 0) lc_http_conn_close(c);
  return r;
}

void lc_http_tls_close_notify(http_conn *c) {
  if (!lc_tls_done(c->tls)) return;
  if (lc_tls_shutdown(c->tls) == 0) (void)push_out(c);
  else lc_tls_out_consume(c->tls, lc_tls_out(c->tls, &(const char *){NULL}));
}

/* req.tls's facts: 0 before the handshake's end (a plain connection has none) */
int lc_http_tls_info(http_conn *c, const char **protocol, const char **cipher, const char **sni, int *reused) {
  if (c->tls == NULL || !lc_tls_done(c->tls)) return 0;
  *protocol = lc_tls_protocol(c->tls);
  *cipher = lc_tls_cipher(c->tls);
  *sni = lc_tls_server_name(c->tls);
  *reused = lc_tls_resumed(c->tls);
  return 1;
}
