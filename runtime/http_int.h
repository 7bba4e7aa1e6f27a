/* http_int.h: what the files of the HTTP server share, private to them (the runtime sees
 * lc_open_http, bindings.h). One step of a request's way per file, as nginx's src/http:
 *   http_head.c      the request head: strict parse in one pass, in place (offsets)
 *   http_body.c      the request body's framing (Content-Length, chunked)
 *   http_server.c    a server: accepting (its connection limit), draining, freeing, and what
 *                    its connections share (read buffer, deadline timer, requests to reuse)
 *   http_conn.c      a connection: read buffer, parse loop, deadlines, keep-alive, backpressure,
 *                    the write path, lingering close
 *   http_response.c  a response: status line, Date, the handler's headers checked, the head
 *                    built, chunk framing, the runtime's own error answers
 *   http_account.c   the counters and the access log line of each response
 *   http_lua.c       the Lua binding: the server and connection objects, and every call
 *                    from the loop into Lua (protected, lua_cpcall)
 * Functions shared between these files are lc_http_*; each file's own are static. */
#ifndef LC_HTTP_INT_H
#define LC_HTTP_INT_H

#include "lc.h"
#include "access_log.h"
#include "http_head.h"
#include "http_body.h"
#include "write_queue.h"

#define LC_HTTP_MT_SERVER "luacluster.http_server"
#define LC_HTTP_READ_CHUNK 16384              /* room for a read into a connection's own buffer */
#define LC_HTTP_READ_BUF 65536                /* the server's shared read buffer */
#define LC_HTTP_FREE_REQS 64
#define LC_HTTP_MAX_BUFFERED_INPUT 65536      /* unparsed bytes kept while a handler runs */
#define LC_HTTP_MAX_QUEUED_OUTPUT (1 << 20)   /* stop reading from a client that does not read */

/* a connection's state: reading a head, reading a body, a handler has the request, ending */
enum { LC_HTTP_S_HEAD, LC_HTTP_S_BODY, LC_HTTP_S_HANDLER, LC_HTTP_S_CLOSING };
/* what the connection's deadline is for (at most 8 values: http_conn's timer_mode has 3 bits) */
enum { LC_HTTP_T_NONE, LC_HTTP_T_HEADER, LC_HTTP_T_BODY, LC_HTTP_T_KEEPALIVE, LC_HTTP_T_LINGER, LC_HTTP_T_SEND,
       LC_HTTP_T_WS,     /* a WebSocket's own: idle, ping, close handshake (ws_conn.c decides) */
       LC_HTTP_T_COUNT };
/* which timeout it is: one list of connections per timeout, in deadline order (http_conn.c);
 * LC_HTTP_DL_WS's deadlines differ per WebSocket (its options): it is kept in order by insertion */
enum { LC_HTTP_DL_HEADER, LC_HTTP_DL_KEEPALIVE, LC_HTTP_DL_SEND, LC_HTTP_DL_LINGER, LC_HTTP_DL_WS, LC_HTTP_DL_COUNT };
#define LC_HTTP_LINGER_MS 2000

typedef struct http_server http_server;
typedef struct lc_ws_conn lc_ws_conn;   /* ws_conn.c: a request that became a WebSocket */

/* A request in flight, from its head's first byte to the end of its answer (then it goes back
 * to its server's free list): an idle connection holds none of this. */
typedef struct http_req {
  struct http_req *next_free;
  size_t head_off;            /* where its head starts in the connection's input */
  size_t head_len;            /* the head's length once complete (then it stays put), else 0 */
  lc_http_body framer;        /* the body's framing (http_body.c) */
  char *body;                 /* the body, copied once out of the input */
  size_t body_len, body_cap;
  uint64_t start;             /* uv_hrtime() at its first byte (metrics, access log) */
  int resp_started, resp_chunked, resp_close, resp_raw, resp_status;
  long long resp_cl;          /* the Content-Length a streamed body must reach, or -1 */
  unsigned long long resp_sent; /* body bytes of a streamed response so far */
  double resp_body;           /* body bytes of the response (access log) */
  lc_ws_conn *ws;             /* after a 101 to a WebSocket upgrade (ws_conn.c), else NULL */
  lc_http_head h;             /* last: its fields[] array (1.6 KB) is never zeroed */
} http_req;

typedef union http_addr { struct sockaddr sa; struct sockaddr_in in4; struct sockaddr_in6 in6; } http_addr;

/* A connection. Lua names it by its address (a light userdata, no allocation: an idle
 * connection holds no Lua memory) and a request by seq; both are checked on every call from
 * Lua. So that an address Lua still holds never dangles, the memory of a connection Lua was
 * given (lua_named: it had a request) is never given back while its Lua state lives: a closed
 * one waits in the runtime's spares (rt->http_spares, linked through dl_next) and is reused
 * for the next connection, as nginx keeps its connection array; a connection that never
 * reached Lua is freed. So a worker keeps the memory of the most connections it ever had
 * answering at once (144 bytes each), bounded by max_connections and its descriptor limit, and
 * a flood of connections that send nothing leaves nothing behind. seq numbers are unique in
 * the state and only grow, so a seq of an earlier connection in the same memory is below
 * first_seq: a late call never reaches the wrong connection. */
typedef struct http_conn {
  uv_tcp_t *tcp;
  http_server *srv;
  http_req *req;              /* the request being read or answered; NULL between requests */
  /* the input: while a read is handled, the server's shared buffer; between reads, a buffer
   * of the connection's own with what must stay (a request's head, unparsed bytes), or NULL */
  char *in;
  size_t in_len, in_off, in_cap;
  lc_wq *wq;                  /* the output (write_queue.c); NULL when everything is written */
  uint64_t deadline;          /* loop time at which timer_mode's timeout is due */
  struct http_conn *dl_prev, *dl_next;   /* its place in its server's list for dl_list */
  size_t stall_mark;          /* unsent bytes when the keep-alive timer last fired (progress check) */
  uint64_t seq;               /* the request being read or answered (rt->http_seq) */
  uint64_t first_seq;         /* the seq of its first request: its own seqs are >= this */
  int drain_ref;              /* a handler waiting in res:write for the queue to drain */
  /* bit fields: an idle connection's size decides how many a worker holds (136 bytes with tls, one
   * 144-byte malloc chunk; twelve bytes of flags made it a 160-byte one) */
  unsigned state : 2;         /* LC_HTTP_S_* */
  unsigned timer_mode : 3;    /* LC_HTTP_T_* */
  unsigned dl_list : 3;       /* LC_HTTP_DL_* + 1, or 0 */
  unsigned ending : 2;        /* 0, 1 ending (output to finish), 2 shutting down */
  unsigned keepalive : 1, upgrade : 1, in_parse : 1, peer_closed : 1, got_bytes : 1, closed : 1;
  /* reading stops while either holds: in_paused, too much input buffered behind a running
   * handler; out_paused, too much output queued for a client that does not read */
  unsigned in_paused : 1, out_paused : 1;
  unsigned lua_named : 1;     /* Lua was given its address: its memory goes to the spares */
  signed peer_known : 2;      /* peer: 0 not looked up yet, 1 known, -1 unknown */
  http_addr *peer;            /* the client's address, looked up once (when asked for) */
  struct lc_tls *tls;         /* an HTTPS connection's TLS session (http_tls.c), else NULL */
} http_conn;

struct http_server {
  lc_handle_base base;          /* cb: request callback */
  size_t max_header, max_body;
  uint64_t header_timeout, keepalive_timeout;
  uint64_t send_timeout;        /* a client that takes no byte of its answers this long is closed */
  int max_conns;
  int at_limit;                 /* refusing connections: warned once for this burst */
  double refused;               /* connections closed at the limit (this burst, then total) */
  int closed, draining, drain_ref;
  int in_drain_cb;              /* the drain callback runs: it may close (not free) the server */
  int nconns;
  double requests, conns_total, closed_since_report;
  lc_alog *alog;                /* access log (access_log.c), or NULL */
  char *rbuf;                   /* the read buffer its connections share (LC_HTTP_READ_BUF) */
  http_req *free_reqs;          /* requests to reuse, at most LC_HTTP_FREE_REQS */
  int nfree_reqs;
  /* its connections' deadlines: a list per timeout, each in deadline order (a deadline is now
   * plus the list's timeout, so the newest is last), and one timer for the earliest */
  struct { http_conn *head, *tail; } dl[LC_HTTP_DL_COUNT];
  uv_timer_t *timer;
  uint64_t timer_due;           /* loop time at which the armed timer fires */
  int ndl;                      /* connections in the lists */
  struct lc_tls_server *tls;    /* HTTPS: its certificates (tls.c), else NULL */
  char *tbuf;                   /* HTTPS: the ciphertext read buffer its connections share */
  double tls_failures;          /* handshakes that failed (counted, not logged one by one) */
};

/* the bit fields' ranges (http_conn) */
_Static_assert(LC_HTTP_S_CLOSING < 4, "http_conn.state has 2 bits");
_Static_assert(LC_HTTP_T_COUNT <= 8, "http_conn.timer_mode has 3 bits");
_Static_assert(LC_HTTP_DL_COUNT + 1 <= 8, "http_conn.dl_list has 3 bits");

static inline char *lc_http_head_ptr(http_conn *c) { return c->in + c->req->head_off; }

/* ---- http_server.c ---- */
void lc_http_server_take(void *srv, uv_tcp_t *tcp);       /* a sink: an accepted connection */
void lc_http_server_conn_gone(http_server *s);            /* a connection of s was freed */
void lc_http_server_drain(http_server *s);                /* no new connections; idle ones end */
void lc_http_server_maybe_free(http_server *s);
http_req *lc_http_server_req(http_server *s);             /* a request to fill, or NULL */
void lc_http_server_req_done(http_server *s, http_req *r);

/* ---- http_conn.c ---- */
void lc_http_conn_new(http_server *s, uv_tcp_t *tcp);   /* takes tcp: a connection, or closes it */
void lc_http_conn_close(http_conn *c);
void lc_http_conn_end(http_conn *c);          /* closes once everything queued is written */
/* writes a then b (either may be empty): 0, or a negative UV_E* code (the connection is
 * closed, or closing) */
int lc_http_conn_write(http_conn *c, const char *a, size_t alen, const char *b, size_t blen);
void lc_http_conn_finish(http_conn *c);       /* the handler has answered: the next request */
size_t lc_http_conn_queued(http_conn *c);     /* output bytes not written yet */
/* the queued output down to the socket now (a try, then one uv_write for the rest) */
void lc_http_conn_flush(http_conn *c);
void lc_http_conn_deadline(http_conn *c, int mode, int which);   /* which: LC_HTTP_DL_* */
/* a deadline at loop time due (LC_HTTP_DL_WS: due is the WebSocket's own) */
void lc_http_conn_deadline_at(http_conn *c, int mode, int which, uint64_t due);
void lc_http_conn_no_deadline(http_conn *c);
/* a WebSocket's reading: stopped while its Lua side has not taken its messages, then resumed
 * (with what the state allows: the output's pause may still hold) */
void lc_http_conn_pause_input(http_conn *c);
void lc_http_conn_update_pauses(http_conn *c);
void lc_http_server_timer_cb(uv_timer_t *t);                     /* the deadlines that are due */

/* ---- http_tls.c: HTTPS under the connection ---- */
int lc_http_tls_start(http_conn *c);          /* an accepted connection's session: 0 or UV_ENOMEM */
void lc_http_tls_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
void lc_http_tls_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* the HTTP code's writes encrypted into the queue: 0 or a UV_E* code */
int lc_http_tls_write(http_conn *c, const char *a, size_t alen, const char *b, size_t blen);
void lc_http_tls_close_notify(http_conn *c);  /* a graceful end: close_notify before the FIN */
/* req.tls's facts: 1 and the fields, 0 for a plain connection (or before the handshake's end) */
int lc_http_tls_info(http_conn *c, const char **protocol, const char **cipher, const char **sni, int *reused);
/* the plaintext way in, shared with http_conn.c's plain reads */
void lc_http_conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void lc_http_conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
/* appends bytes to the connection's write queue (made when needed): 0, or a UV_E* code */
int lc_http_conn_queue(http_conn *c, const char *a, size_t alen, const char *b, size_t blen);

/* ---- http_response.c ---- */
void lc_http_reject(http_conn *c, int status);   /* a canned answer to bad input, then close */
/* The handler's answers. Each returns 0, or -1 with the handler's mistake pushed on L (a
 * header or a framing that does not match its body: nothing was sent). */
int lc_http_respond(lua_State *L, http_conn *c, int status, int hidx, const char *body, size_t blen);
int lc_http_write_head(lua_State *L, http_conn *c, int status, int hidx);
int lc_http_over_length(lua_State *L, http_conn *c, size_t len);   /* 1: mistake pushed */
int lc_http_write_chunk(http_conn *c, const char *data, size_t len);
/* the end of a streamed body: how many bytes it ended short of its Content-Length (then the
 * connection closes after it), 0 when none */
unsigned long long lc_http_end_body(http_conn *c);

/* ---- http_account.c ---- */
void lc_http_account(http_conn *c, int status, double body_bytes, int has_head);
/* the client's address as text (and its port): 0, or UV_ENOTCONN when it is not known; looked
 * up once (getpeername) and kept */
int lc_http_peer(http_conn *c, char *ip, size_t iplen, int *port);

/* ---- http_lua.c ---- */
void lc_http_call_handler(http_conn *c);      /* the request is complete: Lua answers it */
void lc_http_fire_drain(http_conn *c);        /* a handler waiting for the queue resumes */
void lc_http_ref_run(lc_rt *rt, int ref, int call);   /* drops a reference, calling it first */

/* ---- ws_conn.c ---- */
#define LC_WS_MAX_QUEUED LC_HTTP_MAX_QUEUED_OUTPUT  /* ws:send waits past this (1 MiB) */
#define LC_WS_HARD_QUEUED (8u << 20)  /* a write that cannot wait (fan-out) closes the connection past this */
#define LC_WS_CLOSE_WAIT_MS 5000      /* after our close frame, how long the peer's may take */
#define LC_WS_IDLE_KEEP 4096          /* the most an idle WebSocket's write queue keeps allocated */
void lc_ws_conn_input(http_conn *c);                 /* frames in the input (req->ws set) */
void lc_ws_conn_free(http_conn *c, lc_ws_conn *ws);  /* the connection is freed */
int lc_ws_conn_paused(http_conn *c);                 /* 1: its Lua side has not taken its messages */
void lc_ws_conn_expire(http_conn *c);                /* its LC_HTTP_T_WS deadline has come */
void lc_ws_conn_arm(http_conn *c);                   /* its deadline, after a change of state */
void lc_open_ws(lua_State *L);
http_conn *lc_ws_conn_arg(lua_State *L);            /* core.ws_*(conn, seq, ...)'s connection, or NULL */
struct lc_ws_sub **lc_ws_conn_subs(http_conn *c);   /* its topics' list, or NULL: not open */
/* one message framed once for many sockets (ws_fanout.c), queued as ws:send's are (past
 * LC_WS_MAX_QUEUED the send timeout runs) and counted as a message out: 0, 1 (over max_queued:
 * nothing queued), -1 (not an open WebSocket, or closing) */
int lc_ws_conn_queue_framed(http_conn *c, const char *h, size_t hlen, const char *data, size_t len, size_t max_queued);
void lc_ws_conn_fail(http_conn *c, int code, const char *reason);

#endif
