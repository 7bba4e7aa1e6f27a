-- luacluster.lib.tables: small helpers on plain tables that several modules need.


-- the keys of t, sorted (ids, names): a stable order for output and for acting on each
local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do
    list[#list + 1] = k
  end
  table.sort(list)
  return list
end


return {
  sorted_keys = sorted_keys,
}
