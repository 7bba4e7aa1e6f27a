#!/usr/bin/env bash
# Runs one libFuzzer target for a given time: spec/fuzz/run.sh ipc|http|http_client|ws SECONDS [libFuzzer args...]
# Builds build-fuzz/ with clang first when needed (vendor/install-deps.sh --fuzz installs clang).
# New inputs go to spec/fuzz/found/TARGET (the seed corpus spec/fuzz/corpus/TARGET is read, not
# written); crashes to spec/fuzz/crashes/. Prints libFuzzer's last stats line (#execs, cov, ft).
# Environment: FUZZ_JOBS (default 1) parallel jobs; LUACLUSTER_FUZZ_BUILD (default build-fuzz).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:?usage: spec/fuzz/run.sh ipc|http|http_client|ws SECONDS [libFuzzer args...]}
seconds=${2:-60}
shift 2 || true
build=${LUACLUSTER_FUZZ_BUILD:-build-fuzz}
case "$target" in ipc|http|http_client|ws) ;; *) echo "unknown target '$target' (ipc, http, http_client or ws)" >&2; exit 2 ;; esac
if ! command -v clang >/dev/null; then
  echo "spec/fuzz/run.sh: clang is missing: vendor/install-deps.sh --fuzz" >&2
  exit 2
fi
if [ ! -x "$build/fuzz/fuzz_$target" ] || [ -n "$(find runtime lua -newer "$build/fuzz/fuzz_$target" -name '*.[ch]' 2>/dev/null | head -1)" ]; then
  CC=clang cmake -B "$build" -DLUACLUSTER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j2 --target "fuzz_$target" >/dev/null
fi
found=spec/fuzz/found/$target
mkdir -p "$found" spec/fuzz/crashes
# ASan: LuaJIT's allocator is its own (mmap), so ASan sees only the runtime's C heap, which is
# what we want checked. detect_leaks=0: the target keeps one Lua state for the whole run and
# libFuzzer's per-input leak check would count objects the Lua GC has not collected yet.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
jobs=()
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
status=0
"$build/fuzz/fuzz_$target" "$found" "spec/fuzz/corpus/$target" \
  -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix=spec/fuzz/crashes/"$target"- -print_final_stats=1 -close_fd_mask=1 \
  "${jobs[@]}" "$@" >"$log" 2>&1 || status=$?
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^stat::' "$log" || true
if [ "$status" -ne 0 ]; then
  tail -n 60 "$log"
  echo "spec/fuzz/run.sh: fuzz_$target found a crash (exit $status); see spec/fuzz/crashes/" >&2
fi
exit "$status"
