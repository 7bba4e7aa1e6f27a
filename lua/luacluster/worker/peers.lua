-- Which workers are live, as every worker sees it, so that cluster.worker:send_to(id, msg) to
-- a worker that does not exist or has exited returns nil, err at once instead of going to
-- the master first. The master sends a new worker the set of live ids (a "peers" control
-- message, the first frame on its channel) and every other worker each change (a fork, a
-- worker gone), as they happen. Until a worker has heard it, every id counts as live. The master's C route-fail path
-- (ROUTE_FAIL, an "error" event on cluster.worker) stays for the races in between: a worker
-- that died after the last update.
local tables = require("luacluster.lib.tables")

local _M = {}

-- ---- the worker's side ----

local live -- id -> true, or nil while not yet told


-- {op = "peers", ids = {...}} the whole set; {add = id} or {remove = id} one change
function _M.set(msg)
  if type(msg) ~= "table" then
    return
  end
  if type(msg.ids) == "table" then
    local t = {}
    for _, id in ipairs(msg.ids) do
      t[id] = true
    end
    live = t
  elseif live and msg.add then
    live[msg.add] = true
  elseif live and msg.remove then
    live[msg.remove] = nil
  end
end


-- true unless the master has said this id is not a live worker
function _M.is_live(id)
  return live == nil or live[id] == true
end


-- the live ids as last heard (nil before the first update)
function _M.ids()
  if not live then
    return nil
  end
  return tables.sorted_keys(live)
end


-- ---- the master's side ----
-- Updates go out at once (in the same loop turn as the change), so that anything the master
-- sends to a worker after a "fork" or "exit" event arrives after the update.

local master


local function others(except, msg)
  for _, w in pairs(master.workers) do
    if w ~= except and w.state ~= "dead" then
      w:_control(msg)
    end
  end
end


local function on_fork(w)
  local ids = {}
  for id, x in pairs(master.workers) do
    if x.state ~= "dead" then
      ids[#ids + 1] = id
    end
  end
  table.sort(ids)
  w:_control({ op = "peers", ids = ids })
  others(w, { op = "peers", add = w.id })
end


local function on_gone(w)
  local other = master.workers[w.id]
  if other and other ~= w and other.state ~= "dead" then
    return -- another worker took this id (a new generation): it stays live
  end
  others(w, { op = "peers", remove = w.id })
end


function _M.attach(m)
  master = m
  m.add_hook("fork", on_fork)
  m.add_hook("gone", on_gone)
  m.add_hook("adopt", function(w) others(w, { op = "peers", add = w.id }) end) -- a reload's new worker takes its slot
end


return {
  set = _M.set,
  is_live = _M.is_live,
  ids = _M.ids,
  attach = _M.attach,
}
