-- The calls of a shared dictionary that must answer exactly as OpenResty's ngx.shared.DICT:
-- run(dict, sleep) makes each call on `dict` (a fresh, empty dictionary of 1m) and returns one
-- line per case, "name => results" (spec/ngx_cases.lua's runner and serializer).
-- spec/shdict_spec.lua runs the same file in Debian's nginx (lua_shared_dict, content_by_lua)
-- and in a luacluster worker (luacluster.shared), and compares the lines.
-- Plain Lua 5.1 / LuaJIT, no luacluster module: nginx loads it too.
local runner = require("ngx_cases")

local cases = {}

local function add(name, fn)
  cases[#cases + 1] = { name, fn }
end

local function round(x)
  return type(x) == "number" and math.floor(x + 0.5) or x
end


-- ---- set, get, flags ----

add("set string", function(d) return d:set("s", "hello") end)
add("get string", function(d) return d:get("s") end)
add("set number", function(d) return d:set("n", 3.25) end)
add("get number", function(d) return d:get("n") end)
add("set true", function(d) return d:set("t", true) end)
add("get true", function(d) return d:get("t") end)
add("set false", function(d) return d:set("f", false) end)
add("get false", function(d) return d:get("f") end)
add("set empty string", function(d) return d:set("e", "") end)
add("get empty string", function(d) return d:get("e") end)
add("set binary", function(d) return d:set("b", "a\0b\255") end)
add("get binary", function(d) return d:get("b") end)
add("set big", function(d) return d:set("big", string.rep("x", 100000)) end)
add("get big", function(d) local v = d:get("big") return #v, v:sub(1, 3) end)
add("overwrite with another type", function(d) d:set("s", 42) return d:get("s") end)
add("set with flags", function(d) return d:set("fl", "v", 0, 7) end)
add("get with flags", function(d) return d:get("fl") end)
add("get with flags 0", function(d) d:set("fl0", "v", 0, 0) return d:get("fl0") end)
add("get missing", function(d) return d:get("missing") end)
add("get nil key", function(d) return d:get(nil) end)
add("get empty key", function(d) return d:get("") end)
add("get long key", function(d) return d:get(string.rep("k", 65536)) end)
add("set long key", function(d) return d:set(string.rep("k", 65536), 1) end)
add("key of 65535 bytes", function(d) local k = string.rep("k", 65535) d:set(k, 1) return d:get(k) end)
add("number key", function(d) d:set(12, "twelve") return d:get("12"), d:get(12) end)
add("set bad value type", function(d) return d:set("x", {}) end)
add("set function value", function(d) return d:set("x", print) end)
add("set nil key", function(d) return d:set(nil, 1) end)
add("set empty key", function(d) return d:set("", 1) end)
add("set negative exptime", function(d) return d:set("x", 1, -1) end)
add("set nil deletes", function(d) d:set("gone", 1) local a, b, c = d:set("gone", nil) return a, b, c, d:get("gone") end)
add("delete", function(d) d:set("del", 1) local a, b, c = d:delete("del") return a, b, c, d:get("del") end)
add("delete missing", function(d) return d:delete("never") end)
add("get_stale live", function(d) d:set("st", "v", 0, 3) return d:get_stale("st") end)
add("get_stale missing", function(d) return d:get_stale("nope") end)
add("get_stale flags 0", function(d) d:set("st0", "v") return d:get_stale("st0") end)
add("large number", function(d) d:set("ln", 2 ^ 53 + 0.5) return d:get("ln") end)
add("negative number", function(d) d:set("neg", -1e-300) return d:get("neg") end)
add("infinity", function(d) d:set("inf", math.huge) return d:get("inf") end)
add("not a zone", function(d) return d.get(nil, "k") end)

-- ---- add, replace, safe_ ----

add("add new", function(d) return d:add("a1", 1) end)
add("add exists", function(d) return d:add("a1", 2) end)
add("add keeps old", function(d) return d:get("a1") end)
add("safe_add exists", function(d) return d:safe_add("a1", 2) end)
add("safe_add new", function(d) return d:safe_add("a2", 2) end)
add("add nil value", function(d) return d:add("a3", nil) end)
add("replace missing", function(d) return d:replace("r1", 1) end)
add("replace existing", function(d) d:set("r2", 1) local a, b, c = d:replace("r2", "two") return a, b, c, d:get("r2") end)
add("replace nil value", function(d) return d:replace("r2", nil) end)
add("safe_set", function(d) return d:safe_set("ss", "v") end)
add("add bad value", function(d) return d:add("a4", {}) end)

-- ---- incr ----

add("incr missing", function(d) return d:incr("i1", 1) end)
add("incr init", function(d) return d:incr("i1", 1, 10) end)
add("incr existing", function(d) return d:incr("i1", 5) end)
add("incr existing with init", function(d) return d:incr("i1", 1, 100) end)
add("incr negative float", function(d) return d:incr("i1", -0.5) end)
add("incr string number", function(d) return d:incr("i1", "2") end)
add("incr not a number", function(d) d:set("istr", "x") return d:incr("istr", 1) end)
add("incr boolean", function(d) d:set("ibool", true) return d:incr("ibool", 1) end)
add("incr init string number", function(d) return d:incr("i2", 1, "5") end)
add("incr bad init", function(d) return d:incr("i3", 1, "x") end)
add("incr init_ttl without init", function(d) return d:incr("i3", 1, nil, 10) end)
add("incr negative init_ttl", function(d) return d:incr("i3", 1, 0, -1) end)
add("incr init_ttl", function(d) local v = d:incr("i4", 1, 0, 10) return v, round(d:ttl("i4")) end)
add("incr keeps ttl", function(d) d:incr("i4", 1) return d:get("i4"), round(d:ttl("i4")) end)
add("incr nil key", function(d) return d:incr(nil, 1) end)
add("incr on a list", function(d) d:lpush("il", 1) return d:incr("il", 1) end)

-- ---- lists ----

add("lpush", function(d) return d:lpush("l", "a") end)
add("lpush again", function(d) return d:lpush("l", "b") end)
add("rpush", function(d) return d:rpush("l", 3) end)
add("llen", function(d) return d:llen("l") end)
add("get a list", function(d) return d:get("l") end)
add("get_stale a list", function(d) return d:get_stale("l") end)
add("lpop", function(d) return d:lpop("l") end)
add("rpop", function(d) return d:rpop("l") end)
add("rpop last", function(d) return d:rpop("l") end)
add("list gone when empty", function(d) return d:llen("l"), d:lpop("l"), d:get("l") end)
add("llen missing", function(d) return d:llen("nol") end)
add("lpop missing", function(d) return d:lpop("nol") end)
add("lpush not a list", function(d) d:set("nl", "str") return d:lpush("nl", 1) end)
add("lpop not a list", function(d) return d:lpop("nl") end)
add("llen not a list", function(d) return d:llen("nl") end)
add("lpush bad value", function(d) return d:lpush("l2", true) end)
add("lpush nil value", function(d) return d:lpush("l2", nil) end)
add("lpush nil key", function(d) return d:lpush(nil, 1) end)
add("lpush empty key", function(d) return d:lpush("", 1) end)
add("lpush too few arguments", function(d) return d:lpush("l2") end)
add("lpop too many arguments", function(d) return d:lpop("l2", 1) end)
add("set replaces a list", function(d) d:rpush("l3", "x") d:set("l3", "s") return d:get("l3"), d:llen("l3") end)
add("delete a list", function(d) d:rpush("l4", "x") d:rpush("l4", "y") d:delete("l4") return d:llen("l4"), d:lpop("l4") end)
add("list of many", function(d)
  for i = 1, 1000 do d:rpush("l5", i) end
  local sum = 0
  for _ = 1, 500 do sum = sum + d:lpop("l5") end
  return d:llen("l5"), sum, d:rpop("l5")
end)
add("add on a list", function(d) return d:add("l5", 1) end)
add("replace a list", function(d) return d:replace("l5", 1), d:get("l5") end)

-- ---- ttl, expire ----

add("ttl no expiry", function(d) d:set("t0", 1) return d:ttl("t0") end)
add("ttl", function(d) d:set("t1", 1, 10) return round(d:ttl("t1")) end)
add("ttl missing", function(d) return d:ttl("t-missing") end)
add("ttl nil key", function(d) return d:ttl(nil) end)
add("expire", function(d) local ok, err = d:expire("t0", 5) return ok, err, round(d:ttl("t0")) end)
add("expire 0 clears", function(d) local ok = d:expire("t0", 0) return ok, d:ttl("t0") end)
add("expire missing", function(d) return d:expire("t-missing", 5) end)
add("expire without exptime", function(d) return d:expire("t0") end)
add("expiry", function(d, sleep)
  d:set("x1", "old", 0.1, 5)
  d:lpush("xl", "v")
  d:expire("xl", 0.1)
  d:set("x2", "keep", 100)
  sleep(0.3)
  return d:get("x1"), d:llen("xl"), d:get("x2")
end)
add("get_stale expired", function(d) return d:get_stale("x1") end)
add("add over expired", function(d) local a, b, c = d:add("x1", "new") return a, b, c, d:get("x1") end)
add("replace expired", function(d, sleep) d:set("x3", 1, 0.1) sleep(0.3) return d:replace("x3", 2) end)
add("incr expired", function(d, sleep) d:set("x4", 10, 0.1) sleep(0.3) return d:incr("x4", 1), d:incr("x4", 1, 5) end)
add("incr expired ttl", function(d) return d:ttl("x4") end)
add("lpush expired", function(d, sleep) d:rpush("x5", 1) d:rpush("x5", 2) d:expire("x5", 0.1) sleep(0.3) return d:lpush("x5", 3), d:llen("x5") end)

-- ---- keys, flush ----

add("get_keys", function(d) local k = d:get_keys(0) table.sort(k) return #k, k[1], k[#k] end)
add("get_keys max", function(d) return #d:get_keys(3) end)
add("get_keys default", function(d) for i = 1, 1100 do d:set("gk" .. i, i) end return #d:get_keys() end)
add("get_keys order", function(d) d:flush_all() d:flush_expired() d:set("o1", 1) d:set("o2", 2) d:set("o3", 3) d:get("o1") return d:get_keys() end)
add("flush_all", function(d) return d:flush_all() end)
add("after flush_all", function(d) return d:get("o1"), #d:get_keys(0), d:get_stale("o2") end)
add("flush_expired max", function(d) return d:flush_expired(1) end)
add("flush_expired", function(d) return d:flush_expired() end)
add("flush_expired none", function(d) return d:flush_expired() end)
add("get_keys too many args", function(d) return d:get_keys(1, 2) end)
add("capacity", function(d) return d:capacity() end)
add("free_space is a number", function(d) return type(d:free_space()) end)
add("ttl after flush", function(d) return d:ttl("o1") end)


local function run(dict, sleep)
  return runner.run_list(cases, dict, sleep)
end


return { run = run }
