/* log.c: the runtime's log lines. Every line the runtime writes about itself (lc_log in C,
 * luacluster.log in Lua) arrives here as "level: message" and leaves on stderr as one line:
 *   text: "[master] 2024-05-01T12:00:00.123Z warn: message"   (a worker writes no prefix:
 *         its master's forwarder adds "[worker N] " to each of its lines, stream.c)
 *   json: {"time":"2024-05-01T12:00:00.123Z","level":"warn","process":"master","pid":1,"msg":"message"}
 *         a worker writes "process":"worker","worker":N itself; in JSON mode the master's
 *         forwarder passes a worker's lines that start with "{" as they are and wraps any other
 *         line (a script's print) as {"time":..,"process":"worker","worker":N,"stream":"stdout","msg":..}.
 * Owns nothing: lines are built in a buffer on the stack or the heap and written at once. */
#define _GNU_SOURCE
#include "lc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct sbuf { char *p; size_t len, cap; char local[4096]; } sbuf;

static void sb_init(sbuf *b) { b->p = b->local; b->len = 0; b->cap = sizeof b->local; }
static void sb_free(sbuf *b) { if (b->p != b->local) free(b->p); }

static int sb_grow(sbuf *b, size_t extra) {
  if (b->cap - b->len >= extra) return 0;
  size_t cap = b->cap * 2;
  while (cap - b->len < extra) cap *= 2;
  char *q = b->p == b->local ? malloc(cap) : realloc(b->p, cap);
  if (q == NULL) return -1;
  if (b->p == b->local) memcpy(q, b->local, b->len);
  b->p = q;
  b->cap = cap;
  return 0;
}

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (sb_grow(b, n) != 0) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* the length of a valid UTF-8 sequence at s (at most n bytes), or 0 */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned min;
  unsigned cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
  else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
  else return 0;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/* a JSON string (with its quotes); bytes that are not UTF-8 are kept as \u00XX */
static void sb_json(sbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  sb_add(b, "\"", 1);
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned char c = u[i];
    if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; sb_add(b, e, 2); i++; continue; }
    if (c == '\n') { sb_add(b, "\\n", 2); i++; continue; }
    if (c == '\t') { sb_add(b, "\\t", 2); i++; continue; }
    if (c == '\r') { sb_add(b, "\\r", 2); i++; continue; }
    size_t l = c >= 0x20 && c != 0x7f ? utf8_len(u + i, n - i) : 0;
    if (l == 0) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      sb_add(b, e, 6);
      i++;
      continue;
    }
    sb_add(b, s + i, l);
    i += l;
  }
  sb_add(b, "\"", 1);
}

/* "2024-05-01T12:00:00.123Z" */
static void sb_time(sbuf *b) {
  struct timespec ts;
  struct tm tm;
  char t[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(t + n, sizeof t - n, ".%03ldZ", ts.tv_nsec / 1000000);
  sb_add(b, t, n);
}

static const char *LEVELS[] = {"debug", "info", "warn", "error", NULL};

/* splits "level: message"; a message without a known level is "info" */
static const char *split_level(const char **msg, size_t *len) {
  for (int i = 0; LEVELS[i]; i++) {
    size_t l = strlen(LEVELS[i]);
    if (*len >= l + 2 && memcmp(*msg, LEVELS[i], l) == 0 && (*msg)[l] == ':' && (*msg)[l + 1] == ' ') {
      *msg += l + 2;
      *len -= l + 2;
      return LEVELS[i];
    }
  }
  return "info";
}

static void json_head(sbuf *b, lc_rt *rt, int worker) {
  char num[64];
  sb_str(b, "{\"time\":\"");
  sb_time(b);
  sb_str(b, "\"");
  (void)rt;
  if (worker > 0) snprintf(num, sizeof num, ",\"process\":\"worker\",\"worker\":%d", worker);
  else snprintf(num, sizeof num, ",\"process\":\"%s\"", rt && rt->log_prefix[0] ? "master" : "child");
  sb_str(b, num);
}

void lc_log_emit(lc_rt *rt, const char *msg, size_t len) {
  sbuf b;
  sb_init(&b);
  const char *level = split_level(&msg, &len);
  if (rt && rt->log_json) {
    char num[32];
    json_head(&b, rt, rt->log_worker);
    snprintf(num, sizeof num, ",\"pid\":%d", (int)getpid());
    sb_str(&b, num);
    sb_str(&b, ",\"level\":\"");
    sb_str(&b, level);
    sb_str(&b, "\",\"msg\":");
    sb_json(&b, msg, len);
    sb_str(&b, "}\n");
  } else {
    if (rt) sb_str(&b, rt->log_prefix);
    sb_time(&b);
    sb_add(&b, " ", 1);
    sb_str(&b, level);
    sb_add(&b, ": ", 2);
    sb_add(&b, msg, len);
    sb_add(&b, "\n", 1);
  }
  lc_write_all(2, b.p, b.len);
  sb_free(&b);
}

/* A line a worker printed (without its newline), forwarded by its master in JSON mode. */
void lc_log_forward_json(lc_rt *rt, int fd, const char *prefix, const char *line, size_t len) {
  if (len > 0 && line[0] == '{') {   /* the worker's own JSON log line */
    sbuf b;
    sb_init(&b);
    sb_add(&b, line, len);
    sb_add(&b, "\n", 1);
    lc_write_all(fd, b.p, b.len);
    sb_free(&b);
    return;
  }
  int worker = 0;
  if (sscanf(prefix, "[worker %d]", &worker) != 1) worker = 0;
  sbuf b;
  sb_init(&b);
  json_head(&b, rt, worker > 0 ? worker : -1);
  sb_str(&b, fd == 1 ? ",\"stream\":\"stdout\",\"msg\":" : ",\"stream\":\"stderr\",\"msg\":");
  sb_json(&b, line, len);
  sb_str(&b, "}\n");
  lc_write_all(fd, b.p, b.len);
  sb_free(&b);
}

/* core.set_log_format("text" | "json" [, worker_id]) */
static int f_set_log_format(lua_State *L) {
  lc_rt *rt = lc_rt_get(L);
  const char *fmt = luaL_checkstring(L, 1);
  if (strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0) return luaL_error(L, "log format must be text or json");
  rt->log_json = strcmp(fmt, "json") == 0;
  rt->log_worker = (int)luaL_optinteger(L, 2, rt->log_worker);
  return 0;
}

/* core.json_string(s) -> the JSON string literal of s (as the log lines write it) */
static int f_json_string(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  sbuf b;
  sb_init(&b);
  sb_json(&b, s, n);
  lua_pushlstring(L, b.p, b.len);
  sb_free(&b);
  return 1;
}

void lc_open_log(lua_State *L) {
  lua_pushcfunction(L, f_set_log_format);
  lua_setfield(L, -2, "set_log_format");
  lua_pushcfunction(L, f_json_string);
  lua_setfield(L, -2, "json_string");
}
