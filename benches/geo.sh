#!/usr/bin/env bash
# Benchmark for [geo] (root). Two country databases written by
# examples/geogen.rs (documentation addresses only), two shapes:
#  spread  600 000 networks, 676 countries in turn (nothing merges): the walk
#          of a GeoLite2-Country-sized database for one blocked country;
#  one     200 000 networks, two countries alternating: the blocked country's
#          set gets 100 000 members.
# Each: `fwctl apply` in a throwaway network namespace (first install), beside
# the same config without [geo] in the same run (the reference), and the walk's
# own line (size, networks, ms) and peak memory (GNU time's max RSS).
# Prints best and median of RUNS runs. Usage: sudo benches/geo.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example geogen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/geogen
ns=fwgeo$$
work=$(mktemp -d)
chmod 755 "$work"
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$gen" --out "$work/spread.mmdb" --shape spread --networks 600000
"$gen" --out "$work/one.mmdb" --shape one --networks 200000
printf '[[service]]\nname = "ssh"\nport = 22\n' > "$work/ref.toml"
for shape in spread one; do
  printf '[geo]\ncountry_db = "%s"\nblock_countries = ["AA"]\n[[service]]\nname = "ssh"\nport = 22\n' \
    "$work/$shape.mmdb" > "$work/$shape.toml"
done

now() { date +%s%N; }
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "best %5d   median %5d", a[1], a[int((NR+1)/2)]}'; }
measure() { # label config
  local label=$1 cfg=$2 ms=() rss=() line=""
  for _ in $(seq "$runs"); do
    ip netns add "$ns"
    local t0; t0=$(now)
    FWCTL_RUN_DIR=$work FWCTL_STATE=$work/state.json /usr/bin/time -f '%M' -o "$work/rss" \
      ip netns exec "$ns" "$bin" --config "$cfg" apply 2> "$work/err" >/dev/null
    ms+=($(( ($(now) - t0) / 1000000 )))
    rss+=($(( $(tail -1 "$work/rss") / 1024 )))
    line=$(grep -h 'geo' "$work/err" | tr '\n' ' ' || true)
    ip netns del "$ns"
    rm -rf "$work/geo" "$work/state.json"
  done
  printf '%-28s apply ms: %s   max RSS MiB: %s\n' "$label" "$(stats "${ms[@]}")" "$(stats "${rss[@]}")"
  [ -z "$line" ] || printf '%-28s %s\n' "" "$line"
}
echo "fwctl [geo], $runs runs each, $(nproc) cores, $(uname -r)"
measure "reference (no [geo])" "$work/ref.toml"
measure "spread: 600k nets, 1 of 676" "$work/spread.toml"
measure "one: 200k nets, half of them" "$work/one.toml"
