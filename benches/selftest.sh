#!/usr/bin/env bash
# Benchmark for `fwctl selftest` (root): RUNS runs on the shipped config
# (rules/fwctl.toml, iptables backend), and on the same with nftables, a feed,
# decoy ports and a UDP service (every row runs). selftest builds and deletes its
# own namespaces; this host's firewall is not touched. Prints the best and
# median of the run's own elapsed_ms and fails when a run is not ok or takes
# 15 s or more (issue 31's bound). Usage: sudo benches/selftest.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ -n "${FWCTL_BIN:-}" ] || cargo build --release --quiet
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -e 's/^\[sets\]$/[firewall]\nbackend = "nftables"\n\n[sets]/' \
    -e 's/^# decoy_ports = \[23, 2323, 3389, 5900\]$/decoy_ports = [2323, 5900]/' \
    -e 's|^files = \["blacklist.txt"\]$|files = []|' rules/fwctl.toml > "$work/all.toml"
printf '\n[[service]]\nname = "dns"\nport = 53\nprotocol = "udp"\n\n[[feed]]\nname = "drop"\nurl = "https://feeds.example.net/drop.txt"\n' >> "$work/all.toml"

measure() { # label config
  local label=$1 cfg=$2 ms=()
  for _ in $(seq "$runs"); do
    local out; out=$(FWCTL_RUN_DIR=$work "$bin" --config "$cfg" --state "$work/state.json" selftest --json)
    ms+=("$(python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"], d; print(d["elapsed_ms"])' <<<"$out")")
  done
  printf '%s\n' "${ms[@]}" | sort -n | awk -v l="$label" '{a[NR]=$1} END {
    printf "%-44s best %5d ms   median %5d ms   worst %5d ms\n", l, a[1], a[int((NR+1)/2)], a[NR]
    if (a[NR] >= 15000) { print "over the 15 s bound"; exit 1 } }'
}
echo "fwctl selftest, $runs runs each, $(nproc) cores, $(uname -r)"
measure "rules/fwctl.toml (iptables)" rules/fwctl.toml
measure "nftables + feed + decoys + UDP (all rows)" "$work/all.toml"
