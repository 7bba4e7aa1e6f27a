-- luacluster.net.pool: this process's pools of idle outbound connections, one per key (a pool
-- name, or host:port plus the TLS settings: key()). The connections are runtime/conn.c's, parked:
-- while idle, C watches each one and closes it when its peer speaks or ends, when it fails, or
-- when its idle time is up; its close reaches the pool here, which forgets it. So what take()
-- hands out is a connection that was quiet and open when it was taken.
local _M = {}

local pools = {} -- key -> { st, ... }, oldest first (st: net/outbound.lua's connection records)
local remove = table.remove


-- drops st from its pool (its connection closed while idle)
function _M.forget(st)
  st.pooled = false
  local list = pools[st.key]
  if not list then
    return
  end
  for i = #list, 1, -1 do
    if list[i] == st then
      remove(list, i)
      break
    end
  end
  if #list == 0 then
    pools[st.key] = nil
  end
end


-- the pool key of host:port with the TLS settings tls_key (a string, "" or nil: plain TCP)
function _M.key(host, port, tls_key)
  if tls_key and tls_key ~= "" then
    return host .. ":" .. port .. "|" .. tls_key
  end
  return host .. ":" .. port
end


-- Puts the connection of st (parked: conn:park done) into its pool (st.key), which keeps at most
-- size idle connections: the oldest beyond that are closed.
function _M.put(st, size)
  local list = pools[st.key]
  if not list then
    list = {}
    pools[st.key] = list
  end
  st.pooled = true
  list[#list + 1] = st
  while #list > size do
    local old = remove(list, 1)
    old.pooled = false
    old.h:close(true)
  end
end


-- take's work on the list of key: a tail call for each connection that its peer closed
-- meanwhile (unpark refuses it), not a loop: a loop here made the traces of every connect
-- through a pool abort ("inner loop in root trace")
local function take_from(list, key)
  local n = #list
  if n == 0 then
    return nil
  end
  local st = list[n]
  list[n] = nil
  if n == 1 then
    pools[key] = nil
  end
  st.pooled = false
  if st.h:unpark() then
    return st
  end
  return take_from(list, key)
end


-- An idle connection's record from pool key, taken out of it (the most recently used first);
-- nil when the pool has none.
function _M.take(key)
  local list = pools[key]
  if list == nil then
    return nil
  end
  return take_from(list, key)
end


return {
  key = _M.key,
  put = _M.put,
  take = _M.take,
  forget = _M.forget,
}
