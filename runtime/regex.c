/* regex.c: PCRE2 (8-bit) bound to Lua for luacluster.ngx's ngx.re. A compiled regex is a
 * full userdata ("luacluster.regex") that owns its pcre2_code and the match data sized for
 * it; both are freed in one place, regex_free, called by re:free() (ngx.re frees a regex it
 * does not cache as soon as it is done) or by __gc, whichever comes first.
 * Mechanism only: which option letters mean what to OpenResty, the captures table, the
 * replacement templates and the compiled-regex cache are Lua's (lua/luacluster/ngx/re.lua).
 *
 *   core.regex_compile(pattern, letters, jit) -> re | nil, pcre2_message, error_offset
 *     letters: any of "imsxuaDJ" (OpenResty's compile-time option letters)
 *   re:exec(subject, pos, dfa, no_utf_check, ov) -> rc
 *     pos: 0-based start offset; rc < 0 is PCRE2's error code (-1: no match); rc > 0 fills
 *     ov[1..] with one pair per group 0..ncaptures (0-based start, end exclusive; -1, -1 for
 *     a group that did not take part). With dfa (the longest match, pcre2_dfa_match) only
 *     group 0, as in OpenResty.
 *   re:info() -> ncaptures, { {group, name}, ... } (PCRE2's name table order)
 *   re:free() */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lc.h"
#include "bindings.h"

#include <pcre2.h>
#include <string.h>

#define MT "luacluster.regex"
#define DFA_WORKSPACE 100   /* ints, as OpenResty's NGX_LUA_RE_DFA_MODE_WORKSPACE_COUNT */

typedef struct lc_regex {
  pcre2_code *code;
  pcre2_match_data *md;
  uint32_t ncap;
} lc_regex;

static void regex_free(lc_regex *re) {
  if (re->md) pcre2_match_data_free(re->md);
  if (re->code) pcre2_code_free(re->code);
  re->md = NULL;
  re->code = NULL;
}

static lc_regex *check_regex(lua_State *L, int idx) {
  lc_regex *re = luaL_checkudata(L, idx, MT);
  if (re->code == NULL) luaL_error(L, "regex: already freed");
  return re;
}

static uint32_t letters_to_options(lua_State *L, const char *s, size_t n) {
  uint32_t o = 0;
  for (size_t i = 0; i < n; i++) {
    switch (s[i]) {
      case 'i': o |= PCRE2_CASELESS; break;
      case 'm': o |= PCRE2_MULTILINE; break;
      case 's': o |= PCRE2_DOTALL; break;
      case 'x': o |= PCRE2_EXTENDED; break;
      case 'u': o |= PCRE2_UTF; break;
      case 'a': o |= PCRE2_ANCHORED; break;
      case 'D': o |= PCRE2_DUPNAMES; break;
      /* PCRE1's JAVASCRIPT_COMPAT, split in PCRE2 (as lua-resty-core maps it) */
      case 'J': o |= PCRE2_ALT_BSUX | PCRE2_ALLOW_EMPTY_CLASS | PCRE2_MATCH_UNSET_BACKREF; break;
      default: luaL_error(L, "regex_compile: unknown option letter '%c'", s[i]);
    }
  }
  return o;
}

/* core.regex_compile(pattern, letters, jit) */
static int f_regex_compile(lua_State *L) {
  size_t plen, nlet;
  const char *pat = luaL_checklstring(L, 1, &plen);
  const char *let = luaL_optlstring(L, 2, "", &nlet);
  int jit = lua_toboolean(L, 3);
  uint32_t options = letters_to_options(L, let, nlet);
  /* the box first: a raise in lua_newuserdata leaves nothing compiled behind */
  lc_regex *re = lua_newuserdata(L, sizeof *re);
  memset(re, 0, sizeof *re);
  luaL_getmetatable(L, MT);
  lua_setmetatable(L, -2);
  int errcode;
  PCRE2_SIZE erroff;
  re->code = pcre2_compile((PCRE2_SPTR)pat, plen, options, &errcode, &erroff, NULL);
  if (re->code == NULL) {
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(errcode, msg, sizeof msg) < 0) {
      strcpy((char *)msg, "unknown error");
    }
    lua_pushnil(L);
    lua_pushstring(L, (const char *)msg);
    lua_pushnumber(L, (lua_Number)erroff);
    return 3;
  }
  if (jit) {
    /* as OpenResty: a pattern JIT cannot compile still runs, interpreted */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
  }
  if (pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &re->ncap) != 0) {
    regex_free(re);
    return luaL_error(L, "regex_compile: cannot read the capture count");
  }
  re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
  if (re->md == NULL) {
    regex_free(re);
    return luaL_error(L, "regex_compile: out of memory");
  }
  return 1;
}

/* re:exec(subject, pos, dfa, no_utf_check, ov) -> rc */
static int m_exec(lua_State *L) {
  lc_regex *re = check_regex(L, 1);
  size_t len;
  const char *subj = luaL_checklstring(L, 2, &len);
  lua_Number pos = luaL_optnumber(L, 3, 0);
  int dfa = lua_toboolean(L, 4);
  uint32_t opts = lua_toboolean(L, 5) ? PCRE2_NO_UTF_CHECK : 0;
  luaL_checktype(L, 6, LUA_TTABLE);
  luaL_argcheck(L, pos >= 0, 3, "negative offset");
  /* past the end: PCRE2 answers PCRE2_ERROR_BADOFFSET itself */
  PCRE2_SIZE start = pos > (lua_Number)len ? (PCRE2_SIZE)len + 1 : (PCRE2_SIZE)pos;
  int rc;
  uint32_t ngroups;
  if (dfa) {
    int ws[DFA_WORKSPACE];
    rc = pcre2_dfa_match(re->code, (PCRE2_SPTR)subj, len, start, opts, re->md, NULL, ws, DFA_WORKSPACE);
    if (rc >= 0) rc = 1;  /* only the longest match (pair 0) is reported; 0: more than fit */
    ngroups = 1;
  } else {
    rc = pcre2_match(re->code, (PCRE2_SPTR)subj, len, start, opts, re->md, NULL);
    ngroups = re->ncap + 1;
  }
  if (rc == 0) rc = PCRE2_ERROR_NOMEMORY; /* an ovector too small: not with match data from the pattern */
  if (rc > 0) {
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    uint32_t nov = pcre2_get_ovector_count(re->md);
    for (uint32_t i = 0; i < ngroups; i++) {
      int set = i < (uint32_t)rc && i < nov && ov[2 * i] != PCRE2_UNSET;
      lua_pushnumber(L, set ? (lua_Number)ov[2 * i] : -1);
      lua_rawseti(L, 6, (int)(2 * i + 1));
      lua_pushnumber(L, set ? (lua_Number)ov[2 * i + 1] : -1);
      lua_rawseti(L, 6, (int)(2 * i + 2));
    }
  }
  lua_pushinteger(L, rc);
  return 1;
}

/* re:info() -> ncaptures, names */
static int m_info(lua_State *L) {
  lc_regex *re = check_regex(L, 1);
  uint32_t count = 0, entry = 0;
  PCRE2_SPTR table = NULL;
  lua_pushinteger(L, (lua_Integer)re->ncap);
  if (pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &count) != 0) count = 0;
  lua_createtable(L, (int)count, 0);
  if (count == 0) return 2;
  if (pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &entry) != 0
      || pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &table) != 0) {
    return luaL_error(L, "regex: cannot read the name table");
  }
  for (uint32_t i = 0; i < count; i++) {
    PCRE2_SPTR e = table + (size_t)i * entry;
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, (e[0] << 8) | e[1]);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, (const char *)(e + 2));
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 2;
}

static int m_free(lua_State *L) {
  regex_free(luaL_checkudata(L, 1, MT));
  return 0;
}

void lc_open_regex(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"exec", m_exec}, {"info", m_info}, {"free", m_free}, {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  luaL_getmetatable(L, MT);
  lua_pushcfunction(L, m_free);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, f_regex_compile);
  lua_setfield(L, -2, "regex_compile");
}
