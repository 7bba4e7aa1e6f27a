/* access_log.h: buffered access logs written off the loop, one per path and Lua state
 * (access_log.c). */
#ifndef LC_ACCESS_LOG_H
#define LC_ACCESS_LOG_H

#include <stddef.h>
#include <lua.h>

typedef struct lc_rt lc_rt;
typedef struct lc_alog lc_alog;

typedef struct lc_alog_entry {
  const char *peer;                      /* remote address, or NULL */
  const char *method; size_t method_len; /* NULL: no request line was read */
  const char *target; size_t target_len;
  int minor, status;
  double body_bytes, seconds;
  const char *referer; size_t referer_len;  /* NULL: none */
  const char *agent; size_t agent_len;
} lc_alog_entry;

lc_alog *lc_alog_check(lua_State *L, int idx);
void lc_alog_request(lc_alog *a, const lc_alog_entry *e);
void lc_alog_flush_all_sync(lc_rt *rt);   /* before exit: what is buffered is written, log lines too */
void lc_open_access_log(lua_State *L);

#endif
