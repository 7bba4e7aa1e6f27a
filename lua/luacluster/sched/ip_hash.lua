-- IP hash: the same client address goes to the same worker while the set of ready workers
-- stays the same (workers are taken in id order).
local bit = require("bit")

local _M = { wants_address = true }


local function hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(h + bit.lshift(h, 1) + bit.lshift(h, 4) + bit.lshift(h, 7) + bit.lshift(h, 8) + bit.lshift(h, 24))
  end
  return h
end


function _M.new()
  return function(workers, conn)
    local n = #workers
    return workers[hash(conn.remote_address or "") % n + 1]
  end
end


_M.hash = hash

return _M
