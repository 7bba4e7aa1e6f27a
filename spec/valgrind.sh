#!/usr/bin/env bash
# Runs integration specs with every luacluster process they start (master, workers, forked
# children) under valgrind's memcheck, then prints what valgrind found, process by process:
# invalid reads/writes, uses of uninitialised values, bad frees, and memory definitely lost at
# exit. Valgrind slows each process down 20-50x, so specs that time things may fail here: this
# run is about valgrind's findings (the last line), not about the specs' verdicts.
# Usage: spec/valgrind.sh [spec files...]   (default: the HTTP, hostile-client, cluster,
# supervision, messaging and limits specs); needs valgrind (vendor/install-deps.sh --valgrind).
set -uo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "spec/valgrind.sh: valgrind is missing (vendor/install-deps.sh --valgrind)" >&2; exit 2; }
[ -x build/luacluster ] || { cmake -B build >/dev/null && cmake --build build -j2 >/dev/null; }
logs=$(mktemp -d /tmp/luacluster-valgrind.XXXXXX)
wrapper=$logs/luacluster
# --smc-check: LuaJIT writes machine code (its JIT) into anonymous memory; --trace-children:
# workers are new processes of the same binary; system tools they start are left alone.
cat >"$wrapper" <<EOF
#!/bin/sh
exec valgrind -q --tool=memcheck --smc-check=all-non-file --trace-children=yes \\
  --trace-children-skip='/bin/*,/usr/bin/*,/usr/sbin/*' --child-silent-after-fork=yes \\
  --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \\
  --suppressions=$PWD/spec/valgrind.supp --log-file=$logs/vg.%p \\
  $PWD/build/luacluster "\$@"
EOF
chmod +x "$wrapper"
specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  specs=(spec/http_spec.lua spec/hostile_spec.lua spec/cluster_spec.lua spec/supervision_spec.lua
         spec/messaging_spec.lua spec/limits_spec.lua)
fi
LUACLUSTER_BIN="$wrapper" spec/run "${specs[@]}" | tail -n 1 | sed 's/^/specs under valgrind (timing failures expected): /'
processes=0
dirty=0
for f in "$logs"/vg.*; do
  [ -e "$f" ] || continue
  processes=$((processes + 1))
  if [ -s "$f" ]; then
    dirty=$((dirty + 1))
    echo "---- valgrind: $(basename "$f") ----"
    head -n 80 "$f"
  fi
done
echo "valgrind: $processes luacluster processes checked, $dirty with errors (logs in $logs)"
[ "$dirty" -eq 0 ]
