-- luacluster.ngx.send_data: what a cosocket's send(data) takes, made one string as
-- lua-nginx-module does it: a string, a number (an int32 as an integer, any other with 14
-- significant digits, as LuaJIT prints it), nil, a boolean, or an array table of strings and
-- numbers, nested. Anything else raises with OpenResty's message, at the app's line.
local coro = require("luacluster.lib.coro")

local type, pairs, floor, tostring = type, pairs, math.floor, tostring
local fmt, concat = string.format, table.concat
local clear = require("table.clear")

local _M = {}


local function num(n)
  if n == floor(n) and n >= -2147483648 and n <= 2147483647 then
    -- %.14g (tostring) prints such a number as %d does, -0 aside; tostring compiles, format does not
    return n == 0 and "0" or tostring(n)
  end
  return fmt("%.14g", n)
end


local function bad(method, msg)
  coro.error_at_caller(fmt("bad argument #1 to '%s' (%s)", method, msg))
end


-- the parts of an array table, appended to out; strict, as send's: nil, booleans and
-- ngx.null inside a table are refused
local function flatten(t, out, n, method)
  local max = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then
      bad(method, "non-array table found")
    end
    if k > max then
      max = k
    end
  end
  for i = 1, max do
    local v = t[i]
    local tv = type(v)
    if tv == "string" then
      n = n + 1
      out[n] = v
    elseif tv == "number" then
      n = n + 1
      out[n] = num(v)
    elseif tv == "table" then
      n = flatten(v, out, n, method)
    else
      bad(method, "bad data type " .. tv .. " found")
    end
  end
  return n
end


-- flatten's parts: one table for every send (a send's table is made a string at once, with no
-- wait between), emptied after each, so that a send of a table (nginx.redis sends every
-- command as one) makes no table of its own
local parts = {}
local PARTS_KEPT = 1024 -- a send of more parts than this leaves no array that large behind


-- data -> the string to send; method names the call in errors ("send")
function _M.tostring(data, method)
  local td = type(data)
  if td == "string" then
    return data
  elseif td == "number" then
    return num(data)
  elseif td == "table" then
    local n = flatten(data, parts, 0, method) -- a refusal raises: what it left is overwritten
    local s = concat(parts, "", 1, n)          -- or cleared by the next send
    if n > PARTS_KEPT then
      parts = {} -- (clear keeps the array's size: a big MSET's would stay for good)
    else
      clear(parts)
    end
    return s
  elseif td == "nil" or td == "boolean" then
    return tostring(data)
  end
  bad(method, "string, number, boolean, nil, or array table expected, got " .. td)
end


return _M
