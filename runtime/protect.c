/* protect.c: core.protect(fn), a protected call the JIT cannot inline.
 * LuaJIT 2.1 (OpenResty's 2.1-20230119, the one Debian ships) can compile a pcall of
 * string.buffer's encode/decode into a trace, and an error raised inside it there (a function
 * in a message, a garbled frame) corrupts the Lua state and crashes the process. Turning the
 * codec off for the JIT (jit.off) avoided that but blacklisted every caller up to the IPC
 * callback, so the whole message path ran interpreted. A trace ends at a call of an ordinary
 * C function (it stitches around it), so the lua_pcall made here never sits inside a trace,
 * and the callers around it compile. core.checked(decode) is the same with the codec's bounds
 * check (codec_check.c) in front, so that receiving a message is one C call. */
#include "lc.h"
#include "bindings.h"
#include "codec_check.h"

/* the closure: upvalue 1 is fn; returns true, fn's results | false, the error value */
static int f_protected(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (lua_pcall(L, n, LUA_MULTRET, 0) != 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  return lua_gettop(L);
}

/* the closure of core.checked: upvalue 1 is the decoder; bytes -> true, value | false, why */
static int f_checked(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  const char *err = lc_codec_check(p, len);
  if (err) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, err);
    return 2;
  }
  lua_settop(L, 1);
  return f_protected(L);
}

static int make(lua_State *L, lua_CFunction f) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushcclosure(L, f, 1);
  return 1;
}

/* core.protect(fn) -> function(...) -> true, fn's results | false, err */
static int f_protect(lua_State *L) { return make(L, f_protected); }
/* core.checked(decode) -> function(bytes) -> true, decode(bytes) | false, why: a payload that
 * fails the bounds check never reaches the decoder */
static int f_checked_new(lua_State *L) { return make(L, f_checked); }

void lc_open_protect(lua_State *L) {
  lua_pushcfunction(L, f_protect);
  lua_setfield(L, -2, "protect");
  lua_pushcfunction(L, f_checked_new);
  lua_setfield(L, -2, "checked");
}
