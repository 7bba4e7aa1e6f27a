-- luacluster.lib.shdict_ffi: the shared dictionaries' hot methods (get, get_stale, set,
-- safe_set, add, safe_add, replace, delete, incr) through LuaJIT's FFI, as lua-resty-core
-- does for ngx.shared.DICT: a loop of them is compiled with the calls into the store
-- (runtime/shdict.c, which never raises and never calls back into Lua) inlined in the trace,
-- where a lua_CFunction method would stop the compiler at every call. Same arguments, return
-- values and error strings as the C methods they replace (runtime/shdict_lua.c); the C ones
-- stay for a process where the store's symbols cannot be found (install returns false).
local ffi = require("ffi")
local core = require("luacluster.core")

local ffi_str = ffi.string
local type, tostring, tonumber, error = type, tostring, tonumber, error

local _M = {}

pcall(ffi.cdef, [[ /* (pcall: a second load of this file must not raise "attempt to redefine") */
typedef struct lc_shd_value { int type; double num; const char *str; size_t len; int32_t flags; } lc_shd_value;
int lc_shd_get(void *base, const char *key, size_t klen, int stale, lc_shd_value *v, int *is_stale);
int lc_shd_store(void *base, int op, const char *key, size_t klen, const lc_shd_value *v,
                 int64_t exptime_ms, int *forcible);
int lc_shd_incr(void *base, const char *key, size_t klen, double *value, int has_init,
                double init, int64_t init_ttl_ms, int *forcible);
]])

-- runtime/shdict.h's codes (and the UV_E* codes a store returns) -> OpenResty's strings
local ERR = {
  [1] = "not found", [2] = "exists", [3] = "no memory", [4] = "not a number", [5] = "value not a list",
  [6] = "value is a list", [-12] = "no memory", [-16] = "timeout",
}
local SET, ADD, REPLACE, SAFE = 0, 1, 2, 4


local function errstr(rc)
  return ERR[rc] or "error " .. tostring(rc)
end


-- -> true when the methods were replaced
function _M.install()
  local ok, S = pcall(function()
    local C = ffi.C
    local _ = C.lc_shd_get -- the executable's own symbols (it exports them)
    return C
  end)
  if not ok then
    return false
  end
  local methods = core.shdict_methods()
  local val = ffi.new("lc_shd_value")
  local is_stale = ffi.new("int[1]")
  local forcible = ffi.new("int[1]")
  local num = ffi.new("double[1]")
  local bases = setmetatable({}, { __mode = "k" }) -- dict -> its region's address

  local function base_of(dict)
    local b = bases[dict]
    if b == nil then
      if type(dict) ~= "userdata" then
        error('bad "zone" argument', 3)
      end
      -- (a cdata pointer: the compiler does not pass a light userdata to a void * argument)
      b = ffi.cast("void *", core.shdict_base(dict)) -- raises for any other userdata
      bases[dict] = b
    end
    return b
  end

  -- key -> key, len | nil, err (as lua-resty-core checks it)
  local function check_key(key)
    if key == nil then
      return nil, "nil key"
    end
    if type(key) ~= "string" then
      key = tostring(key)
    end
    local klen = #key
    if klen == 0 then
      return nil, "empty key"
    elseif klen > 65535 then
      return nil, "key too long"
    end
    return key, klen
  end

  -- dict, key -> base, key, len | nil, err
  local function dict_key(dict, key)
    local base = base_of(dict)
    local klen
    key, klen = check_key(key)
    if not key then
      return nil, klen
    end
    return base, key, klen
  end

  local function get_impl(dict, key, stale)
    local base, klen
    base, key, klen = dict_key(dict, key)
    if not base then
      return nil, key
    end
    local rc = S.lc_shd_get(base, key, klen, stale, val, is_stale)
    if rc ~= 0 then
      return nil, errstr(rc)
    end
    local typ = val.type
    if typ == 0 then
      return nil
    end
    local v
    if typ == 4 then
      v = ffi_str(val.str, val.len)
    elseif typ == 3 then
      v = tonumber(val.num)
    else
      v = val.num ~= 0
    end
    local flags = tonumber(val.flags)
    if stale == 0 then
      if flags ~= 0 then
        return v, flags
      end
      return v
    end
    if flags == 0 then
      flags = nil
    end
    return v, flags, is_stale[0] == 1
  end

  function methods.get(dict, key)
    return get_impl(dict, key, 0)
  end

  function methods.get_stale(dict, key)
    return get_impl(dict, key, 1)
  end

  local function store(dict, op, key, value, exptime, flags)
    local base = base_of(dict)
    if not exptime then
      exptime = 0
    else
      exptime = tonumber(exptime)
      if not exptime or exptime < 0 then
        error('bad "exptime" argument', 3)
      end
    end
    if not flags then
      flags = 0
    elseif type(flags) ~= "number" then
      error('bad "flags" argument', 3)
    end
    local klen
    key, klen = check_key(key)
    if not key then
      return nil, klen
    end
    local t = type(value)
    if t == "string" then
      val.type = 4
      val.str = value
      val.len = #value
    elseif t == "number" then
      val.type = 3
      val.num = value
    elseif value == nil then
      if op ~= SET then
        return false, "attempt to add or replace nil values", false
      end
      val.type = 0
    elseif t == "boolean" then
      val.type = 1
      val.num = value and 1 or 0
    else
      return nil, "bad value type"
    end
    val.flags = flags
    local rc = S.lc_shd_store(base, op, key, klen, val, exptime * 1000, forcible)
    val.str = nil
    if rc == 0 then
      return true, nil, forcible[0] == 1
    end
    return false, errstr(rc), forcible[0] == 1
  end

  for name, op in pairs({ set = SET, safe_set = SET + SAFE, add = ADD, safe_add = ADD + SAFE, replace = REPLACE }) do
    methods[name] = function(dict, key, value, exptime, flags)
      return store(dict, op, key, value, exptime, flags)
    end
  end

  function methods.delete(dict, key)
    return store(dict, SET, key, nil)
  end

  local function number_arg(v, what)
    local n = tonumber(v)
    if n == nil or (type(v) ~= "number" and type(v) ~= "string") then
      error("bad " .. what .. " arg: number expected, got " .. type(v), 3)
    end
    return n
  end

  function methods.incr(dict, key, value, init, init_ttl)
    local base, klen
    base, key, klen = dict_key(dict, key)
    if not base then
      return nil, key
    end
    if type(value) ~= "number" then
      value = number_arg(value, "value")
    end
    local has_init = 0
    if init then
      if type(init) ~= "number" then
        init = number_arg(init, "init")
      end
      has_init = 1
    else
      init = 0
    end
    if init_ttl ~= nil then
      if type(init_ttl) ~= "number" then
        init_ttl = number_arg(init_ttl, "init_ttl")
      end
      if init_ttl < 0 then
        error('bad "init_ttl" argument', 2)
      end
      if has_init == 0 then
        error('must provide "init" when providing "init_ttl"', 2)
      end
    else
      init_ttl = 0
    end
    num[0] = value
    local rc = S.lc_shd_incr(base, key, klen, num, has_init, init, init_ttl * 1000, forcible)
    if rc ~= 0 then
      return nil, errstr(rc)
    end
    if has_init == 0 then
      return tonumber(num[0])
    end
    return tonumber(num[0]), nil, forcible[0] == 1
  end

  return true
end


return _M
