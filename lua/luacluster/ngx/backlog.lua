-- luacluster.ngx.backlog: the limit that connect's backlog option puts on a pool, as
-- lua-nginx-module's: at most pool_size connections of the pool in use at once; a connect
-- beyond that waits in a queue of at most backlog (more is nil, "too many waiting connect
-- operations"), for at most the connect timeout (then nil, "timeout"), and goes on when one
-- in use is closed or put back in the pool. Per worker, as the pools are. (OpenResty counts
-- the pool's idle connections too; here an idle one is what a waiting connect takes first.)
local coro = require("luacluster.lib.coro")
local timer = require("luacluster.timer")

local remove = table.remove

local _M = {}

-- pool key -> { size =, backlog =, in_use =, queue = { waiter, ... } }, made by the first
-- connect to the key that gives backlog
local limits = {}


-- the limit of key, made with size and backlog when there is none and backlog is given
function _M.limit(key, size, backlog)
  local l = limits[key]
  if not l and backlog then
    l = { size = size, backlog = backlog, in_use = 0, queue = {} }
    limits[key] = l
  end
  return l
end


-- acquire(l, timeout_ms) -> true | nil, err: one connection of l's pool may be used (waits)
function _M.acquire(l, timeout_ms)
  if l.in_use < l.size then
    l.in_use = l.in_use + 1
    return true
  end
  local queue = l.queue
  if #queue >= l.backlog then
    return nil, "too many waiting connect operations"
  end
  local entry = { w = coro.waiter("tcpsock:connect"), granted = false }
  queue[#queue + 1] = entry
  local t = timer.after(timeout_ms, function()
    if entry.granted then
      return -- its place is on its way (release)
    end
    for i = 1, #queue do
      if queue[i] == entry then
        remove(queue, i)
        break
      end
    end
    entry.w:wake(nil, "timeout")
  end)
  local ok, err = entry.w:wait()
  t:stop()
  return ok, err
end


-- release(l): a connection of l's pool is no longer used; the first waiting connect takes its
-- place, woken from the loop (as nginx posts it) rather than inside the caller's call
function _M.release(l)
  local entry = remove(l.queue, 1)
  if not entry then
    l.in_use = l.in_use - 1
    return
  end
  entry.granted = true -- the place goes to it: in_use stays
  timer.after(0, function()
    entry.w:wake(true)
  end)
end


return _M
