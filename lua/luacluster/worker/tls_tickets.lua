-- luacluster.worker.tls_tickets: a worker's TLS session ticket keys are the cluster's, which
-- the master makes and rotates (luacluster.master.tls_tickets). Its "tls_keys" control
-- message comes first on the channel, before the worker can have a listening socket or a
-- connection, and again at each rotation; the keys replace the process's ring for all its
-- TLS servers, those made later included (core.tls_ticket_keys, runtime/tls.c).
local core = require("luacluster.core")

local _M = {}


-- { op = "tls_keys", keys = N * 80 bytes, newest first, lifetime = seconds a ticket lives }
function _M.on_keys(msg)
  if type(msg.keys) ~= "string" then
    return
  end
  core.tls_ticket_keys(msg.keys, msg.lifetime)
end


return _M
