-- luacluster.codec: the message codec (Lua values <-> bytes), kept under its old name because
-- bench/ipc.lua requires it. The module is luacluster.lib.codec.
return require("luacluster.lib.codec")
