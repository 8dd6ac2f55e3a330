#!/usr/bin/env bash
# The two firewall backends side by side, in one run (root). Each figure is
# measured for [firewall] backend = "iptables" and then "nftables", in
# throwaway network namespaces (documentation addresses only):
#  1. apply rules/fwctl.toml: the first install, then a re-apply;
#  2. apply with 100 000 set members (a [blacklist] file of IPv6
#     documentation addresses: the same members a 100 000-entry feed loads);
#  3. 100 000 bans from one scan into empty sets: the whole scan (read,
#     decide, one batch, state file) and the batch alone (ipset restore, or
#     one nft transaction);
#  4. capture's ban latency: 40 scanners one after another (nmap -sS, 7
#     ports each); the time from the kernel's receive timestamp of the packet
#     that crossed the threshold to the netlink acknowledgement of the add.
# Prints the median and best of RUNS runs (wall time, date +%s%N around the
# process). Usage: sudo benches/backends.sh [RUNS]   (needs nmap, nftables, ipset)
# FWCTL_BEFORE=/path/to/an/older/fwctl: the applies are measured with it too,
# run for run beside this one (`before` lines), for a change's effect in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example loggen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/loggen
work=$(mktemp -d /dev/shm/fwctl-backends.XXXXXX)
ns=fwbb$$ t=fwbb$$t c=fwbb$$c
cleanup() {
  [ -n "${cap:-}" ] && kill "$cap" 2>/dev/null || true
  for n in "$ns" "$t" "$c"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export FWCTL_RUN_DIR=$work

python3 - "$work/feed.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(100_000):
        f.write("2001:db8:%x:%x::1\n" % (0x1000 + i // 65536, i % 65536))
PY
cp rules/blacklist.txt "$work/"
for b in iptables nftables; do
  { cat rules/fwctl.toml; printf '\n[firewall]\nbackend = "%s"\n' "$b"; } >"$work/$b.toml"
  printf '[blacklist]\nfiles = ["feed.txt"]\n[[service]]\nname = "ssh"\nport = 22\n[firewall]\nbackend = "%s"\n' "$b" >"$work/big-$b.toml"
  # scan: the defaults (no shipped [blacklist], which would cover the offenders).
  printf '[firewall]\nbackend = "%s"\n' "$b" >"$work/scan-$b.toml"
done

stats() { sort -n | awk '{ v[NR] = $1 } END { printf "median %6d ms  best %6d ms", v[int((NR + 1) / 2)], v[1] }'; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

apply_bench() { # LABEL CONFIG-STEM
  local bins=("$bin") tags=("")
  [ -n "${FWCTL_BEFORE:-}" ] && bins+=("$FWCTL_BEFORE") && tags+=(" (before)")
  for b in iptables nftables; do
    local first=("" "") again=("" "")
    for _ in $(seq "$runs"); do
      for i in "${!bins[@]}"; do
        ip netns add "$ns"; ip -n "$ns" link set lo up
        local t0; t0=$(date +%s%N)
        ip netns exec "$ns" "${bins[$i]}" --config "$work/$2$b.toml" --state "$work/st.json" apply --force 2>/dev/null
        first[i]+="$(ms_since "$t0")"$'\n'
        t0=$(date +%s%N)
        ip netns exec "$ns" "${bins[$i]}" --config "$work/$2$b.toml" --state "$work/st.json" apply --force 2>/dev/null
        again[i]+="$(ms_since "$t0")"$'\n'
        ip netns del "$ns"; rm -f "$work/st.json"
      done
    done
    for i in "${!bins[@]}"; do
      printf '  %-9s %-28s first %s   re-apply %s\n' "$b" "$1${tags[$i]}" "$(grep . <<<"${first[$i]}" | stats)" "$(grep . <<<"${again[$i]}" | stats)"
    done
  done
}
# Other work on the machine moves every figure: its load is printed too.
load() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) on $(nproc) cores"; }
load
echo "== apply (wall time of the whole fwctl process)"
apply_bench "rules/fwctl.toml" ""
apply_bench "100 000 set members" "big-"

echo "== 100 000 bans from one scan into empty sets"
end=2026-11-21T12:00:00Z
"$gen" --size 8M --span 1h --sources 1000 --offenders 100000 --howmany 1 --within 30m \
  --end "$end" --out "$work/bans.log" >/dev/null 2>&1
for b in iptables nftables; do
  whole="" batch="" n=0
  for _ in $(seq "$runs"); do
    ip netns add "$ns"; ip -n "$ns" link set lo up
    ip netns exec "$ns" "$bin" --config "$work/scan-$b.toml" --state "$work/st.json" apply --force 2>/dev/null
    rm -f "$work/st.json"
    t0=$(date +%s%N)
    out=$(ip netns exec "$ns" "$bin" --config "$work/scan-$b.toml" --state "$work/st.json" scan --log "$work/bans.log" \
      --now "$end" --rule blocked --type tcp --howmany 1 --within 30m --ipset blacklist --removeafter 2h)
    whole+="$(ms_since "$t0")"$'\n'
    batch+="$(grep -o 'added: [0-9]* (one batch[^,]*, [0-9]* ms' <<<"$out" | grep -o '[0-9]* ms' | cut -d' ' -f1)"$'\n'
    n=$(grep -o 'added: [0-9]*' <<<"$out" | cut -d' ' -f2)
    ip netns del "$ns"; rm -f "$work/st.json"
  done
  printf '  %-9s whole scan %s   the batch alone %s   (%s added)\n' "$b" "$(grep . <<<"$whole" | stats)" "$(grep . <<<"$batch" | stats)" "$n"
done

echo "== capture's ban latency (40 scanners, one at a time, 7 ports each)"
ip netns add "$t"; ip netns add "$c"
ip link add vt netns "$t" type veth peer name vc netns "$c"
for n in "$t" "$c"; do ip -n "$n" link set lo up; done
ip -n "$t" link set vt up; ip -n "$c" link set vc up
ip -n "$t" addr add 198.51.100.1/24 dev vt
ip -n "$c" addr add 198.51.100.14/24 dev vc
for i in $(seq 100 140); do ip -n "$c" addr add "198.51.100.$i/24" dev vc; done
for b in iptables nftables; do
  cfg=$work/cap-$b.toml
  printf '[[service]]\nname = "ssh"\nport = 22\n[capture]\nprofile = "standard"\nstate_file = "%s"\n[firewall]\nbackend = "%s"\n' "$work/cap-$b.json" "$b" >"$cfg"
  ip netns exec "$t" "$bin" --config "$cfg" apply --force 2>/dev/null
  : >"$work/err"
  ip netns exec "$t" "$bin" --config "$cfg" capture --iface vt --json >"$work/events" 2>"$work/err" &
  cap=$!
  for _ in $(seq 100); do grep -q 'capture on' "$work/err" && break; sleep 0.05; done
  grep -q 'capture on' "$work/err" || { echo "capture did not start: $(cat "$work/err")"; exit 1; }
  for i in $(seq 100 139); do
    ip netns exec "$c" nmap -n -Pn -sS -p 1000-1006 --max-retries 0 -S "198.51.100.$i" -e vc 198.51.100.1 >/dev/null
  done
  kill -TERM "$cap"; wait "$cap" || true; cap=
  grep '"ip_blocked"' "$work/events" | grep -o '"latency_us":[0-9]*' | cut -d: -f2 | sort -n | awk -v b="$b" '
    { v[NR] = $1 } END { printf "  %-9s %d bans: median %d us, p90 %d us, max %d us\n", b, NR, v[int((NR + 1) / 2)], v[int(NR * 0.9)], v[NR] }'
  # Take this backend out before the other goes in (both own INPUT's verdict).
  ip netns exec "$t" "$bin" --config "$cfg" remove --sets 2>/dev/null
done
load
echo "(drop before conntrack, both backends: benches/raw-drop.sh)"
