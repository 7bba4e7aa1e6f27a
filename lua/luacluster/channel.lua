-- luacluster.channel: a message channel to another process, kept under its old name because the
-- fuzz target runtime/fuzz/fuzz_ipc.c requires it. The module is luacluster.lib.channel.
return require("luacluster.lib.channel")
