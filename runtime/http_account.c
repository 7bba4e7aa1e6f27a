/* http_account.c: what the process counts of each response (its status class, its duration
 * bucket, its body bytes: core.http_stats) and the access log line (access_log.c), when the
 * server has a log. Plain C per response: no Lua, no allocation. Owns nothing: the counters
 * are the runtime's (lc_rt.http), the log is the Lua object's. */
#include "http_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* request duration buckets (seconds) of the metrics' histogram: lc_http_stats.dur */
const double lc_http_bounds[LC_HTTP_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* the value of the request's header `name` (lower case), or NULL */
static const char *field(http_conn *c, const char *name, size_t nlen, size_t *vlen) {
  const char *head = lc_http_head_ptr(c);
  for (int i = 0; i < c->req->h.nfields; i++) {
    lc_http_field *f = &c->req->h.fields[i];
    if (f->name_len == nlen && strncasecmp(head + f->name, name, nlen) == 0) {
      *vlen = f->value_len;
      return head + f->value;
    }
  }
  *vlen = 0;
  return NULL;
}

int lc_http_peer(http_conn *c, char *ip, size_t iplen, int *port) {
  if (c->peer_known == 0) {
    http_addr a;
    int len = sizeof a;
    int r = c->closed ? UV_ENOTCONN : uv_tcp_getpeername(c->tcp, &a.sa, &len);
    if (r == 0 && (a.sa.sa_family == AF_INET || a.sa.sa_family == AF_INET6)) {
      if ((c->peer = malloc(sizeof *c->peer)) == NULL) return UV_ENOMEM;   /* asked again later */
      *c->peer = a;
      c->peer_known = 1;
    } else {
      c->peer_known = -1;
    }
  }
  if (c->peer_known < 0) return UV_ENOTCONN;
  http_addr *a = c->peer;
  int v6 = a->sa.sa_family == AF_INET6;
  if (ip != NULL) {
    int r = v6 ? uv_ip6_name(&a->in6, ip, iplen) : uv_ip4_name(&a->in4, ip, iplen);
    if (r != 0) return r;
  }
  if (port != NULL) *port = ntohs(v6 ? a->in6.sin6_port : a->in4.sin_port);
  return 0;
}

void lc_http_account(http_conn *c, int status, double body_bytes, int has_head) {
  lc_http_stats *st = &c->srv->base.rt->http;
  uint64_t now = uv_hrtime(), start = c->req ? c->req->start : 0;
  double secs = start && now > start ? (double)(now - start) / 1e9 : 0;
  int cls = status / 100;
  st->status[cls >= 1 && cls <= 5 ? cls : 0]++;
  int b = 0;
  while (b < LC_HTTP_BUCKETS && secs > lc_http_bounds[b]) b++;
  st->dur[b]++;
  st->dur_sum += secs;
  st->body_bytes += body_bytes;
  if (c->srv->alog == NULL) return;
  lc_alog_entry e;
  memset(&e, 0, sizeof e);
  char peer[64] = "";
  if (lc_http_peer(c, peer, sizeof peer, NULL) != 0) peer[0] = '\0';
  e.peer = peer;
  if (has_head && c->req) {
    const char *head = lc_http_head_ptr(c);
    lc_http_head *h = &c->req->h;
    e.method = head + h->method;
    e.method_len = h->method_len;
    e.target = head + h->target;
    e.target_len = h->target_len;
    e.minor = h->minor;
    e.referer = field(c, "referer", 7, &e.referer_len);
    e.agent = field(c, "user-agent", 10, &e.agent_len);
  }
  e.status = status;
  e.body_bytes = body_bytes;
  e.seconds = secs;
  lc_alog_request(c->srv->alog, &e);
}
