-- luacluster.runtime: the process-wide state of this process (role, app, options, argv, the
-- library folder), kept under its old name because apps read it (examples/parallel_checksum
-- reads runtime.libdir). The module is luacluster.lib.runtime.
return require("luacluster.lib.runtime")
