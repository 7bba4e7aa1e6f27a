# Finds the system packages luacluster builds on (see vendor/install-deps.sh):
# LuaJIT 2.1 (luajit2), libuv 1.x and OpenSSL 3 (libssl-dev), all from Debian.
# Sets LC_DEP_INCLUDE_DIRS, LC_DEP_LIBRARIES and LC_DEP_LIBRARIES_NO_LUA.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LUAJIT REQUIRED luajit>=2.1)
pkg_check_modules(LIBUV REQUIRED libuv>=1.44)
pkg_check_modules(OPENSSL REQUIRED openssl>=3.0)
set(LC_DEP_INCLUDE_DIRS ${LUAJIT_INCLUDE_DIRS} ${LIBUV_INCLUDE_DIRS} ${OPENSSL_INCLUDE_DIRS})
set(LC_DEP_LIBRARIES ${LUAJIT_LINK_LIBRARIES} ${LIBUV_LINK_LIBRARIES} ${OPENSSL_LINK_LIBRARIES} m dl)
set(LC_DEP_LIBRARIES_NO_LUA ${LIBUV_LINK_LIBRARIES} ${OPENSSL_LINK_LIBRARIES})
set(LuaclusterDeps_FOUND TRUE)
