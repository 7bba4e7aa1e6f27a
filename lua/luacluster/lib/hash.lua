-- luacluster.lib.hash: FNV-1a over a string, as a 32-bit signed number (LuaJIT's bit ops):
-- the ip_hash scheduler's and the control socket's name's one hash.
local bit = require("bit")


local function fnv1a(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(h + bit.lshift(h, 1) + bit.lshift(h, 4) + bit.lshift(h, 7) + bit.lshift(h, 8) + bit.lshift(h, 24))
  end
  return h
end


return {
  fnv1a = fnv1a,
}
