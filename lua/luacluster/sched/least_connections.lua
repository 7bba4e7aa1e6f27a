-- Least connections: the ready worker with the fewest open connections (the master counts
-- the connections it hands out; workers report closed ones in batches). Ties rotate.
local _M = { wants_address = false }


function _M.new()
  local turn = 0
  return function(workers)
    local n = #workers
    turn = turn % n + 1
    local best, best_count = nil, math.huge
    for k = 0, n - 1 do
      local w = workers[(turn + k - 1) % n + 1]
      local count = w.connections or 0
      if count < best_count then
        best, best_count = w, count
      end
    end
    return best
  end
end


return {
  wants_address = _M.wants_address,
  new = _M.new,
}
