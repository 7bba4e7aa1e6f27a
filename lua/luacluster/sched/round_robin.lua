-- Round robin: strict rotation among the ready workers of a listener.
local _M = { wants_address = false }


function _M.new()
  local i = 0
  return function(workers)
    i = i % #workers + 1
    return workers[i]
  end
end


return {
  wants_address = _M.wants_address,
  new = _M.new,
}
