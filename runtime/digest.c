/* digest.c: MD5 and SHA-1 through OpenSSL's libcrypto (EVP), and base64 with nginx's rules,
 * for luacluster.ngx (ngx.md5, ngx.md5_bin, ngx.sha1_bin, ngx.encode_base64,
 * ngx.decode_base64). Owns nothing past a call: each result is built in a luaL_Buffer or on
 * the stack.
 *   core.md5_bin(s), core.md5_hex(s) (lower case hex), core.sha1_bin(s)
 *   core.base64_encode(s, no_padding)
 *   core.base64_decode(s) -> string | nil: nil for a character outside the standard alphabet
 *     before the first '=', or a length (up to that '=') of 4n+1. Padding may be left out;
 *     whatever follows the first '=' is not looked at, and the unused low bits of the last
 *     character are ignored (nginx's ngx_decode_base64). */
#include "lc.h"
#include "bindings.h"

#include <openssl/evp.h>
#include <string.h>

static int digest(lua_State *L, const EVP_MD *md, int hex) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (md == NULL || EVP_Digest(s, len, out, &n, md, NULL) != 1) {
    return luaL_error(L, "libcrypto: the digest failed");
  }
  if (!hex) {
    lua_pushlstring(L, (const char *)out, n);
    return 1;
  }
  static const char digits[] = "0123456789abcdef";
  char h[2 * EVP_MAX_MD_SIZE];
  for (unsigned int i = 0; i < n; i++) {
    h[2 * i] = digits[out[i] >> 4];
    h[2 * i + 1] = digits[out[i] & 0xf];
  }
  lua_pushlstring(L, h, 2 * (size_t)n);
  return 1;
}

static int f_md5_bin(lua_State *L) { return digest(L, EVP_md5(), 0); }
static int f_md5_hex(lua_State *L) { return digest(L, EVP_md5(), 1); }
static int f_sha1_bin(lua_State *L) { return digest(L, EVP_sha1(), 0); }

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int f_base64_encode(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int pad = !lua_toboolean(L, 2);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (len >= 3) {
    char q[4] = {B64[s[0] >> 2], B64[((s[0] & 3) << 4) | (s[1] >> 4)],
                 B64[((s[1] & 0xf) << 2) | (s[2] >> 6)], B64[s[2] & 0x3f]};
    luaL_addlstring(&b, q, 4);
    s += 3;
    len -= 3;
  }
  if (len > 0) {
    char q[4];
    size_t n = 2;
    q[0] = B64[s[0] >> 2];
    if (len == 1) {
      q[1] = B64[(s[0] & 3) << 4];
    } else {
      q[1] = B64[((s[0] & 3) << 4) | (s[1] >> 4)];
      q[2] = B64[(s[1] & 0xf) << 2];
      n = 3;
    }
    if (pad) {
      while (n < 4) q[n++] = '=';
    }
    luaL_addlstring(&b, q, n);
  }
  luaL_pushresult(&b);
  return 1;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static int f_base64_decode(lua_State *L) {
  size_t len, n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  for (n = 0; n < len && s[n] != '='; n++) {
    if (b64_value(s[n]) < 0) {
      lua_pushnil(L);
      return 1;
    }
  }
  if (n % 4 == 1) {
    lua_pushnil(L);
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (n >= 4) {
    int a = b64_value(s[0]), c = b64_value(s[1]), d = b64_value(s[2]), e = b64_value(s[3]);
    char o[3] = {(char)((a << 2) | (c >> 4)), (char)((c << 4) | (d >> 2)), (char)((d << 6) | e)};
    luaL_addlstring(&b, o, 3);
    s += 4;
    n -= 4;
  }
  if (n > 1) {
    int a = b64_value(s[0]), c = b64_value(s[1]);
    luaL_addchar(&b, (char)((a << 2) | (c >> 4)));
    if (n > 2) {
      int d = b64_value(s[2]);
      luaL_addchar(&b, (char)((c << 4) | (d >> 2)));
    }
  }
  luaL_pushresult(&b);
  return 1;
}

void lc_open_digest(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"md5_bin", f_md5_bin}, {"md5_hex", f_md5_hex}, {"sha1_bin", f_sha1_bin},
    {"base64_encode", f_base64_encode}, {"base64_decode", f_base64_decode}, {NULL, NULL},
  };
  luaL_register(L, NULL, fns);
}
