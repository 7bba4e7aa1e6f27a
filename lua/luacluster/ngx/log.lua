-- luacluster.ngx.log: ngx.log(level, ...) and its level constants, with lua-nginx-module's
-- argument rules and text ("[lua] file.lua:12: fn(): " then the arguments), written as
-- luacluster's own log lines (luacluster.lib.log): STDERR, EMERG, ALERT, CRIT and ERR as
-- "error", WARN as "warn", NOTICE and INFO as "info", DEBUG as "debug". Every level is written
-- (luacluster has no error_log threshold).
local core = require("luacluster.core")
local log = require("luacluster.lib.log")

local type, tostring, tonumber, select = type, tostring, tonumber, select
local fmt, concat = string.format, table.concat
local getinfo = debug.getinfo
local null = core.null

-- the library's own folder (".../luacluster/"), to tell its frames from the app's
local LIB_DIR = debug.getinfo(1, "S").source:match("^@(.*/)ngx/[^/]*$")

local LEVELS = { STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6, INFO = 7, DEBUG = 8 }
local WRITE = {
  [0] = log.error, log.error, log.error, log.error, log.error, log.warn, log.info, log.info, log.debug,
}


-- luaL_checkint's reading of the level: a number or a numeric string, truncated
local function check_level(level)
  local n = tonumber(level)
  if n == nil or (type(level) ~= "number" and type(level) ~= "string") then
    error(fmt("bad argument #1 to 'log' (number expected, got %s)", type(level)), 3)
  end
  n = n >= 0 and math.floor(n) or math.ceil(n)
  if n < 0 or n > 8 then
    error(fmt("bad argument #1 to 'log' (bad log level: %d)", n), 3)
  end
  return n
end


-- the text of the arguments; argument numbers in errors count from the first after the
-- level, as lua-nginx-module's (it removes the level before it checks them)
local function text(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if t == "string" then
      parts[#parts + 1] = v
    elseif t == "number" or t == "boolean" or t == "nil" then
      parts[#parts + 1] = tostring(v)
    elseif t == "table" then
      local mt = getmetatable(v)
      if type(mt) ~= "table" or mt.__tostring == nil then
        error(fmt("bad argument #%d to 'log' (expected table to have __tostring metamethod)", i), 3)
      end
      parts[#parts + 1] = tostring(v)
    elseif v == null then
      parts[#parts + 1] = "null"
    else
      error(fmt("bad argument #%d to 'log' (string, number, boolean, or nil expected, got %s)", i, t), 3)
    end
  end
  return concat(parts)
end


local function in_library(level)
  local ar = getinfo(level + 1, "S")
  return ar ~= nil and LIB_DIR ~= nil and ar.source:sub(2, #LIB_DIR + 1) == LIB_DIR
end


-- "[lua] app.lua:12: check(): " for the function that called ngx.log (its name as its caller
-- called it; none when luacluster called it: a handler, a callback)
local function where()
  local ar = getinfo(3, "Snl")
  if not ar then
    return "[lua] "
  end
  local file = ar.short_src:match("[^/\\]*$")
  local fn = ""
  if ar.namewhat ~= "" and ar.what == "Lua" and ar.name and not in_library(4) then
    fn = ar.name .. "(): "
  end
  return fmt("[lua] %s:%d: %s", file, ar.currentline, fn)
end


local function ngx_log(level, ...)
  local n = check_level(level)
  local msg = text(...)
  WRITE[n](where() .. msg)
end


return {
  LEVELS = LEVELS,
  log = ngx_log,
}
