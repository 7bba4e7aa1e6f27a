/* http_client_lua.c: the HTTP client's parsing bound to Lua (lua/luacluster/http_client.lua is
 * its one user). core.http_response() makes a response reader: a userdata that holds one
 * response's head state (http_head.c in response mode) and body framer (http_body.c), and
 * nothing else: the bytes stay in the Lua strings it is handed, so it owns no memory of its own
 * and the GC frees it whole.
 *   rr:head(buf [, max_header_size]) -> head_len, status, headers | 0 (more bytes needed)
 *                                      | nil, err        (buf: the same bytes and more each call)
 *   rr:framing(no_body, max_body_size) -> "none" | "length", n | "chunked" | "close" | nil, err
 *   rr:keepalive() -> whether the response lets its connection be reused (Connection, version)
 *   rr:body(data) -> decoded, used, done | nil, err   (the bytes after `used` are not the body's)
 *   rr:reset() -> starts the next head (after a 1xx)
 * Misuse raises: a head() given fewer bytes than before or after the head was read, a framing()
 * before a complete head, a body() before framing(). */
#include "lc.h"
#include "http_head.h"
#include "http_body.h"

#include <stdio.h>
#include <string.h>

#define LC_HTTP_RESPONSE_MT "luacluster.http_response"
#define DEFAULT_MAX_HEADER 65536

enum { KIND_NONE, KIND_LENGTH, KIND_CHUNKED, KIND_CLOSE };
enum { HEAD_READING, HEAD_DONE, HEAD_FAILED };

typedef struct response_reader {
  int head_state;              /* HEAD_READING, HEAD_DONE or HEAD_FAILED */
  size_t fed;                  /* bytes the last head() call was given: the next gives as many or more */
  int framed;                  /* framing() has run: body() may be called */
  int kind;
  uint64_t max_body;
  size_t max_header;
  lc_http_body body;
  lc_http_head head;           /* last: its field array is large */
} response_reader;

static response_reader *check_reader(lua_State *L) {
  return luaL_checkudata(L, 1, LC_HTTP_RESPONSE_MT);
}

/* core.http_response() -> a reader for one response head and body */
static int client_new(lua_State *L) {
  response_reader *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, offsetof(response_reader, head));
  lc_http_response_init(&r->head);
  luaL_getmetatable(L, LC_HTTP_RESPONSE_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int reader_reset(lua_State *L) {
  response_reader *r = check_reader(L);
  r->head_state = HEAD_READING;
  r->fed = 0;
  r->framed = 0;
  lc_http_response_init(&r->head);
  return 0;
}

/* the first bytes of the line at p (up to its end or 40 bytes), printable: for an error */
static void quote_line(const char *p, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && p[i] != '\r' && p[i] != '\n' && o + 5 < cap; i++) {
    unsigned char c = (unsigned char)p[i];
    if (i == 40) {
      memcpy(out + o, "...", 3);
      o += 3;
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out[o++] = (char)c;
    } else {
      snprintf(out + o, cap - o, "\\x%02x", c);
      o += 4;
    }
  }
  out[o] = '\0';
}

/* the lower-cased name of field f, pushed: a name of up to 64 bytes (all but odd ones) is made
 * on the stack and pushed at once, a longer one goes through a luaL_Buffer */
static void push_name(lua_State *L, const char *p, const lc_http_field *f) {
  char small[64];
  const char *s = p + f->name;
  if (f->name_len <= sizeof small) {
    for (uint32_t k = 0; k < f->name_len; k++) {
      char c = s[k];
      small[k] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    lua_pushlstring(L, small, f->name_len);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (uint32_t k = 0; k < f->name_len; k++) {
    char c = s[k];
    luaL_addchar(&b, c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
  }
  luaL_pushresult(&b);
}

/* lower-case names; a repeated name's values joined by ", " */
static void push_headers(lua_State *L, const char *p, const lc_http_head *h) {
  lua_createtable(L, 0, h->nfields);
  for (int i = 0; i < h->nfields; i++) {
    const lc_http_field *f = &h->fields[i];
    push_name(L, p, f);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, p + f->value, f->value_len);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, p + f->value, f->value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

static int reader_head(lua_State *L) {
  response_reader *r = check_reader(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  lua_Number lim = luaL_optnumber(L, 3, DEFAULT_MAX_HEADER);
  if (!(lim >= 1 && lim <= 1073741824)) return luaL_argerror(L, 3, "max_header_size out of range");
  /* the parse resumes where it stopped in the bytes it was given: they must still be there */
  if (r->head_state != HEAD_READING) return luaL_error(L, "head: this head was read already (reset() first)");
  if (n < r->fed) return luaL_error(L, "head: the buffer must hold the bytes given before");
  r->fed = n;
  r->max_header = (size_t)lim;
  size_t len = 0;
  int st = lc_http_head_parse(p, n, r->max_header, &r->head, &len);
  if (st == 0 && len == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  r->head_state = st == 0 ? HEAD_DONE : HEAD_FAILED;
  if (st != 0) {
    const lc_http_head *h = &r->head;
    if (h->err != 0 && h->why != NULL) {  /* a line at fault: quoted */
      char line[64 * 4 + 8];
      quote_line(p + h->fault, n - h->fault, line, sizeof line);
      return lc_push_fail(L, 0, "%s: \"%s\"", h->why, line);
    }
    if (st == 431) return lc_push_fail(L, 0, "response head larger than %d bytes", (int)r->max_header);
    if (h->why != NULL) return lc_push_fail(L, 0, "%s", h->why);  /* the framing fields */
    return lc_push_fail(L, 0, "a bare CR in the response head");
  }
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushinteger(L, r->head.status);
  push_headers(L, p, &r->head);
  return 3;
}

static int reader_framing(lua_State *L) {
  response_reader *r = check_reader(L);
  int no_body = lua_toboolean(L, 2);
  lua_Number max = luaL_checknumber(L, 3);
  if (!(max >= 0)) return luaL_argerror(L, 3, "max_body_size must be >= 0");
  const lc_http_head *h = &r->head;
  if (r->head_state != HEAD_DONE) return luaL_error(L, "framing: the head is not complete");
  r->max_body = max >= 9007199254740992.0 ? UINT64_MAX : (uint64_t)max;
  r->framed = 1;
  int st = h->status;
  if (no_body || st < 200 || st == 204 || st == 304) {
    r->kind = KIND_NONE;
    lc_http_body_init(&r->body, 0, 0, 0);
    lua_pushliteral(L, "none");
    return 1;
  }
  if (h->has_transfer_encoding) {
    r->kind = KIND_CHUNKED;
    lc_http_body_init(&r->body, 1, 0, r->max_body);
    lua_pushliteral(L, "chunked");
    return 1;
  }
  if (h->has_content_length) {
    r->kind = KIND_LENGTH;
    if (lc_http_body_init(&r->body, 0, h->content_length, r->max_body) == 413) {
      r->framed = 0;
      return lc_push_fail(L, 0, "body larger than max_body_size (%f bytes): Content-Length %f", max,
                          (lua_Number)h->content_length);
    }
    lua_pushliteral(L, "length");
    lua_pushnumber(L, (lua_Number)h->content_length);
    return 2;
  }
  r->kind = KIND_CLOSE;
  lc_http_body_init_close(&r->body);
  lua_pushliteral(L, "close");
  return 1;
}

static int reader_keepalive(lua_State *L) {
  response_reader *r = check_reader(L);
  const lc_http_head *h = &r->head;
  int keep = h->minor == 1 ? !h->connection_close : h->connection_keep_alive && !h->connection_close;
  lua_pushboolean(L, keep && r->kind != KIND_CLOSE);
  return 1;
}

static int reader_body(lua_State *L) {
  response_reader *r = check_reader(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (!r->framed) return luaL_error(L, "body: framing() has not run");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t off = 0;
  int st = r->kind == KIND_NONE ? LC_HTTP_BODY_DONE : LC_HTTP_BODY_MORE;
  while (st == LC_HTTP_BODY_MORE && off < n) {
    size_t used, doff, dlen;
    st = lc_http_body_frame(&r->body, p + off, n - off, r->max_body, r->max_header, &used, &doff, &dlen);
    if (st != LC_HTTP_BODY_MORE && st != LC_HTTP_BODY_DONE) {
      r->framed = 0;
      if (st == 413) return lc_push_fail(L, 0, "body larger than max_body_size (%f bytes)", (lua_Number)r->max_body);
      if (st == 431) return lc_push_fail(L, 0, "chunked trailers larger than %d bytes", (int)r->max_header);
      return lc_push_fail(L, 0, "invalid chunked body");
    }
    if (dlen > 0) luaL_addlstring(&b, p + off + doff, dlen);
    off += used;
  }
  luaL_pushresult(&b);
  lua_pushinteger(L, (lua_Integer)off);
  lua_pushboolean(L, st == LC_HTTP_BODY_DONE);
  return 3;
}

void lc_open_http_client(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"head", reader_head}, {"framing", reader_framing}, {"keepalive", reader_keepalive},
    {"body", reader_body}, {"reset", reader_reset}, {NULL, NULL},
  };
  lc_newmetatable(L, LC_HTTP_RESPONSE_MT, methods);
  lua_pushcfunction(L, client_new);
  lua_setfield(L, -2, "http_response");
}
