-- The calls of luacluster.ngx that must answer exactly as OpenResty's: run(ngx) makes each
-- call and returns one line per call, "name => results" (every result serialized, errors as
-- "error: message" without their file:line). spec/ngx_compat_spec.lua runs the same file in
-- Debian's nginx (content_by_lua) and in-process on luacluster.ngx, and compares the lines;
-- spec/ngx_pure_spec.lua asserts what differs on purpose (PCRE2's own messages).
-- Plain Lua 5.1 / LuaJIT, no luacluster module: nginx loads it too.
local cases = {}

local function add(name, fn)
  cases[#cases + 1] = { name, fn }
end


-- ---- ngx.re.match: lua-nginx-module's README examples first ----

add("match digits", function(ngx) return ngx.re.match("hello, 1234", "[0-9]+") end)
add("match group", function(ngx) return ngx.re.match("hello, 1234", "([0-9])[0-9]+") end)
add("match named", function(ngx) return ngx.re.match("hello, 1234", "([0-9])(?<remaining>[0-9]+)") end)
add("match unmatched groups are false", function(ngx)
  return ngx.re.match("hello, world", "(world)|(hello)|(?<named>howdy)")
end)
add("match D duplicate names", function(ngx)
  return ngx.re.match("hello, world", [[(?<named>\w+), (?<named>\w+)]], "D")
end)
add("match D unmatched duplicate", function(ngx)
  return ngx.re.match("hello", [[(?<n>x)?(?<n>hello)]], "D")
end)
add("match ix", function(ngx) return ngx.re.match("hello, world", "HEL LO", "ix") end)
add("match iu", function(ngx) return ngx.re.match("hello, 美好生活", "HELLO, (.{2})", "iu") end)
add("match without u counts bytes", function(ngx) return ngx.re.match("hello, 美好生活", "HELLO, (.{2})", "i") end)
add("match ctx", function(ngx)
  local ctx = {}
  local m = ngx.re.match("1234, hello", "[0-9]+", "", ctx)
  return m, ctx.pos
end)
add("match ctx pos", function(ngx)
  local ctx = { pos = 2 }
  local m = ngx.re.match("1234, hello", "[0-9]+", "", ctx)
  return m, ctx.pos
end)
add("match ctx pos 0", function(ngx)
  local ctx = { pos = 0 }
  local m = ngx.re.match("1234, hello", "[0-9]+", "", ctx)
  return m, ctx.pos
end)
add("match ctx left alone without a match", function(ngx)
  local ctx = { pos = 3 }
  local m = ngx.re.match("1234, hello", "x", "", ctx)
  return m, ctx.pos
end)
add("match a anchors", function(ngx) return ngx.re.match("hello 123", "[0-9]+", "a") end)
add("match a at ctx.pos", function(ngx)
  local ctx = { pos = 7 }
  local m = ngx.re.match("hello 123", "[0-9]+", "a", ctx)
  return m, ctx.pos
end)
add("match d longest", function(ngx) return ngx.re.match("abcd", "a|ab|abc", "d") end)
add("match d has no groups", function(ngx) return ngx.re.match("abcd", "(a)(b)?", "d") end)
add("match without d", function(ngx) return ngx.re.match("abcd", "a|ab|abc") end)
add("match s", function(ngx) return ngx.re.match("a\nb", "a.b", "s") end)
add("match no s", function(ngx) return ngx.re.match("a\nb", "a.b") end)
add("match m", function(ngx) return ngx.re.match("a\nb", "^b", "m") end)
add("match no m", function(ngx) return ngx.re.match("a\nb", "^b") end)
add("match J empty class", function(ngx) return ngx.re.match("a", "[]|a", "J") end)
add("match jo", function(ngx) return ngx.re.match("hello, 1234", "([0-9]+)", "jo") end)
add("match o twice", function(ngx)
  local a = ngx.re.match("a1", "[0-9]", "o")
  local b = ngx.re.match("b2", "[0-9]", "o")
  return a, b
end)
add("match optional groups", function(ngx) return ngx.re.match("ab", "(a)(x)?(b)(y)?") end)
add("match no match", function(ngx) return ngx.re.match("hello", "[0-9]+") end)
add("match number subject", function(ngx) return ngx.re.match(12345, "3(4)") end)
add("match res table", function(ngx)
  local res = {}
  local m = ngx.re.match("k=v", "(\\w)=(\\w)", "", nil, res)
  return m == res, res
end)
add("match empty pattern", function(ngx) return ngx.re.match("abc", "") end)
add("match bad regex", function(ngx)
  local m, err = ngx.re.match("abc", "(abc")
  return m, type(err)
end)
add("match unknown flag", function(ngx) return ngx.re.match("abc", "b", "z") end)
add("match unknown flag among others", function(ngx) return ngx.re.match("abc", "b", "ijq") end)

-- ---- ngx.re.find ----

add("find example", function(ngx) return ngx.re.find("hello, 1234", "([0-9]+)", "jo") end)
add("find nth 2", function(ngx) return ngx.re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil, 2) end)
add("find nth out of bound", function(ngx) return ngx.re.find("hello, 1234", "([0-9])([0-9]+)", "", nil, 3) end)
add("find nth unmatched", function(ngx) return ngx.re.find("hello", "(x)?(hello)", "", nil, 1) end)
add("find nth past rc", function(ngx) return ngx.re.find("hello", "(hello)(x)?", "", nil, 2) end)
add("find nth negative", function(ngx) return ngx.re.find("hello", "l+", "", nil, -1) end)
add("find no match", function(ngx) return ngx.re.find("hello", "[0-9]") end)
add("find ctx", function(ngx)
  local ctx = { pos = 3 }
  local from, to = ngx.re.find("a1b2c3", "[0-9]", "", ctx)
  return from, to, ctx.pos
end)
add("find empty match", function(ngx) return ngx.re.find("abc", "x*") end)
add("find bad regex", function(ngx)
  local from, to, err = ngx.re.find("abc", "[a")
  return from, to, type(err)
end)

-- ---- ngx.re.gmatch ----

local function all(it, err)
  if not it then
    return nil, err
  end
  local list = {}
  while true do
    local m, e = it()
    if e then
      list[#list + 1] = "error"
      break
    end
    if not m then
      break
    end
    list[#list + 1] = m
  end
  local after = it() -- an exhausted iterator stays exhausted
  return list, after
end

add("gmatch example", function(ngx) return all(ngx.re.gmatch("hello, world!", "([a-z]+)", "i")) end)
add("gmatch empty matches", function(ngx) return all(ngx.re.gmatch("abc", "x*")) end)
add("gmatch mixed empty matches", function(ngx) return all(ngx.re.gmatch("baaac", "a*")) end)
add("gmatch empty subject", function(ngx) return all(ngx.re.gmatch("", "x*")) end)
add("gmatch named", function(ngx) return all(ngx.re.gmatch("a=1, b=2", [[(?<k>\w)=(?<v>\d)]], "o")) end)
add("gmatch bad regex", function(ngx)
  local it, err = ngx.re.gmatch("abc", "a{2,1}")
  return it, type(err)
end)

-- ---- ngx.re.sub / gsub ----

add("sub template", function(ngx) return ngx.re.sub("hello, 1234", "([0-9])[0-9]", "[$0][$1]") end)
add("sub braces", function(ngx) return ngx.re.sub("hello, 1234", "[0-9]", "${0}00") end)
add("sub dollar", function(ngx) return ngx.re.sub("hello, 1234", "[0-9]", "$$") end)
add("sub function", function(ngx)
  return ngx.re.sub("hello, 1234", "( [0-9] ) [0-9]", function(m) return "[" .. m[0] .. "][" .. m[1] .. "]" end, "x")
end)
add("sub function dollar not special", function(ngx)
  return ngx.re.sub("hello", "l", function() return "$0$$" end)
end)
add("sub function nil", function(ngx) return ngx.re.sub("hello", "l", function() end) end)
add("sub no match", function(ngx) return ngx.re.sub("hello", "[0-9]", "x") end)
add("sub number replace", function(ngx) return ngx.re.sub("hello", "l", 5) end)
add("sub capture past the groups", function(ngx) return ngx.re.sub("hello", "(l)", "<$1|$2|$10>") end)
add("sub multi-digit capture", function(ngx)
  return ngx.re.sub("abcdefghijk", "(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)", "$11-${1}1")
end)
add("sub unmatched capture", function(ngx) return ngx.re.sub("hello", "(x)?(h)", "[$1$2]") end)
add("sub digits after capture", function(ngx) return ngx.re.sub("hello", "(h)", "$1a$1-") end)
add("sub bad template end", function(ngx) return ngx.re.sub("hello", "h", "x$") end)
add("sub bad template name", function(ngx) return ngx.re.sub("hello", "(?<n>h)", "${n}") end)
add("sub bad template bare name", function(ngx) return ngx.re.sub("hello", "h", "$a") end)
add("sub bad template open brace", function(ngx) return ngx.re.sub("hello", "h", "${1") end)
add("sub bad template empty braces", function(ngx) return ngx.re.sub("hello", "h", "${}") end)
add("sub bad template dash", function(ngx) return ngx.re.sub("hello", "h", "$-") end)
add("sub bad regex wins over a bad template", function(ngx)
  local s, n, err = ngx.re.sub("hello", "(", "$")
  return s, n, type(err)
end)
add("sub anchored", function(ngx) return ngx.re.sub("hello", "l", "L", "a") end)
add("gsub template", function(ngx) return ngx.re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]", "i") end)
add("gsub function", function(ngx)
  return ngx.re.gsub("hello, world", "([a-z])[a-z]+", function(m) return "[" .. m[0] .. "," .. m[1] .. "]" end, "i")
end)
add("gsub empty matches", function(ngx) return ngx.re.gsub("abc", "x*", "-") end)
add("gsub mixed empty matches", function(ngx) return ngx.re.gsub("baaac", "a*", "-") end)
add("gsub empty subject", function(ngx) return ngx.re.gsub("", "x*", "-") end)
add("gsub no match", function(ngx) return ngx.re.gsub("hello", "z", "-") end)
add("gsub function sees named captures", function(ngx)
  return ngx.re.gsub("a=1,b=2", [[(?<k>\w)=(?<v>\d)]], function(m) return m.v .. "=" .. m.k end)
end)
add("gsub function calls ngx.re", function(ngx)
  return ngx.re.gsub("ab12", "[a-z]", function(m)
    local inner = ngx.re.match(m[0], "[a-z]", "o")
    return inner[0]:upper()
  end, "o")
end)
add("gsub u", function(ngx) return ngx.re.gsub("美好", ".", "<$0>", "u") end)

-- ---- escaping ----

local function all_bytes()
  local t = {}
  for b = 0, 255 do
    t[#t + 1] = string.char(b)
  end
  return table.concat(t)
end

for _, ty in ipairs({ 0, 1, 2, 3, 4, 5, 6 }) do
  add("escape_uri type " .. ty, function(ngx) return ngx.escape_uri(all_bytes(), ty) end)
end
add("escape_uri default", function(ngx) return ngx.escape_uri(all_bytes()) end)
add("escape_uri nil", function(ngx) return ngx.escape_uri(nil) end)
add("escape_uri number", function(ngx) return ngx.escape_uri(12.5) end)
add("escape_uri type out of range", function(ngx) return ngx.escape_uri("a b", 7) end)
add("escape_uri type not a number", function(ngx) return ngx.escape_uri("a b", "2") end)
add("unescape_uri example", function(ngx) return ngx.unescape_uri("b%20r56+7") end)
add("unescape_uri bad escapes", function(ngx) return ngx.unescape_uri("%zz%4%%41%4a%4A%") end)
add("unescape_uri question mark", function(ngx) return ngx.unescape_uri("a%3Fb?c") end)
add("unescape_uri round trip", function(ngx)
  local s = all_bytes()
  return ngx.unescape_uri(ngx.escape_uri(s)) == s
end)
add("unescape_uri nil", function(ngx) return ngx.unescape_uri(nil) end)

-- ---- base64 and digests ----

for _, s in ipairs({ "", "a", "ab", "abc", "abcd", "hello, world" }) do
  add("encode_base64 " .. s, function(ngx) return ngx.encode_base64(s), ngx.encode_base64(s, true) end)
end
add("encode_base64 all bytes", function(ngx) return ngx.encode_base64(all_bytes()) end)
add("encode_base64 nil", function(ngx) return ngx.encode_base64(nil) end)
add("encode_base64 number", function(ngx) return ngx.encode_base64(42) end)
add("encode_base64 bad no_padding", function(ngx) return ngx.encode_base64("a", 1) end)
for _, s in ipairs({ "aGVsbG8=", "aGVsbG8", "YQ==", "YQ", "YR", "Y", "YQ=garbage", "YQ=!", "Y$==", "YWJj\n",
  "====", "", "YW Jj", "YWJjZA==", "YWJjZA", "-_8", "+/8=", "YQ===" }) do
  add("decode_base64 " .. s:gsub("\n", "\\n"), function(ngx) return ngx.decode_base64(s) end)
end
add("decode_base64 round trip", function(ngx)
  local s = all_bytes()
  return ngx.decode_base64(ngx.encode_base64(s)) == s, ngx.decode_base64(ngx.encode_base64(s, true)) == s
end)
add("decode_base64 not a string", function(ngx) return ngx.decode_base64(42) end)
add("md5", function(ngx) return ngx.md5("hello"), ngx.md5(""), ngx.md5(nil), ngx.md5(42) end)
add("md5_bin", function(ngx) return ngx.md5_bin("hello") end)
add("sha1_bin", function(ngx) return ngx.sha1_bin("abc"), ngx.sha1_bin("") end)

-- ---- constants and log arguments ----

add("null", function(ngx) return type(ngx.null), ngx.null == ngx.null, ngx.null ~= nil end)
add("log levels", function(ngx)
  return ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT, ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG
end)
add("core constants", function(ngx) return ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED end)
add("subsystem", function(ngx) return ngx.config.subsystem end) -- (Debian's nginx is a debug build)
-- (not tail calls: lua-nginx-module's argument errors name the function only from a caller's frame)
add("log bad level", function(ngx) local r = ngx.log(9, "x") return r end)
add("log negative level", function(ngx) local r = ngx.log(-1, "x") return r end)
add("log level not a number", function(ngx) local r = ngx.log("x", "y") return r end)
add("log table without tostring", function(ngx) local r = ngx.log(ngx.DEBUG, "a", {}) return r end)
add("log function", function(ngx) local r = ngx.log(ngx.DEBUG, print) return r end)
add("log accepts", function(ngx)
  return ngx.log(ngx.DEBUG, "s", 1, 2.5, nil, true, false, ngx.null, setmetatable({}, { __tostring = function() return "t" end }))
end)
add("sleep arguments", function(ngx) local r = ngx.sleep() return r end)
add("sleep two arguments", function(ngx) local r = ngx.sleep(1, 2) return r end)
add("timer.at arguments", function(ngx) local r = ngx.timer.at(1) return r end)
add("timer.at not a function", function(ngx) local r = ngx.timer.at(1, "f") return r end)


-- ---- the runner ----

local function ser(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" then
    return (string.format("%q", v):gsub("\n", "n"))
  elseif t == "table" then
    if depth > 3 then
      return "{...}"
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
      if type(a) ~= type(b) then
        return type(a) < type(b)
      end
      return a < b
    end)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = "[" .. ser(k, depth + 1) .. "]=" .. ser(v[k], depth + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "userdata" then
    return "userdata"
  elseif t == "function" then
    return "function"
  end
  return tostring(v)
end


-- the lines of a list of cases { { name, fn }, ... }, each called as fn(...)
local function run_list(list, ...)
  local lines = {}
  for _, c in ipairs(list) do
    local r = { n = 0 }
    local function pack(...)
      r = { n = select("#", ...), ... }
    end
    pack(pcall(c[2], ...))
    local text
    if r[1] then
      local parts = {}
      for i = 2, r.n do
        parts[#parts + 1] = ser(r[i])
      end
      text = table.concat(parts, ", ")
    else
      -- the message without the file:line of where it was raised
      text = "error: " .. tostring(r[2]):gsub("^[^\n]-:%d+: ", "")
    end
    lines[#lines + 1] = c[1] .. " => " .. text
  end
  return lines
end


local function run(ngx)
  return run_list(cases, ngx)
end


return { run = run, run_list = run_list, ser = ser }
