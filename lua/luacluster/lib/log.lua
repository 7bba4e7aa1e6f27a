-- Runtime log lines: one line each on stderr with a time and a level, as text
--   [master] 2024-05-01T12:00:00.123Z info: message
-- (a worker's lines get "[worker N] " from its master, which forwards its output), or with
-- --log-format json as JSON lines:
--   {"time":"2024-05-01T12:00:00.123Z","process":"master","pid":1,"level":"info","msg":"message"}
-- The formatting is C (runtime/log.c), shared with the runtime's own lines.
local core = require("luacluster.core")

local _M = {}

_M.FORMATS = { text = true, json = true }


local function line(level, msg)
  core.log(level .. ": " .. tostring(msg))
end


function _M.debug(msg) line("debug", msg) end
function _M.info(msg) line("info", msg) end
function _M.warn(msg) line("warn", msg) end
function _M.error(msg) line("error", msg) end


-- Text for fd 1 or 2 as it is (whole lines), through the same writer as the log lines: queued,
-- never waits; past the writer's bound lines are dropped and counted (the count is written
-- before the next line that fits). The master writes its own output this way, so that a full
-- stdout or stderr never stalls its loop.
function _M.write(fd, text)
  core.log_write(fd, text)
end


-- print() in the master: Lua's print (each value through the global tostring, tab-separated,
-- one newline), written through the log writer instead of a blocking stdout; with
-- --log-format json each printed line is a record of its own ("stream":"stdout")
function _M.print(...)
  local n, tostr = select("#", ...), _G.tostring
  local t = {}
  for i = 1, n do
    t[i] = tostr((select(i, ...)))
  end
  core.log_print(table.concat(t, "\t") .. "\n")
end


function _M.set_prefix(prefix)
  core.set_log_prefix(prefix)
end


-- "text" | "json"; worker_id in a worker (its JSON lines carry "worker": N)
function _M.set_format(format, worker_id)
  core.set_log_format(format, worker_id)
  _M.format = format
end


return _M
