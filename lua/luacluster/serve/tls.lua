-- opts.tls of a server (http.create_server, net.create_server): checked when the server is made
-- (a mistake in its shape raises there), its certificates loaded at the server's first listen
-- in each process (a file that does not load is a listen error: the server's "error" event).
--   { cert = PATH, key = PATH }                          one certificate
--   { { server_name = NAME, cert = PATH, key = PATH }, ... }  chosen by SNI; the first is the default
local core = require("luacluster.core")

local _M = {}


local function check_one(t, who, i)
  local where = i and ("tls[" .. i .. "]") or "tls"
  if type(t) ~= "table" then
    error(who .. ": " .. where .. " must be a table", 4)
  end
  for k in pairs(t) do
    if k ~= "cert" and k ~= "key" and k ~= "server_name" then
      error(who .. ": " .. where .. ": unknown field '" .. tostring(k) .. "'", 4)
    end
  end
  if type(t.cert) ~= "string" or t.cert == "" then
    error(who .. ": " .. where .. ".cert must be a file path", 4)
  end
  if type(t.key) ~= "string" or t.key == "" then
    error(who .. ": " .. where .. ".key must be a file path", 4)
  end
  if t.server_name ~= nil and (type(t.server_name) ~= "string" or t.server_name == "") then
    error(who .. ": " .. where .. ".server_name must be a name", 4)
  end
  return { cert = t.cert, key = t.key, server_name = t.server_name and t.server_name:lower() }
end


-- opts.tls -> the list of certificates (copied: later changes to the app's table do not count)
function _M.check(v, who)
  if type(v) ~= "table" then
    error(who .. ": tls must be a table ({ cert =, key = } or a list of them)", 3)
  end
  if v.cert ~= nil or v.key ~= nil or v[1] == nil then
    return { check_one(v, who) }
  end
  -- SNI matches names exactly: an entry past the first without a name, a name twice (case
  -- aside) or a wildcard could never be chosen, so they are mistakes, not silently dead entries
  local list, seen = {}, {}
  for i, t in ipairs(v) do
    local c = check_one(t, who, i)
    local name = c.server_name
    if i > 1 and not name then
      error(who .. ": tls[" .. i .. "].server_name is needed (only the first entry, the default, may go without)", 3)
    elseif name and name:find("*", 1, true) then
      error(who .. ": tls[" .. i .. "].server_name '" .. name .. "': names match exactly (no wildcards): "
        .. "list each name, or put the certificate first to serve every other name", 3)
    elseif name and seen[name] then
      error(who .. ": tls[" .. i .. "].server_name '" .. name .. "' is also tls[" .. seen[name] .. "]'s", 3)
    end
    if name then seen[name] = i end
    list[i] = c
  end
  return list
end


-- the certificates of a checked list, loaded: -> ctx | nil, err ("tls: cannot load FILE: ...")
function _M.load(list, alpn_http)
  return core.tls_server_new(list, alpn_http)
end


return _M
