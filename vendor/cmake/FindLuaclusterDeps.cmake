# Finds the system packages luacluster builds on (see vendor/install-deps.sh):
# LuaJIT 2.1 (luajit2), libuv 1.x and libhttp-parser 2.9, all from Debian.
# Sets LC_DEP_INCLUDE_DIRS, LC_DEP_LIBRARIES and LC_DEP_LIBRARIES_NO_LUA.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LUAJIT REQUIRED luajit>=2.1)
pkg_check_modules(LIBUV REQUIRED libuv>=1.44)
find_path(HTTP_PARSER_INCLUDE_DIR http_parser.h)
find_library(HTTP_PARSER_LIBRARY http_parser)
if(NOT HTTP_PARSER_INCLUDE_DIR OR NOT HTTP_PARSER_LIBRARY)
  message(FATAL_ERROR "libhttp-parser not found: run vendor/install-deps.sh")
endif()
set(LC_DEP_INCLUDE_DIRS ${LUAJIT_INCLUDE_DIRS} ${LIBUV_INCLUDE_DIRS} ${HTTP_PARSER_INCLUDE_DIR})
set(LC_DEP_LIBRARIES ${LUAJIT_LINK_LIBRARIES} ${LIBUV_LINK_LIBRARIES} ${HTTP_PARSER_LIBRARY} m dl)
set(LC_DEP_LIBRARIES_NO_LUA ${LIBUV_LINK_LIBRARIES} ${HTTP_PARSER_LIBRARY})
set(LuaclusterDeps_FOUND TRUE)
