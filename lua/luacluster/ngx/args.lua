-- luacluster.ngx.args: the argument checks the cosockets (ngx/tcp.lua, ngx/udp.lua) share, each
-- raising lua-nginx-module's message at the app's line that made the call.
local coro = require("luacluster.lib.coro")

local type, tostring, fmt = type, tostring, string.format

local _M = {}


-- raises msg at the app's line
function _M.raise(msg)
  coro.error_at_caller(msg)
end


-- n arguments (the object included) between lo and hi, or raises msg (a format of n)
function _M.check_count(n, lo, hi, msg)
  if n < lo or n > hi then
    coro.error_at_caller(fmt(msg, n))
  end
end


-- a host argument (#1 of method): a string, or a number made one; anything else raises
function _M.host(v, method)
  if type(v) ~= "string" and type(v) ~= "number" then
    coro.error_at_caller("bad argument #1 to '" .. method .. "' (string expected, got " .. type(v) .. ")")
  end
  return tostring(v)
end


return _M
