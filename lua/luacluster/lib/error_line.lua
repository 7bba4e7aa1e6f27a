-- error_line: a Lua error (with its traceback, or require's many-line message) as the one line
-- a person needs: the real reason and its file:line. Used wherever an app's error ends a start or
-- a reload, or is shown by status: boot.lua, master/core.lua, master/reload.lua, master/control.lua.
--   "app.lua:4: module 'x' not found:\n\tno field ...\n\tno file ..." -> "app.lua:4: module 'x' not found"
--   "error loading module 'x' from file '/a/x.lua':\n\t/a/x.lua:2: '<eof>' expected near 'end'"
--     -> "/a/x.lua:2: '<eof>' expected near 'end' (loading module 'x')"
-- A traceback (through the app's frames and the library's own) is dropped: it is noise here.
-- report(line) writes such a line as luacluster's last word: "luacluster: line" on stderr, or
-- a JSON record (level error) under --log-format json.
local log = require("luacluster.lib.log")

local _M = {}


local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end


-- err (any value) -> one line
function _M.line(err)
  local text = tostring(err)
  text = text:gsub("\n?stack traceback:.*$", "")
  -- require's load error: the reason (file:line: what) is on the next line
  local name, reason = text:match("^error loading module '([^']*)' from file '[^']*':%s*\n%s*([^\n]+)")
  if name then
    return trim(reason) .. " (loading module '" .. name .. "')"
  end
  local first = text:match("^[^\n]*")
  -- require's "not found:" is followed by the list of places it looked (package.path and cpath)
  first = first:gsub(":%s*$", "")
  first = trim(first)
  if first == "" then
    return "(an error without a message)"
  end
  return first
end


local on_report -- one listener: an upgrade's new master tells the old one why it stops (master/upgraded.lua)


-- set_listener(fn | nil): fn(line) for every report from now on
function _M.set_listener(fn)
  on_report = fn
end


-- Writes line as a fatal message of this process (the caller exits or stops next).
function _M.report(line)
  if on_report then
    on_report(line)
  end
  if log.format == "json" then
    log.error(line)
  else
    log.write(2, "luacluster: " .. line .. "\n")
  end
end


return {
  line = _M.line,
  report = _M.report,
  set_listener = _M.set_listener,
}
