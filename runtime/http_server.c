/* http_server.c: an HTTP server's life apart from its connections' (http_conn.c): it takes
 * accepted sockets (from its listening socket, a dispatch sink or srv:serve) up to its
 * connection limit, keeps the count and the one-line-per-burst warning at the limit, drains
 * (no new connections, idle ones end, a callback once the last is gone), and frees itself.
 * It also keeps what its connections share so that an idle one holds little: the read buffer
 * a connection reads into (http_conn.c keeps only what must stay), the timer of its
 * connections' deadlines, and the requests in flight to reuse.
 * Owns: the http_server struct (made by the Lua binding, http_lua.c), its read buffer, its
 * timer and its free requests, freed here once Lua has closed it and its last connection is
 * gone, never while its drain callback runs. */
#include "http_int.h"
#include "tls.h"

#include <stdlib.h>
#include <string.h>

void lc_http_server_take(void *ctx, uv_tcp_t *tcp) {
  http_server *s = ctx;
  if (s->closed || s->draining || (s->max_conns > 0 && s->nconns >= s->max_conns)) {
    if (s->max_conns > 0 && s->nconns >= s->max_conns && !s->closed && !s->draining) {
      /* one line per burst, not one per connection: a flood must not flood the log too */
      if (!s->at_limit) {
        s->at_limit = 1;
        s->refused = 0;
        lc_log(s->base.rt, "warn: connection limit reached: %d connections open (max_connections %d); "
               "new connections are closed until some end", s->nconns, s->max_conns);
      }
      s->refused++;
    }
    uv_close((uv_handle_t *)tcp, lc_free_handle_cb);
    return;
  }
  if (s->timer == NULL) {
    uv_timer_t *t = malloc(sizeof *t);
    if (t == NULL || uv_timer_init(tcp->loop, t) != 0) {
      free(t);
      uv_close((uv_handle_t *)tcp, lc_free_handle_cb);
      return;
    }
    t->data = s;
    s->timer = t;
  }
  lc_http_conn_new(s, tcp);
}

http_req *lc_http_server_req(http_server *s) {
  http_req *r = s->free_reqs;
  if (r != NULL) {
    s->free_reqs = r->next_free;
    s->nfree_reqs--;
  } else if ((r = malloc(sizeof *r)) == NULL) {
    return NULL;
  }
  /* zeroed up to the head's field array: lc_http_head_parse fills (and counts) those it uses */
  memset(r, 0, offsetof(http_req, h));
  lc_http_head_init(&r->h);
  return r;
}

void lc_http_server_req_done(http_server *s, http_req *r) {
  free(r->body);
  if (s->nfree_reqs >= LC_HTTP_FREE_REQS || s->closed) { free(r); return; }
  r->next_free = s->free_reqs;
  s->free_reqs = r;
  s->nfree_reqs++;
}

void lc_http_server_conn_gone(http_server *s) {
  s->nconns--;
  s->closed_since_report++;
  /* a burst at the connection limit ends when a tenth of the room is free again */
  if (s->at_limit && s->nconns <= s->max_conns - (s->max_conns + 9) / 10) {
    s->at_limit = 0;
    lc_log(s->base.rt, "info: below the connection limit again (%d of max_connections %d open); "
           "%.0f connections were refused", s->nconns, s->max_conns, s->refused);
  }
  s->base.rt->http.conns_open--;
  if (s->draining && s->nconns == 0 && s->drain_ref != LUA_NOREF) {
    int ref = s->drain_ref;
    s->drain_ref = LUA_NOREF;
    /* http.lua's server:close() closes the server from this callback: it is freed below, once
     * the callback has returned, not inside it (a use after free that ASan found) */
    s->in_drain_cb = 1;
    lc_http_ref_run(s->base.rt, ref, 1);
    s->in_drain_cb = 0;
  }
  lc_http_server_maybe_free(s);
}

/* Idle keep-alive connections close when their client next sends a request (answered with
 * Connection: close) or their keep-alive timer ends; connections that have not started a
 * request get the shorter of their timers. */
void lc_http_server_drain(http_server *s) {
  s->draining = 1;
  http_conn *next;
  for (http_conn *c = s->dl[LC_HTTP_DL_HEADER].head; c; c = next) {
    next = c->dl_next;   /* (c moves to another list) */
    if (c->state == LC_HTTP_S_HEAD && !c->got_bytes && c->timer_mode == LC_HTTP_T_HEADER)
      lc_http_conn_deadline(c, LC_HTTP_T_KEEPALIVE, LC_HTTP_DL_KEEPALIVE);
  }
}

void lc_http_server_maybe_free(http_server *s) {
  if (s->closed && s->nconns == 0 && s->base.self_ref == LUA_NOREF && !s->in_drain_cb) {
    lc_http_ref_run(s->base.rt, s->drain_ref, 0);
    if (s->timer) uv_close((uv_handle_t *)s->timer, lc_free_handle_cb);
    while (s->free_reqs) {
      http_req *r = s->free_reqs;
      s->free_reqs = r->next_free;
      free(r);
    }
    free(s->rbuf);
    free(s->tbuf);
    lc_tls_server_free(s->tls);   /* sessions still open hold their own reference */
    free(s);
  }
}
