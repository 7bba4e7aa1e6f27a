-- luacluster.master.stats: the workers' counters, asked for in one control frame per worker
-- (the "stats" op, answered by worker/stats.lua with "stats_result"); read by `luacluster
-- status` (master/control.lua) and the metrics (master/metrics.lua).
local core = require("luacluster.core")
local coro = require("luacluster.lib.coro")
local master = require("luacluster.master.core")

local stats_seq = 0
local stats_waiters = {}
local last = setmetatable({}, { __mode = "k" }) -- worker -> its last answer
local STATS_TIMEOUT = 1000


local function on_stats_result(w, msg)
  local waiter = stats_waiters[msg.seq]
  if waiter then
    stats_waiters[msg.seq] = nil
    waiter(w, msg)
  end
end


-- Every worker's counters, asked for in one control frame per worker (batched: nothing per
-- request), waiting up to 1 s for the answers: -> array of { worker =, stats =, fresh = }.
-- A worker that does not answer in time gives its last answer (fresh = false), so that its
-- counters do not seem to go back.
local function collect()
  local list, pending = {}, 0
  local w8 = coro.waiter("stats")
  for _, w in ipairs(master.live_workers()) do
    local item = { worker = w, stats = last[w] or {}, fresh = false }
    list[#list + 1] = item
    stats_seq = stats_seq + 1
    local seq = stats_seq
    if w:_control({ op = "stats", seq = seq }) then
      item.seq = seq
      pending = pending + 1
      stats_waiters[seq] = function(_, msg)
        if item.done then return end
        item.done = true
        last[w], item.stats, item.fresh = msg, msg, true
        pending = pending - 1
        if pending == 0 then w8:wake() end
      end
    end
  end
  if pending > 0 then
    local t = core.timer_new(function() w8:wake() end)
    t:start(STATS_TIMEOUT, 0)
    w8:wait()
    t:close()
    for _, item in ipairs(list) do
      item.done = true -- a late answer is dropped
      if item.seq then
        stats_waiters[item.seq] = nil
      end
    end
  end
  return list
end


-- plugs the stats op into the master (master/plugins.lua)
local function attach(m)
  m.register_op("stats_result", on_stats_result)
end


return {
  attach = attach,
  collect = collect,
}
