#!/usr/bin/env bash
# Installs the Debian packages luacluster builds, tests and benchmarks with.
# Idempotent: when every package is already installed it does nothing (no apt-get update).
# Usage: vendor/install-deps.sh [--bench] [--fuzz] [--valgrind]
#   --bench adds the peers used by bench/; --fuzz clang and its libFuzzer runtime (spec/fuzz/run.sh);
#   --valgrind valgrind (spec/valgrind.sh)
set -euo pipefail

build_pkgs=(cmake gcc libc6-dev make pkg-config luajit2 libluajit2-5.1-dev libuv1-dev lua-busted curl libpcre2-dev libssl-dev zlib1g-dev)  # OpenSSL 3: runtime/tls.c, ngx digests; zlib: ws_deflate.c
test_pkgs=(procps wrk nginx libnginx-mod-http-lua python3-prometheus-client iproute2)
test_pkgs+=(redis-server util-linux)  # spec/net_read_spec.lua's real Redis; unshare (net_connect_spec)
test_pkgs+=(lua-nginx-dns)  # spec/ngx_udp_spec.lua: Debian's nginx.dns.resolver over ngx.socket.udp
test_pkgs+=(memcached lua-nginx-redis lua-nginx-memcached lua-nginx-redis-connector lua-nginx-websocket python3-websockets)  # spec/ngx_drivers_spec.lua
# spec/ws_node_spec.lua: Node's `ws` as a WebSocket client (npm installs it into spec/.node);
# a node already on PATH (nodesource, nvm) is used as it is
command -v node >/dev/null 2>&1 || test_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || test_pkgs+=(npm)
# what every app can require with no set-up: lua-cjson (`require("cjson")`, spec/cjson_spec.lua)
app_pkgs=(lua-cjson ca-certificates)  # and the CA store TLS verifies against (runtime/tls.c)
# bench/ writes its SVG chart itself; its peers are Node.js (npm installs PM2 into bench/.peers)
# and nginx. A node already on PATH (nodesource, nvm) is used as it is.
bench_pkgs=()
command -v node >/dev/null 2>&1 || bench_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || bench_pkgs+=(npm)

want=("${build_pkgs[@]}" "${app_pkgs[@]}" "${test_pkgs[@]}")
fuzz_pkgs=(clang libclang-rt-14-dev)
for arg in "$@"; do
  case "$arg" in
    --bench) want+=("${bench_pkgs[@]}") ;;
    --fuzz) want+=("${fuzz_pkgs[@]}") ;;
    --valgrind) want+=(valgrind) ;;
    *) echo "vendor/install-deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "vendor/install-deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # nginx's package starts a service on port 80 when installed; luacluster's tests start their own.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
  if [ -x /usr/sbin/nginx ] && [ -f /run/nginx.pid ]; then $SUDO /usr/sbin/nginx -s stop >/dev/null 2>&1 || true; fi
fi

# spec/ws_node_spec.lua's client, Node's `ws` 8, from npm into spec/.node (private, git-ignored):
# installed here rather than by the spec, because the suite may run where there is no network
# (tools/fresh-debian.sh runs README's second line in a network namespace of its own)
ws_dir="$(cd "$(dirname "$0")/.." && pwd)/spec/.node"
if ! grep -qs '"version": *"8\.' "$ws_dir/node_modules/ws/package.json"; then
  echo "vendor/install-deps.sh: installing ws@8 (npm) into $ws_dir" >&2
  mkdir -p "$ws_dir"
  # npm trusts the system's certificate store (ca-certificates, with the authorities the machine's
  # admin added) rather than only the list built into Node
  cafile=()
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cafile=(--cafile /etc/ssl/certs/ca-certificates.crt)
  (cd "$ws_dir" && timeout 300 npm install --prefix "$ws_dir" "${cafile[@]}" --no-save --no-package-lock --no-audit --no-fund ws@8 >/dev/null)
fi
