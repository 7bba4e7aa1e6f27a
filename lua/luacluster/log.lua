-- luacluster.log: the runtime's log lines, kept under its old name because the fuzz targets
-- (runtime/fuzz/) require it (and silence its error). The module is luacluster.lib.log.
return require("luacluster.lib.log")
