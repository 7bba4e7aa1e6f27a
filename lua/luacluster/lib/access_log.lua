-- Access logs of HTTP servers (http.create_server(handler, { access_log = path | "stderr" })):
-- one C object per path in this process, shared by its servers (runtime/access_log.c does the
-- formatting, the buffering and the writes off the loop). SIGUSR1 reopens them all, for
-- logrotate: the master reopens its own and passes the signal on to its workers (master/ops.lua).
local core = require("luacluster.core")

local open, reopen_all, flush_all, stats

local logs = {} -- path or "stderr" -> core access log


-- -> log | nil, err
function open(path)
  if type(path) ~= "string" or path == "" then
    return nil, "access_log must be a file path, \"stderr\" or false"
  end
  local l = logs[path]
  if l then
    return l
  end
  local err
  l, err = core.access_log_open(path)
  if not l then
    return nil, "cannot open " .. path .. ": " .. tostring(err)
  end
  logs[path] = l
  return l
end


function reopen_all()
  for _, l in pairs(logs) do
    l:reopen()
  end
end


function flush_all()
  for _, l in pairs(logs) do
    l:flush()
  end
end


-- lines written, dropped (a disk that did not keep up), errors, over every access log
function stats()
  local t = { lines = 0, dropped = 0, errors = 0, reopens = 0 }
  for _, l in pairs(logs) do
    local s = l:stats()
    for k in pairs(t) do
      t[k] = t[k] + (s[k] or 0)
    end
  end
  return t
end


return {
  open = open,
  reopen_all = reopen_all,
  flush_all = flush_all,
  stats = stats,
}
