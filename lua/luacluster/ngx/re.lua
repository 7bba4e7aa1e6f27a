-- luacluster.ngx.re: OpenResty's ngx.re (match, find, gmatch, sub, gsub) on PCRE2
-- (runtime/regex.c), with lua-nginx-module 0.10.26's option letters, captures tables, return
-- values and error strings. The `o` option keeps the compiled regex in a per-process cache of
-- at most 1024 entries (nginx's lua_regex_cache_max_entries default), least recently used
-- out first; any other regex is freed as soon as the call is done with it.
local core = require("luacluster.core")
local lru = require("luacluster.lib.lru")

local regex_compile = core.regex_compile
local byte, sub, fmt, find = string.byte, string.sub, string.format, string.find
local concat = table.concat
local type, tostring, tonumber, error = type, tostring, tonumber, error

local _M = {}

local CACHE_MAX = 1024
local ERR_MAX = 255 -- lua-resty-core's MAX_ERR_MSG_LEN (256) less its NUL
local NOMATCH = -1  -- PCRE2_ERROR_NOMATCH

local cache = lru.new(CACHE_MAX)
local ov = {} -- the offsets of the last exec: ov[2i+1], ov[2i+2] = group i's from, to (0-based)


-- ---- options ----

local NO_OPTS = { letters = "", once = false, jit = false, dfa = false, no_utf_check = false, dup = false }
local parsed = {}   -- option string -> its reading (a few distinct strings in any program)
local nparsed = 0

-- the letters PCRE2 compiles with (runtime/regex.c), and what the others do
local COMPILE_LETTERS = { i = "i", m = "m", s = "s", x = "x", u = "u", a = "a", J = "J", U = "u", D = "D" }


-- level: of the ngx.re function's caller, for the error
local function parse_opts(opts, level)
  local p = parsed[opts]
  if p then
    return p
  end
  if type(opts) ~= "string" then
    error("bad argument: options must be a string, got " .. type(opts), level)
  end
  p = { once = false, jit = false, dfa = false, no_utf_check = false, dup = false }
  local letters = {}
  for i = 1, #opts do
    local c = sub(opts, i, i)
    if c == "o" then
      p.once = true
    elseif c == "j" then
      p.jit = true
    elseif c == "d" then
      p.dfa = true
    elseif COMPILE_LETTERS[c] then
      letters[#letters + 1] = COMPILE_LETTERS[c]
      if c == "U" then
        p.no_utf_check = true
      elseif c == "D" then
        p.dup = true
      end
    else
      error(fmt('unknown flag "%s" (flags "%s")', c, opts), level)
    end
  end
  p.letters = concat(letters)
  if nparsed < 256 then
    nparsed = nparsed + 1
    parsed[opts] = p
  end
  return p
end


-- ---- compiling ----

-- OpenResty's text for a compile error: PCRE2's message, the pattern, and the pattern from
-- the offset where PCRE2 stopped (when that is not its end), cut at lua-resty-core's length
local function compile_error(regex, msg, offset)
  local err
  if offset == #regex then
    err = fmt('pcre2_compile() failed: %s in "%s"', msg, regex)
  else
    local rest = sub(regex, offset + 1)
    rest = rest:match("^[^%z]*") -- a C string: up to a NUL
    err = fmt('pcre2_compile() failed: %s in "%s" at "%s"', msg, regex, rest)
  end
  return sub(err, 1, ERR_MAX)
end


-- -> compiled | nil, err; compiled = { re =, ncap =, names =, opts = (parsed) }
local function compile(regex, opts, level)
  if type(regex) ~= "string" then
    error("bad argument: regex must be a string, got " .. type(regex), level)
  end
  local p = opts and parse_opts(opts, level + 1) or NO_OPTS
  local key
  if p.once then
    key = regex .. "\0" .. opts
    local c = cache:get(key)
    if c then
      return c
    end
  end
  local re, msg, offset = regex_compile(regex, p.letters, p.jit)
  if not re then
    return nil, compile_error(regex, msg, offset)
  end
  local ncap, names = re:info()
  if p.dfa then
    ncap = 0 -- the DFA reports the longest match only, as OpenResty's
  end
  local c = { re = re, ncap = ncap, names = names, nnames = #names, opts = p }
  if p.once then
    cache:set(key, c)
  end
  return c
end


-- done with a regex this call compiled: free it now unless the cache keeps it
local function release(c)
  if not c.opts.once then
    c.re:free()
  end
end


local function exec(c, subj, pos)
  local p = c.opts
  return c.re:exec(subj, pos, p.dfa, p.no_utf_check, ov)
end


local function exec_error(rc)
  return "pcre_exec() failed: " .. rc
end


-- ---- the captures table ----

local function collect(c, subj, res)
  res = res or {}
  for i = 0, c.ncap do
    local from = ov[2 * i + 1]
    if from >= 0 then
      res[i] = sub(subj, from + 1, ov[2 * i + 2])
    else
      res[i] = false
    end
  end
  if c.nnames > 0 then
    local names, dup = c.names, c.opts.dup
    for k = 1, c.nnames do
      local n, name = names[k][1], names[k][2]
      local cap = res[n]
      if dup then
        if cap then -- unmatched groups (false) are not collected
          local list = res[name]
          if list then
            list[#list + 1] = cap
          else
            res[name] = { cap }
          end
        end
      else
        res[name] = cap
      end
    end
  end
  return res
end


-- ---- match, find, gmatch ----

local function start_pos(ctx)
  if not ctx then
    return 0
  end
  local pos = ctx.pos
  if not pos or pos <= 0 then
    return 0
  end
  return pos - 1
end


-- captures, err = ngx.re.match(subject, regex, options?, ctx?, res_table?)
function _M.match(subj, regex, opts, ctx, res)
  subj = tostring(subj)
  local c, err = compile(regex, opts, 3)
  if not c then
    return nil, err
  end
  local rc = exec(c, subj, start_pos(ctx))
  if rc < 0 then
    release(c)
    if rc == NOMATCH then
      return nil
    end
    return nil, exec_error(rc)
  end
  if ctx then
    ctx.pos = ov[2] + 1
  end
  res = collect(c, subj, res)
  release(c)
  return res
end


-- from, to, err = ngx.re.find(subject, regex, options?, ctx?, nth?)
function _M.find(subj, regex, opts, ctx, nth)
  subj = tostring(subj)
  local c, err = compile(regex, opts, 3)
  if not c then
    return nil, nil, err
  end
  local rc = exec(c, subj, start_pos(ctx))
  release(c)
  if rc < 0 then
    if rc == NOMATCH then
      return nil
    end
    return nil, nil, exec_error(rc)
  end
  if ctx then
    ctx.pos = ov[2] + 1
  end
  if not nth or nth < 0 then
    nth = 0
  end
  if nth > c.ncap then
    return nil, nil, "nth out of bound"
  end
  if nth >= rc then
    return nil, nil
  end
  local from, to = ov[2 * nth + 1] + 1, ov[2 * nth + 2]
  if from < 0 or to < 0 then
    return nil, nil
  end
  return from, to
end


-- iterator, err = ngx.re.gmatch(subject, regex, options?); iterator() -> captures | nil [, err]
function _M.gmatch(subj, regex, opts)
  subj = tostring(subj)
  local c, err = compile(regex, opts, 3)
  if not c then
    return nil, err
  end
  local len, pos = #subj, 0
  local function done()
    if pos then
      release(c)
      pos = nil
    end
  end
  return function()
    if not pos then
      return nil -- exhausted
    end
    local rc = exec(c, subj, pos)
    if rc < 0 then
      done()
      if rc == NOMATCH then
        return nil
      end
      return nil, exec_error(rc)
    end
    local from, to = ov[1], ov[2]
    local res = collect(c, subj)
    if to == from then -- an empty match: the next search starts one byte on
      to = to + 1
      if to > len then
        done()
        return res
      end
    end
    pos = to
    return res
  end
end


-- ---- sub, gsub ----

-- A replacement template: a list of literal strings and capture numbers, as lua-nginx-module
-- compiles it: $N and ${N} (any digits) a numbered capture, $$ a dollar; anything else after
-- a $ (a name included: named captures are not supported there) is an invalid template.
local function parse_template(s)
  local parts, i, n, lit = {}, 1, #s, {}
  while i <= n do
    local c = byte(s, i)
    if c ~= 36 then -- not "$"
      local j = find(s, "$", i, true) or n + 1
      lit[#lit + 1] = sub(s, i, j - 1)
      i = j
    else
      i = i + 1
      if i > n then
        return nil
      end
      c = byte(s, i)
      if c == 36 then
        lit[#lit + 1] = "$"
        i = i + 1
      else
        local bracket = c == 123 -- "{"
        if bracket then
          i = i + 1
          if i > n then
            return nil
          end
        end
        local digits = s:match("^%d+", i)
        if not digits then
          return nil -- "${}" "$-" and the like, or a named capture: not supported
        end
        i = i + #digits
        if bracket then
          if byte(s, i) ~= 125 then -- "}"
            return nil
          end
          i = i + 1
        end
        if #lit > 0 then
          parts[#parts + 1] = concat(lit)
          lit = {}
        end
        parts[#parts + 1] = tonumber(digits)
      end
    end
  end
  if #lit > 0 then
    parts[#parts + 1] = concat(lit)
  end
  return parts
end


-- the template's text for the last match: a capture past rc, or one that took no part, is ""
local function expand(parts, subj, rc, out)
  for k = 1, #parts do
    local part = parts[k]
    if type(part) == "string" then
      out[#out + 1] = part
    elseif part < rc then
      local from = ov[2 * part + 1]
      if from >= 0 then
        out[#out + 1] = sub(subj, from + 1, ov[2 * part + 2])
      end
    end
  end
end


local function substitute(subj, regex, replace, opts, global)
  local c, err = compile(regex, opts, 4)
  if not c then
    return nil, nil, err
  end
  local func, parts = type(replace) == "function" and replace, nil
  if not func then
    parts = parse_template(type(replace) == "string" and replace or tostring(replace))
    if not parts then
      release(c)
      return nil, nil, "failed to compile the replacement template"
    end
  end
  subj = tostring(subj)
  local len, count, pos, cp = #subj, 0, 0, 0
  local out = {}
  while true do
    local rc = exec(c, subj, pos)
    if rc == NOMATCH then
      break
    elseif rc < 0 then
      release(c)
      return nil, nil, exec_error(rc)
    end
    count = count + 1
    local from, to = ov[1], ov[2] -- read before the function runs: it may use ngx.re too
    if from > cp then
      out[#out + 1] = sub(subj, cp + 1, from)
    end
    if func then
      out[#out + 1] = tostring(func(collect(c, subj)))
    else
      expand(parts, subj, rc, out)
    end
    cp, pos = to, to
    if to == from then
      pos = pos + 1
      if pos > len then
        break
      end
    end
    if not global then
      break
    end
  end
  release(c)
  if count == 0 then
    return subj, 0
  end
  if cp < len then
    out[#out + 1] = sub(subj, cp + 1)
  end
  return concat(out), count
end


-- newstr, n, err = ngx.re.sub(subject, regex, replace, options?)
function _M.sub(subj, regex, replace, opts)
  local s, n, err = substitute(subj, regex, replace, opts, false) -- no tail call: errors name the caller
  if err then
    return nil, nil, err
  end
  return s, n
end


-- newstr, n, err = ngx.re.gsub(subject, regex, replace, options?)
function _M.gsub(subj, regex, replace, opts)
  local s, n, err = substitute(subj, regex, replace, opts, true)
  if err then
    return nil, nil, err
  end
  return s, n
end


-- ---- the cache (lua_regex_cache_max_entries) ----

-- the most compiled regexes `o` keeps (1024 by default; 0 keeps none)
function _M.set_cache_max_entries(n)
  cache:set_max(n)
end


function _M.cache_entries()
  return cache:count()
end


return _M
