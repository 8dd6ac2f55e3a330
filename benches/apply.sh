#!/usr/bin/env bash
# Benchmark for `fwctl apply` (root). Inside a throwaway network namespace:
#  1. a full apply of rules/fwctl.toml (first install, then a re-apply);
#  2. a static blacklist of 100 000 entries (IPv6 documentation addresses) loaded
#     through one `ipset restore`, first load and a reload that carries a ban over.
# Prints the best and median wall time of RUNS runs of each. Usage: sudo benches/apply.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
# FWCTL_BIN (and FWCTL_EXAMPLES for the generators): builds made elsewhere,
# e.g. by benches/compare.sh; nothing is built then.
[ -n "${FWCTL_BIN:-}" ] || cargo build --release --quiet
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
ns=fwbench$$
work=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

python3 - "$work/feed.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(100_000):
        f.write("2001:db8:%x:%x::1\n" % (0x1000 + i // 65536, i % 65536))
PY
printf '[blacklist]\nfiles = ["feed.txt"]\n[[service]]\nname = "ssh"\nport = 22\n' > "$work/big.toml"

now() { date +%s%N; }
measure() { # label config
  local label=$1 cfg=$2 first=() again=()
  for _ in $(seq "$runs"); do
    ip netns add "$ns"
    local t0; t0=$(now); FWCTL_RUN_DIR=$work FWCTL_STATE=$work/state.json ip netns exec "$ns" "$bin" --config "$cfg" apply 2>/dev/null; first+=($(( ($(now) - t0) / 1000000 )))
    t0=$(now); FWCTL_RUN_DIR=$work FWCTL_STATE=$work/state.json ip netns exec "$ns" "$bin" --config "$cfg" apply 2>/dev/null; again+=($(( ($(now) - t0) / 1000000 )))
    ip netns del "$ns"
  done
  stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "best %5d ms   median %5d ms", a[1], a[int((NR+1)/2)]}'; }
  printf '%-34s first install: %s   re-apply: %s\n' "$label" "$(stats "${first[@]}")" "$(stats "${again[@]}")"
}
echo "fwctl apply, $runs runs each, $(nproc) cores, $(uname -r)"
# The shipped config without its [metrics] section (the defaults: nothing apply
# measures), so that a build from before [metrics] reads it too (benches/compare.sh).
sed '/^\[metrics\]/,$d' rules/fwctl.toml >"$work/fwctl.toml"
cp rules/blacklist.txt "$work/"
measure "rules/fwctl.toml" "$work/fwctl.toml"
measure "100 000-entry blacklist feed" "$work/big.toml"

# The ipset restore step alone, as fwctl renders it, for the 100 000 entries.
"$bin" --config "$work/big.toml" apply --dry-run | sed -n '/^# ---- ipset restore/,/^# ---- iptables-restore/p' | grep -v '^#' > "$work/sets.txt"
best=999999
for _ in $(seq "$runs"); do
  ip netns add "$ns"
  t0=$(now); ip netns exec "$ns" ipset restore < "$work/sets.txt"; ms=$(( ($(now) - t0) / 1000000 ))
  ip netns del "$ns"
  [ "$ms" -lt "$best" ] && best=$ms
done
printf '%-34s one ipset restore of %d lines: best %d ms (target: under 2000 ms)\n' "100 000 entries, ipset only" "$(wc -l < "$work/sets.txt")" "$best"
