-- luacluster.coro: the handlers' coroutines (spawn, waiters), kept under its old name because
-- bench/ipc.lua requires it. The module is luacluster.lib.coro.
return require("luacluster.lib.coro")
