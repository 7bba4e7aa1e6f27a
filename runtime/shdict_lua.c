/* shdict_lua.c: shared dictionaries bound to Lua, and the memory they live in.
 * All dictionaries of a cluster live in one memfd (the arena file): the master creates it and
 * each dictionary's region in it (a page-aligned range, its own mapping) before any worker
 * starts; a worker gets the same file as an inherited descriptor named in its environment
 * (LUACLUSTER_SHDICT, read by luacluster.shared) and maps the same ranges. An fd inherited at
 * spawn is there before the worker's first line of Lua, so the app's top level can use a
 * dictionary at once, and every later generation gets it the same way; an fd sent over the IPC
 * channel would arrive only after the worker's loop runs. The regions stay mapped for the life
 * of the process (a dictionary is never unmapped); the arena fd is closed in a worker once
 * mapped, kept (close-on-exec) in the master for the next workers.
 *
 *   core.shdict_create(name, bytes) -> dict | nil, err      (master)
 *   core.shdict_fd() -> fd | nil                            (master: for spawn's stdio)
 *   core.shdict_attach(fd, "name:offset:size;...") -> true | nil, err   (worker)
 *   core.shdict_adopt(fd, "name:offset:size;...") -> true | nil, err    (an upgrade's new master:
 *     the old master's arena file becomes this master's, mapped at the same offsets, so what
 *     was written before the upgrade is read after it, and a new dictionary extends the file)
 *   core.shdict_all() -> { name = dict }
 *   core.shdict_stats() -> { { name=, capacity=, used=, free=, entries=, evictions= }, ... }
 *   core.shdict_lock_timeout(ms)                            (master)
 *   core.shdict_crash_at(n)         (specs: SIGKILL itself at the n-th point of a step, shdict_int.h)
 *   core.shdict_base(dict) -> lightuserdata, core.shdict_methods() -> table (lib/shdict_ffi.lua)
 *   dict:<OpenResty's ngx.shared.DICT methods>, dict:verify() (specs)
 * Argument checks, return values and error strings follow lua-resty-core's shdict.lua and
 * lua-nginx-module's list functions. Nothing is pushed while a dictionary's lock is held. */
#define _GNU_SOURCE
#include "lc.h"
#include "bindings.h"
#include "shdict.h"
#include "shdict_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MT "luacluster.shdict"
#define MAX_DICTS 64
#define MAX_NAME 64

typedef struct dict {
  char name[MAX_NAME];
  void *base;
  size_t size;
  uint64_t offset;       /* in the arena file */
} dict;

static dict dicts[MAX_DICTS];
static int ndicts;
static int arena_fd = -1;          /* the master's; -1 in a worker once mapped */
static uint64_t arena_end;         /* bytes of the arena file in use */
static uint64_t arena_file;        /* bytes of the arena file (sealed: it never shrinks) */

static dict *find_dict(const char *name) {
  for (int i = 0; i < ndicts; i++)
    if (strcmp(dicts[i].name, name) == 0) return &dicts[i];
  return NULL;
}

static void push_dict(lua_State *L, dict *d) {
  dict **box = lua_newuserdata(L, sizeof *box);
  *box = d;
  luaL_getmetatable(L, MT);
  lua_setmetatable(L, -2);
}

static int map_range(int fd, uint64_t offset, size_t size, void **base) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
  if (p == MAP_FAILED) return uv_translate_sys_error(errno);
  *base = p;
  return 0;
}

static int f_create(lua_State *L) {
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  lua_Number want = luaL_checknumber(L, 2);
  if (nlen == 0 || nlen >= MAX_NAME) return luaL_error(L, "shdict_create: bad name");
  if (find_dict(name)) return luaL_error(L, "shdict_create: '%s' exists", name);
  if (ndicts == MAX_DICTS) return lc_push_fail(L, 0, "at most %d shared dictionaries", MAX_DICTS);
  if (!(want >= (lua_Number)LC_SHD_MIN_SIZE && want <= (lua_Number)LC_SHD_MAX_SIZE))
    return lc_push_fail(L, 0, "size must be from %d to %d bytes", (int)LC_SHD_MIN_SIZE, (int)LC_SHD_MAX_SIZE);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t size = ((size_t)want + page - 1) / page * page;
  if (size > LC_SHD_MAX_SIZE) size -= page;
  if (arena_fd < 0) {
    arena_fd = memfd_create("luacluster-shdict", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (arena_fd < 0) return lc_push_error(L, uv_translate_sys_error(errno));
    /* never shrunk (every process's access past a new end would be a SIGBUS); it grows when
     * a reload adds a dictionary, and F_SEAL_SEAL keeps anyone from sealing that off */
    if (fcntl(arena_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
      int e = errno;
      close(arena_fd);
      arena_fd = -1;
      return lc_push_error(L, uv_translate_sys_error(e));
    }
  }
  if (arena_end + size > arena_file) {     /* (a failed create may have grown it already) */
    if (ftruncate(arena_fd, (off_t)(arena_end + size)) != 0) return lc_push_error(L, uv_translate_sys_error(errno));
    arena_file = arena_end + size;
  }
  void *base = NULL;
  int r = map_range(arena_fd, arena_end, size, &base);
  if (r == 0 && (r = lc_shd_format(base, size)) != 0) munmap(base, size);
  if (r != 0) return lc_push_error(L, r);
  dict *d = &dicts[ndicts++];
  memcpy(d->name, name, nlen + 1);
  d->base = base;
  d->size = size;
  d->offset = arena_end;
  arena_end += size;
  push_dict(L, d);
  return 1;
}

static int f_fd(lua_State *L) {
  if (arena_fd < 0) return 0;
  lua_pushinteger(L, arena_fd);
  return 1;
}

/* the list a worker's environment carries: "name:offset:size;..." */
static int f_spec(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < ndicts; i++) {
    char num[64];
    luaL_addstring(&b, dicts[i].name);
    snprintf(num, sizeof num, ":%llu:%llu;", (unsigned long long)dicts[i].offset, (unsigned long long)dicts[i].size);
    luaL_addstring(&b, num);
  }
  luaL_pushresult(&b);
  return 1;
}

static int f_attach(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  const char *s = luaL_checkstring(L, 2);
  int r = 0;
  const char *why = NULL;
  while (*s && r == 0 && why == NULL) {
    char name[MAX_NAME];
    unsigned long long off, size;
    int used = 0;
    if (sscanf(s, "%63[^:]:%llu:%llu;%n", name, &off, &size, &used) != 3 || used == 0) { why = "bad LUACLUSTER_SHDICT"; break; }
    s += used;
    if (find_dict(name)) continue;
    if (ndicts == MAX_DICTS) { why = "too many shared dictionaries"; break; }
    void *base = NULL;
    r = map_range(fd, off, (size_t)size, &base);
    if (r != 0) break;
    if (!lc_shd_valid(base, (size_t)size)) { munmap(base, (size_t)size); why = "not a shared dictionary"; break; }
    dict *d = &dicts[ndicts++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->base = base;
    d->size = (size_t)size;
    d->offset = off;
  }
  close(fd);                       /* mapped: the worker's own children never see it */
  if (why) return lc_push_fail(L, 0, "shared dictionaries: %s", why);
  if (r != 0) return lc_push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

static int f_adopt(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  luaL_checkstring(L, 2);
  if (arena_fd >= 0 || ndicts > 0) return luaL_error(L, "shdict_adopt: this process has dictionaries already");
  struct stat st;
  if (fstat(fd, &st) != 0) return lc_push_error(L, uv_translate_sys_error(errno));
  int keep = dup(fd);              /* f_attach closes the fd it maps: the master keeps a copy */
  if (keep < 0) return lc_push_error(L, uv_translate_sys_error(errno));
  if (fcntl(keep, F_SETFD, FD_CLOEXEC) != 0) { int e = errno; close(keep); return lc_push_error(L, uv_translate_sys_error(e)); }
  lua_settop(L, 2);
  int n = f_attach(L);
  if (!lua_toboolean(L, -n)) { close(keep); return n; }
  arena_fd = keep;
  arena_file = (uint64_t)st.st_size;
  arena_end = 0;
  for (int i = 0; i < ndicts; i++)
    if (dicts[i].offset + dicts[i].size > arena_end) arena_end = dicts[i].offset + dicts[i].size;
  return n;
}

static int f_all(lua_State *L) {
  lua_createtable(L, 0, ndicts);
  for (int i = 0; i < ndicts; i++) {
    push_dict(L, &dicts[i]);
    lua_setfield(L, -2, dicts[i].name);
  }
  return 1;
}

static int f_stats(lua_State *L) {
  lua_createtable(L, ndicts, 0);
  for (int i = 0; i < ndicts; i++) {
    lc_shd_stats s;
    lc_shd_stats_read(dicts[i].base, &s);
    const struct { const char *k; double v; } f[] = {
      {"capacity", (double)s.capacity}, {"used", (double)s.used}, {"free", (double)s.free},
      {"entries", (double)s.entries}, {"evictions", (double)s.evictions}, {"repairs", (double)s.repairs},
    };
    lua_createtable(L, 0, 7);
    lua_pushstring(L, dicts[i].name);
    lua_setfield(L, -2, "name");
    for (size_t j = 0; j < sizeof f / sizeof f[0]; j++) {
      lua_pushnumber(L, f[j].v);
      lua_setfield(L, -2, f[j].k);
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* specs only: this process kills itself at the n-th point of the dictionary steps it runs
 * next (shdict_int.h's SHD_POINT), holding the lock */
static int f_crash_at(lua_State *L) {
  lc_shd_crash_countdown = (int)luaL_checkinteger(L, 1);
  return 0;
}

static int f_lock_timeout(lua_State *L) {
  lc_shd_lock_timeout((int)luaL_checkinteger(L, 1));
  return 0;
}

/* ---- the methods ---- */

static void *zone(lua_State *L) {
  dict **box = luaL_testudata(L, 1, MT);
  if (box == NULL) luaL_error(L, "bad \"zone\" argument");
  return (*box)->base;
}

/* the key at idx (numbers and other values through tostring, as lua-resty-core): NULL after
 * pushing nil, err */
static const char *key_arg(lua_State *L, int idx, size_t *len, int strict) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) {
    lua_pushnil(L);
    lua_pushliteral(L, "nil key");
    return NULL;
  }
  const char *k;
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    k = lua_tolstring(L, idx, len);
  } else if (strict) {
    k = luaL_checklstring(L, idx, len);      /* the list functions: as lua-nginx-module */
  } else {
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    lua_replace(L, idx);
    k = lua_tolstring(L, idx, len);
    if (k == NULL) luaL_error(L, "'tostring' must return a string");
  }
  if (*len == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "empty key");
    return NULL;
  }
  if (*len > LC_SHD_MAX_KEY) {
    lua_pushnil(L);
    lua_pushliteral(L, "key too long");
    return NULL;
  }
  return k;
}

static const char *err_text(int rc) {
  switch (rc) {
    case LC_SHD_NOT_FOUND: return "not found";
    case LC_SHD_EXISTS: return "exists";
    case LC_SHD_NO_MEMORY: return "no memory";
    case LC_SHD_NOT_NUMBER: return "not a number";
    case LC_SHD_NOT_LIST: return "value not a list";
    case LC_SHD_IS_LIST: return "value is a list";
    case UV_ENOMEM: return "no memory";
    case UV_EBUSY: return "timeout";
    default: return rc < 0 ? uv_strerror(rc) : "error";
  }
}

static int push_fail(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, err_text(rc));
  return 2;
}

/* v's string is in the scratch buffer: it is taken (lc_shd_scratch_take) while it is copied,
 * since the copy's allocation may run a finalizer that reads a dictionary (a memory error
 * raised by the copy loses the buffer: one leak on the way out of an out-of-memory state) */
static void push_value(lua_State *L, const lc_shd_value *v) {
  if (v->type == LC_SHD_TSTRING) {
    size_t cap;
    char *buf = lc_shd_scratch_take(&cap);
    lua_pushlstring(L, v->str, v->len);
    lc_shd_scratch_give(buf, cap);
  } else if (v->type == LC_SHD_TNUMBER) {
    lua_pushnumber(L, v->num);
  } else {
    lua_pushboolean(L, v->num != 0);
  }
}

static int do_get(lua_State *L, int stale) {
  void *z = zone(L);
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 0);
  if (key == NULL) return 2;
  lc_shd_value v;
  int is_stale;
  int rc = lc_shd_get(z, key, klen, stale, &v, &is_stale);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  if (v.type == LC_SHD_TNIL) {
    lua_pushnil(L);
    return 1;
  }
  push_value(L, &v);
  if (!stale && v.flags == 0) return 1;
  if (v.flags != 0) lua_pushinteger(L, v.flags);
  else lua_pushnil(L);
  if (!stale) return 2;
  lua_pushboolean(L, is_stale);
  return 3;
}

static int m_get(lua_State *L) { return do_get(L, 0); }
static int m_get_stale(lua_State *L) { return do_get(L, 1); }

/* set, safe_set, add, safe_add, replace, delete: true, nil, forcible | false, err, forcible */
static int do_store(lua_State *L, int op, int is_delete) {
  void *z = zone(L);
  lua_Number exptime = 0;
  int32_t flags = 0;
  if (!is_delete) {
    if (lua_toboolean(L, 4)) {
      if (!lua_isnumber(L, 4) || (exptime = lua_tonumber(L, 4)) < 0) return luaL_error(L, "bad \"exptime\" argument");
    }
    if (lua_toboolean(L, 5)) {
      if (!lua_isnumber(L, 5)) return luaL_error(L, "bad \"flags\" argument");
      flags = (int32_t)lua_tointeger(L, 5);
    }
  }
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 0);
  if (key == NULL) return 2;
  lc_shd_value v = { .type = LC_SHD_TNIL, .flags = flags };
  switch (is_delete ? LUA_TNIL : lua_type(L, 3)) {
    case LUA_TSTRING: v.type = LC_SHD_TSTRING; v.str = lua_tolstring(L, 3, &v.len); break;
    case LUA_TNUMBER: v.type = LC_SHD_TNUMBER; v.num = lua_tonumber(L, 3); break;
    case LUA_TBOOLEAN: v.type = LC_SHD_TBOOLEAN; v.num = lua_toboolean(L, 3); break;
    case LUA_TNIL: case LUA_TNONE: break;
    default:
      lua_pushnil(L);
      lua_pushliteral(L, "bad value type");
      return 2;
  }
  int forcible = 0, rc;
  if (v.type == LC_SHD_TNIL && (op & (LC_SHD_ADD | LC_SHD_REPLACE))) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "attempt to add or replace nil values");
    lua_pushboolean(L, 0);
    return 3;
  }
  rc = lc_shd_store(z, op, key, klen, &v, (int64_t)(exptime * 1000), &forcible);
  lua_pushboolean(L, rc == LC_SHD_OK);
  if (rc == LC_SHD_OK) lua_pushnil(L);
  else lua_pushstring(L, err_text(rc));
  lua_pushboolean(L, forcible);
  return 3;
}

static int m_set(lua_State *L) { return do_store(L, LC_SHD_SET, 0); }
static int m_safe_set(lua_State *L) { return do_store(L, LC_SHD_SET | LC_SHD_SAFE, 0); }
static int m_add(lua_State *L) { return do_store(L, LC_SHD_ADD, 0); }
static int m_safe_add(lua_State *L) { return do_store(L, LC_SHD_ADD | LC_SHD_SAFE, 0); }
static int m_replace(lua_State *L) { return do_store(L, LC_SHD_REPLACE, 0); }
static int m_delete(lua_State *L) { return do_store(L, LC_SHD_SET, 1); }

/* a number argument as lua-resty-core converts it (tonumber), else raises */
static lua_Number number_arg(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) == LUA_TNUMBER) return lua_tonumber(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING && lua_isnumber(L, idx)) return lua_tonumber(L, idx);
  return luaL_error(L, "bad %s arg: number expected, got %s", what, luaL_typename(L, idx));
}

static int m_incr(lua_State *L) {
  void *z = zone(L);
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 0);
  if (key == NULL) return 2;
  double value = number_arg(L, 3, "value");
  int has_init = lua_toboolean(L, 4);
  double init = has_init ? number_arg(L, 4, "init") : 0;
  lua_Number ttl = 0;
  if (!lua_isnoneornil(L, 5)) {
    ttl = number_arg(L, 5, "init_ttl");
    if (ttl < 0) return luaL_error(L, "bad \"init_ttl\" argument");
    if (!has_init) return luaL_error(L, "must provide \"init\" when providing \"init_ttl\"");
  }
  int forcible = 0;
  int rc = lc_shd_incr(z, key, klen, &value, has_init, init, (int64_t)(ttl * 1000), &forcible);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  lua_pushnumber(L, value);
  if (!has_init) return 1;
  lua_pushnil(L);
  lua_pushboolean(L, forcible);
  return 3;
}

static int check_args(lua_State *L, int want, const char *fmt) {
  int n = lua_gettop(L);
  if (n != want) return luaL_error(L, fmt, n);
  zone(L);
  return 0;
}

static int do_push(lua_State *L, int left) {
  check_args(L, 3, "expecting 3 arguments, but only seen %d");
  void *z = zone(L);
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 1);
  if (key == NULL) return 2;
  lc_shd_value v = { .type = LC_SHD_TNIL };
  if (lua_type(L, 3) == LUA_TSTRING) {
    v.type = LC_SHD_TSTRING;
    v.str = lua_tolstring(L, 3, &v.len);
  } else if (lua_type(L, 3) == LUA_TNUMBER) {
    v.type = LC_SHD_TNUMBER;
    v.num = lua_tonumber(L, 3);
  } else {
    lua_pushnil(L);
    lua_pushliteral(L, "bad value type");
    return 2;
  }
  uint32_t len = 0;
  int rc = lc_shd_push(z, key, klen, left, &v, &len);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  lua_pushnumber(L, len);
  return 1;
}

static int m_lpush(lua_State *L) { return do_push(L, 1); }
static int m_rpush(lua_State *L) { return do_push(L, 0); }

static int do_pop(lua_State *L, int left) {
  check_args(L, 2, "expecting 2 arguments, but only seen %d");
  void *z = zone(L);
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 1);
  if (key == NULL) return 2;
  lc_shd_value v;
  int rc = lc_shd_pop(z, key, klen, left, &v);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  if (v.type == LC_SHD_TNIL) lua_pushnil(L);
  else push_value(L, &v);
  return 1;
}

static int m_lpop(lua_State *L) { return do_pop(L, 1); }
static int m_rpop(lua_State *L) { return do_pop(L, 0); }

static int m_llen(lua_State *L) {
  check_args(L, 2, "expecting 2 arguments, but only seen %d");
  void *z = zone(L);
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 1);
  if (key == NULL) return 2;
  uint32_t len = 0;
  int rc = lc_shd_llen(z, key, klen, &len);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  lua_pushnumber(L, len);
  return 1;
}

static int m_ttl(lua_State *L) {
  void *z = zone(L);
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 0);
  if (key == NULL) return 2;
  int64_t ms = 0;
  int rc = lc_shd_ttl(z, key, klen, &ms);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  lua_pushnumber(L, (lua_Number)ms / 1000);
  return 1;
}

static int m_expire(lua_State *L) {
  void *z = zone(L);
  if (!lua_toboolean(L, 3)) return luaL_error(L, "bad \"exptime\" argument");
  lua_Number exptime = number_arg(L, 3, "exptime");
  size_t klen;
  const char *key = key_arg(L, 2, &klen, 0);
  if (key == NULL) return 2;
  int rc = lc_shd_expire(z, key, klen, (int64_t)(exptime * 1000));
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_flush_all(lua_State *L) {
  int rc = lc_shd_flush_all(zone(L));
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  return 0;
}

/* flush_expired's and get_keys's optional count (0: all) */
static uint32_t max_arg(lua_State *L, lua_Integer dflt) {
  int n = lua_gettop(L);
  if (n != 1 && n != 2) luaL_error(L, "expecting 1 or 2 argument(s), but saw %d", n);
  lua_Integer max = n == 2 ? luaL_checkinteger(L, 2) : dflt;
  return max > 0 ? (uint32_t)max : 0;
}

static int m_flush_expired(lua_State *L) {
  uint32_t max = max_arg(L, 0);
  void *z = zone(L);
  uint32_t freed = 0;
  int rc = lc_shd_flush_expired(z, max, &freed);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  lua_pushnumber(L, freed);
  return 1;
}

static int m_get_keys(lua_State *L) {
  uint32_t max = max_arg(L, 1024);
  void *z = zone(L);
  const char *buf;
  uint32_t count = 0;
  int rc = lc_shd_keys(z, max, &buf, &count);
  if (rc != LC_SHD_OK) return push_fail(L, rc);
  size_t cap;
  char *mine = lc_shd_scratch_take(&cap);  /* buf: a finalizer's read fills another (push_value) */
  lua_createtable(L, (int)count, 0);
  size_t at = 0;
  for (uint32_t i = 1; i <= count; i++) {
    uint16_t kl;
    memcpy(&kl, buf + at, 2);
    lua_pushlstring(L, buf + at + 2, kl);
    lua_rawseti(L, -2, (int)i);
    at += 2 + (size_t)kl;
  }
  lc_shd_scratch_give(mine, cap);
  return 1;
}

static int m_capacity(lua_State *L) {
  lc_shd_stats s;
  lc_shd_stats_read(zone(L), &s);
  lua_pushnumber(L, (lua_Number)s.capacity);
  return 1;
}

static int m_free_space(lua_State *L) {
  lc_shd_stats s;
  lc_shd_stats_read(zone(L), &s);
  lua_pushnumber(L, (lua_Number)s.free);
  return 1;
}

static int m_verify(lua_State *L) {
  int rc = lc_shd_verify(zone(L));
  if (rc != 0) return push_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.shdict_base(dict) -> the region's address (a light userdata, for the FFI fast path) */
static int f_base(lua_State *L) {
  lua_pushlightuserdata(L, zone(L));
  return 1;
}

/* core.shdict_methods() -> the dictionaries' method table (the FFI fast path replaces some) */
static int f_methods(lua_State *L) {
  luaL_getmetatable(L, MT);
  lua_getfield(L, -1, "__index");
  return 1;
}

static int m_tostring(lua_State *L) {
  dict **box = luaL_checkudata(L, 1, MT);
  lua_pushfstring(L, "shared dict: %s", (*box)->name);
  return 1;
}

void lc_open_shdict(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"get", m_get}, {"get_stale", m_get_stale}, {"set", m_set}, {"safe_set", m_safe_set},
    {"add", m_add}, {"safe_add", m_safe_add}, {"replace", m_replace}, {"delete", m_delete},
    {"incr", m_incr}, {"lpush", m_lpush}, {"rpush", m_rpush}, {"lpop", m_lpop}, {"rpop", m_rpop},
    {"llen", m_llen}, {"ttl", m_ttl}, {"expire", m_expire}, {"flush_all", m_flush_all},
    {"flush_expired", m_flush_expired}, {"get_keys", m_get_keys}, {"capacity", m_capacity},
    {"free_space", m_free_space}, {"verify", m_verify}, {NULL, NULL},
  };
  lc_newmetatable(L, MT, methods);
  luaL_getmetatable(L, MT);
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
    {"shdict_create", f_create}, {"shdict_fd", f_fd}, {"shdict_spec", f_spec},
    {"shdict_attach", f_attach}, {"shdict_adopt", f_adopt}, {"shdict_all", f_all}, {"shdict_stats", f_stats},
    {"shdict_lock_timeout", f_lock_timeout}, {"shdict_crash_at", f_crash_at},
    {"shdict_base", f_base}, {"shdict_methods", f_methods}, {NULL, NULL},
  };
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
