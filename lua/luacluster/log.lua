-- Runtime log lines: one line each on stderr, with the process's prefix ("[master] "; a
-- worker's lines get "[worker N] " from its master, which forwards its output).
local core = require("luacluster.core")

local _M = {}

local function line(level, msg)
  core.log(level .. ": " .. tostring(msg))
end


function _M.info(msg) line("info", msg) end
function _M.warn(msg) line("warn", msg) end
function _M.error(msg) line("error", msg) end


function _M.set_prefix(prefix)
  core.set_log_prefix(prefix)
end


return _M
