-- IP hash: the same client address goes to the same worker while the set of ready workers
-- stays the same (workers are taken in id order).
local hash = require("luacluster.lib.hash").fnv1a

local _M = { wants_address = true }


function _M.new()
  return function(workers, conn)
    local n = #workers
    return workers[hash(conn.remote_address or "") % n + 1]
  end
end


_M.hash = hash

return {
  wants_address = _M.wants_address,
  new = _M.new,
  hash = _M.hash,
}
