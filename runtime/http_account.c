/* http_account.c: what the process counts of each response (its status class, its duration
 * bucket, its body bytes: core.http_stats) and the access log line (access_log.c), when the
 * server has a log. Plain C per response: no Lua, no allocation. Owns nothing: the counters
 * are the runtime's (lc_rt.http), the log is the Lua object's. */
#include "http_int.h"

#include <string.h>
#include <strings.h>

/* request duration buckets (seconds) of the metrics' histogram: lc_http_stats.dur */
const double lc_http_bounds[LC_HTTP_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* the value of the request's header `name` (lower case), or NULL */
static const char *field(http_conn *c, const char *name, size_t nlen, size_t *vlen) {
  for (int i = 0; i < c->h.nfields; i++) {
    lc_http_field *f = &c->h.fields[i];
    if (f->name_len == nlen && strncasecmp(c->head + f->name, name, nlen) == 0) {
      *vlen = f->value_len;
      return c->head + f->value;
    }
  }
  *vlen = 0;
  return NULL;
}

void lc_http_fill_peer(http_conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
  else if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
}

void lc_http_account(http_conn *c, int status, double body_bytes, int has_head) {
  lc_http_stats *st = &c->rt->http;
  uint64_t now = uv_hrtime();
  double secs = c->req_start && now > c->req_start ? (double)(now - c->req_start) / 1e9 : 0;
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
  if (c->peer[0] == '\0' && !c->closed) lc_http_fill_peer(c);
  e.peer = c->peer;
  if (has_head) {
    e.method = c->head + c->h.method;
    e.method_len = c->h.method_len;
    e.target = c->head + c->h.target;
    e.target_len = c->h.target_len;
    e.minor = c->h.minor;
    e.referer = field(c, "referer", 7, &e.referer_len);
    e.agent = field(c, "user-agent", 10, &e.agent_len);
  }
  e.status = status;
  e.body_bytes = body_bytes;
  e.seconds = secs;
  lc_alog_request(c->srv->alog, &e);
}

