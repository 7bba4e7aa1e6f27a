#!/usr/bin/env bash
# tools/fresh-debian.sh: proves README's two lines on a fresh, minimal Debian 12 machine.
# Builds a minbase bookworm root with debootstrap (mirror read from this machine's apt sources),
# unpacks `git archive HEAD` into root's home (/root/luacluster, /root is 0700 as on a real
# machine), then, chrooted as root with a clean environment:
#   1. runs README's first line in the background until http://127.0.0.1:8080/ answers with the
#      hello example's "Hello, World!", then stops it by its process group;
#   2. runs README's second line in a network namespace of its own (only lo, up) and requires
#      exit 0 and a last line that says "0 failed".
# Both lines are read from README.md's first code block, never copied here.
# Everything runs in a mount and pid namespace of its own: mounts made for the chroot (/proc,
# /sys, /dev, /dev/pts, /dev/shm, /run, the apt cache) are unmounted on every exit path, and a
# process left in the root dies with the namespace. Fails when a mount other than its own is left
# under the root after line 2 (a spec's `ip netns add` that was not cleaned up), or one at all
# after the clean-up. Prints how long each phase took; its last line is
# "fresh-debian: N passed, N failed" over its checks.
# A service started by a package's postinst (nginx) would start on this machine's port 80: the
# root gets a policy-rc.d that refuses starts, as Debian's container images do.
#
# Usage (as root): tools/fresh-debian.sh [--cold] [--keep]
#   --cold  use an empty download cache (what a new CI machine sees); by default the .deb files
#           are kept in $LUACLUSTER_FRESH_CACHE (/var/cache/luacluster-fresh) between runs
#   --keep  keep the root folder afterwards (it is printed); by default it is removed
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
me="fresh-debian"

say() { echo "$me: $*" >&2; }

if [ "${LC_FRESH_INNER:-}" != 1 ]; then
  # ---- outer part: checks, then runs the rest in private mount + pid namespaces ----
  cold=0 keep=0
  for arg in "$@"; do
    case "$arg" in
      --cold) cold=1 ;;
      --keep) keep=1 ;;
      *) say "unknown option $arg"; echo "$me: 0 passed, 1 failed"; exit 2 ;;
    esac
  done
  if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (debootstrap, chroot, mounts)"
    echo "$me: 0 passed, 1 failed"
    exit 2
  fi
  need=()
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
  command -v git >/dev/null 2>&1 || need+=(git)
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
  if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  work=$(mktemp -d /var/tmp/luacluster-fresh.XXXXXX)
  if [ "$cold" = 1 ]; then
    cache="$work/cache"
  else
    cache=${LUACLUSTER_FRESH_CACHE:-/var/cache/luacluster-fresh}
  fi
  mkdir -p "$cache/debootstrap" "$cache/apt/partial"
  # the inner part is pid 1 of its namespace: when it ends, whatever it started ends with it.
  # A SIGTERM or SIGINT here is passed to it as SIGTERM, and it cleans up (--kill-child does the
  # same if unshare itself is killed).
  LC_FRESH_INNER=1 LC_FRESH_WORK="$work" LC_FRESH_CACHE="$cache" LC_FRESH_REPO="$here" \
    unshare --mount --pid --fork --kill-child=SIGTERM --mount-proc --propagation private \
    "$0" &
  ns_pid=$!
  forward() {
    local c
    for c in $(cat "/proc/$ns_pid/task/$ns_pid/children" 2>/dev/null); do kill -TERM "$c" 2>/dev/null || true; done
  }
  trap forward INT TERM
  rc=0
  wait "$ns_pid" || rc=$?
  while kill -0 "$ns_pid" 2>/dev/null; do # a signal interrupted the wait: wait for the clean-up
    rc=0
    wait "$ns_pid" || rc=$?
  done
  trap - INT TERM
  # the namespace is gone; nothing it mounted may be seen here either
  if grep -qF " $work" /proc/self/mountinfo; then
    say "a mount under $work is left in this machine's namespace:"
    grep -F " $work" /proc/self/mountinfo >&2
    echo "$me: 0 passed, 1 failed"
    exit 1
  fi
  if [ "$keep" = 1 ]; then
    say "kept the root in $work/root"
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
fi

# ---- inner part: pid 1 of its own pid namespace, in a private mount namespace ----
work=$LC_FRESH_WORK
cache=$LC_FRESH_CACHE
repo=$LC_FRESH_REPO
root="$work/root"
passed=0 failed=0
mounts=()        # what this script mounted under $root, in order
line1_pid=""
t_start=$(date +%s)
t_phase=$t_start

phase_done() { # NAME: prints how long the phase took
  local now
  now=$(date +%s)
  say "$1 took $((now - t_phase)) s"
  t_phase=$now
}

ok() { passed=$((passed + 1)); say "ok: $*"; }
not_ok() { failed=$((failed + 1)); say "FAILED: $*"; }

# mounts under $root, as listed in /proc/self/mountinfo (field 5)
mounts_under_root() { awk -v r="$root" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo; }

do_mount() { # TARGET-UNDER-ROOT mount-args...
  local target="$root$1"
  shift
  mkdir -p "$target"
  mount "$@" "$target"
  mounts+=("$target")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$line1_pid" ] && kill -0 "$line1_pid" 2>/dev/null; then
    kill -KILL -- "-$line1_pid" 2>/dev/null || true
  fi
  # what is still running in the root (a leak, or an interrupted run): it must go before umount
  local p left=""
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then
      left+=" ${p#/proc/}($(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-60))"
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  if [ -n "$left" ]; then
    not_ok "processes were left running in the root:$left"
    sleep 1
  fi
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -R "${mounts[i]}" 2>/dev/null || umount -R -l "${mounts[i]}" || true
  done
  local rest
  rest=$(mounts_under_root)
  if [ -n "$rest" ]; then
    not_ok "mounts left under the root after the clean-up: $(echo $rest)"
    # do not leave them to the namespace's end only: lazily detach what remains
    while read -r m; do umount -l "$m" 2>/dev/null || true; done <<<"$(echo "$rest" | sort -r)"
  fi
  say "total $(($(date +%s) - t_start)) s"
  if [ "$rc" -eq 0 ] && [ "$failed" -gt 0 ]; then rc=1; fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  echo "$me: $passed passed, $failed failed"
  exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 143' TERM

# ---- README's two lines, from its first code block ----
mapfile -t lines < <(awk '/^```/ { n++; next } n == 1 && NF { print } n >= 2 { exit }' "$repo/README.md")
if [ "${#lines[@]}" -ne 2 ]; then
  not_ok "README.md's first code block should hold two lines, it holds ${#lines[@]}"
  exit 1
fi
line1=${lines[0]}
line2=${lines[1]}
say "README line 1: $line1"
say "README line 2: $line2"

# ---- the mirror: the first bookworm source of this machine's apt ----
mirror=""
if [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == "bookworm") { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: stanzas separated by blank lines; Types must hold deb and Suites bookworm
    mirror=$(awk '
      function flush() { if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && uris != "" && found == "") { split(uris, u, " "); found = u[1] } types = suites = uris = "" }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
      /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
      /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
      END { flush(); print found }' "$f")
    [ -n "$mirror" ] && break
  done
fi
if [ -z "$mirror" ]; then
  not_ok "no bookworm source in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources"
  exit 1
fi
say "mirror: $mirror; cache: $cache; root: $root"

# ---- phase 1: the minimal root ----
mkdir -p "$root"
# long steps run in the background with a wait, so that a SIGTERM is acted on at once
debootstrap --variant=minbase --cache-dir="$cache/debootstrap" bookworm "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 &
if ! wait $!; then
  tail -n 30 "$work/debootstrap.log" >&2
  not_ok "debootstrap failed (log above)"
  exit 1
fi
phase_done "debootstrap"

# ---- phase 2: the machine as a new user gets it ----
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# the network's own certificate authorities, as its admin installs them on every machine (a proxy
# that inspects TLS: npm's registry is reached through it); ca-certificates, which README's first
# line installs, adds them to the system's store
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
printf '#!/bin/sh\n# a chroot starts no services (fresh-debian.sh)\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
chmod 700 "$root/root"
mkdir "$root/root/luacluster"
git -C "$repo" archive HEAD | tar -x -C "$root/root/luacluster"
# / is a mount point on a real machine (`ip netns exec` needs it: mount --make-rslave /)
do_mount "" --bind "$root"
do_mount /proc -t proc proc
do_mount /sys -t sysfs sysfs
do_mount /dev --bind /dev
do_mount /dev/pts --bind /dev/pts
do_mount /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs
do_mount /run -t tmpfs -o mode=755,nosuid,nodev tmpfs
do_mount /var/cache/apt/archives --bind "$cache/apt"
ours=$(mounts_under_root | sort)
phase_done "preparing the root"

# a root login's environment, none of this machine's (CI=true, XDG_RUNTIME_DIR, ...)
in_root() { # COMMAND: runs a bash -c command as root in the chroot, in /root/luacluster
  chroot "$root" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb \
    LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/luacluster && $1"
}

# ---- phase 3: README's first line, until the hello example answers ----
if out=$(curl -s -m 2 http://127.0.0.1:8080/ 2>/dev/null); [ -n "$out" ] || ss -ltn 2>/dev/null | grep -q '127.0.0.1:8080 \|\*:8080 \|0.0.0.0:8080 '; then
  not_ok "port 8080 is already taken on this machine: README's first line needs it"
  exit 1
fi
# setsid: its own process group (and session), whose id is its pid, to stop it as a whole
setsid bash -c "$(declare -f in_root); root='$root'; in_root \"\$1\"" _ "$line1" >"$work/line1.log" 2>&1 &
line1_pid=$!
answer=""
deadline=$(($(date +%s) + 1200))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if [ -x "$root/usr/bin/curl" ]; then
    answer=$(chroot "$root" /usr/bin/curl -s -m 2 http://127.0.0.1:8080/ 2>/dev/null || true)
    [ -n "$answer" ] && break
  fi
  if ! kill -0 "$line1_pid" 2>/dev/null; then
    break
  fi
  sleep 1
done
phase_done "README line 1 until the hello example answered"
if [ "$answer" = "Hello, World!" ]; then
  ok "README's first line serves the hello example on 8080"
else
  tail -n 40 "$work/line1.log" >&2
  not_ok "README's first line: no hello example on 8080 (answer '$answer', log above)"
  exit 1
fi
kill -TERM -- "-$line1_pid"
for _ in $(seq 1 100); do
  kill -0 -- "-$line1_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 -- "-$line1_pid" 2>/dev/null; then
  not_ok "README's first line did not stop within 10 s of SIGTERM"
  kill -KILL -- "-$line1_pid" 2>/dev/null || true
fi
wait "$line1_pid" 2>/dev/null || true
line1_pid=""
phase_done "stopping it"

# ---- phase 4: README's second line, in a network namespace of its own ----
rc=0
{
  timeout 1500 unshare --net bash -c 'ip link set lo up && "$@"' _ \
    bash -c "$(declare -f in_root); root='$root'; in_root \"\$1\"" _ "$line2" 2>&1 | tee "$work/line2.log"
} &
wait $! || rc=$?
last=$(tail -n 1 "$work/line2.log")
phase_done "README line 2"
if [ "$rc" -eq 124 ]; then
  not_ok "README's second line did not end within 25 minutes"
elif [ "$rc" -eq 0 ] && [[ "$last" =~ (^|[[:space:]])0\ failed$ ]]; then
  ok "README's second line: $last"
else
  not_ok "README's second line exited $rc, its last line: $last"
fi

# ---- what the specs left: mounts under the root other than ours ----
extra=$(comm -13 <(echo "$ours") <(mounts_under_root | sort))
if [ -z "$extra" ]; then
  ok "the specs left no mount under the root"
else
  not_ok "the specs left mounts under the root: $(echo $extra)"
fi
[ "$failed" -eq 0 ]
