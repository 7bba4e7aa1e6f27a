/* uri_escape.c: percent-encoding with the character sets of lua-nginx-module's ngx.escape_uri
 * (its types 0..6) and its ngx.unescape_uri, for luacluster.ngx. Owns nothing past a call.
 *   core.uri_escape(s, type) -> s escaped (upper case hex); type is checked by the caller
 *   core.uri_unescape(s) -> "%XX" (either case) decoded, "+" as a space, a "%" not followed
 *     by two hex digits kept as it is */
#include "lc.h"
#include "bindings.h"

#include <string.h>

#define NTYPES 7

static int is_ctl_or_high(int c) { return c < 0x20 || c >= 0x7f; }

static int escapes(int type, int c) {
  switch (type) {
    case 0: /* a full URI: " ", "#", "%", "?", controls, 0x7F-0xFF */
      return is_ctl_or_high(c) || c == ' ' || c == '#' || c == '%' || c == '?';
    case 1: /* query arguments: as 0, and "+" */
      return escapes(0, c) || c == '+';
    case 2: /* a URI component: all but ALPHA, DIGIT and - . _ ~ ! ' ( ) * */
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return 0;
      return strchr("-._~!'()*", c) == NULL || c == 0;
    case 3: /* html: " ", "#", "\"", "%", "'", controls, 0x7F-0xFF */
      return is_ctl_or_high(c) || c == ' ' || c == '#' || c == '"' || c == '%' || c == '\'';
    case 4: /* refresh: " ", "\"", "'", controls, 0x7F-0xFF */
      return is_ctl_or_high(c) || c == ' ' || c == '"' || c == '\'';
    default: /* 5 memcached, 6 mail_auth: " ", "%", controls (0x7F-0xFF kept) */
      return c < 0x20 || c == ' ' || c == '%';
  }
}

static int f_uri_escape(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  lua_Integer type = luaL_checkinteger(L, 2);
  luaL_argcheck(L, type >= 0 && type < NTYPES, 2, "type out of range");
  unsigned char esc[256];
  for (int c = 0; c < 256; c++) esc[c] = (unsigned char)(escapes((int)type, c) != 0);
  size_t n = 0;
  for (size_t i = 0; i < len; i++) n += esc[s[i]];
  if (n == 0) {
    lua_pushvalue(L, 1);
    return 1;
  }
  static const char hex[] = "0123456789ABCDEF";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    if (esc[s[i]]) {
      char q[3] = {'%', hex[s[i] >> 4], hex[s[i] & 0xf]};
      luaL_addlstring(&b, q, 3);
    } else {
      luaL_addchar(&b, (char)s[i]);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int f_uri_unescape(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (c == '%' && len - i > 2 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      luaL_addchar(&b, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else if (c == '+') {
      luaL_addchar(&b, ' ');
    } else {
      luaL_addchar(&b, (char)c);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

void lc_open_uri_escape(lua_State *L) {
  lua_pushcfunction(L, f_uri_escape);
  lua_setfield(L, -2, "uri_escape");
  lua_pushcfunction(L, f_uri_unescape);
  lua_setfield(L, -2, "uri_unescape");
}
