#!/usr/bin/env bash
# Benchmark for issue 29 (root): what a flood from a banned source costs the
# target, with the ban sets matched in the filter table (old layout) and in the
# raw table / at priority raw, before conntrack (new layout), for both backends.
#
# What it compares, honestly: the rulesets are the pinned renders of
# rules/fwctl.toml against a clean kernel, byte for byte what fwctl renders:
#   old: `git show 9bd0f5b:tests/golden/fwctl.txt` and `.nft` (the commit
#        before the change: blacklist and feeds matched in FWCTL-INPUT, after
#        the conntrack INVALID/ESTABLISHED rules);
#   new: tests/golden/fwctl.txt + tests/golden/fwctl.raw, and fwctl.nft (the
#        golden test checks these equal what this tree renders).
# The banned source is 203.0.113.5 (inside the shipped blacklist entry
# 203.0.113.0/28), flooding TCP SYNs to port 22 (a service: only the ban stops
# them) with `hping3 --flood` for SECONDS seconds (default 5) from a namespace
# of its own over a veth into the target namespace. Reported per run: the
# packets the target's veth received (and sent: about 0, else the ban did not
# hold), and softirq CPU per packet. Softirq time
# of one namespace cannot be told apart from the host's: it is the host's
# softirq jiffies from /proc/stat (all CPUs) over the run, divided by the
# packets received; other load on the host shows up in it (run it on a quiet
# machine, and more than once: RUNS, default 1). Documentation addresses only;
# both namespaces are deleted on exit.
# Usage: sudo benches/raw-drop.sh [SECONDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
runs=${2:-1}
base=9bd0f5b
[ "$(id -u)" = 0 ] || { echo "raw-drop.sh: needs root; fix: sudo $0" >&2; exit 1; }
for t in hping3 ipset iptables-restore ip6tables-restore nft git timeout; do
  command -v "$t" >/dev/null || { echo "raw-drop.sh: $t is missing; fix: install it" >&2; exit 1; }
done
tgt=fwraw$$t src=fwraw$$s vt=fwr$$a vs=fwr$$b
work=$(mktemp -d)
cleanup() {
  ip netns del "$tgt" 2>/dev/null || true
  ip netns del "$src" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

git show "$base:tests/golden/fwctl.txt" >"$work/old.txt"
git show "$base:tests/golden/fwctl.nft" >"$work/old.nft"
cp tests/golden/fwctl.txt "$work/new.txt"
cp tests/golden/fwctl.raw "$work/new.raw"
cp tests/golden/fwctl.nft "$work/new.nft"
# One section (between "# ---- NAME" and the next "# ----") of a golden file.
section() { awk -v name="$2" '/^# ---- /{on = index($0, "# ---- " name " ") == 1; next} on' "$1"; }

lab() { # fresh namespaces: target 198.51.100.1, banned source 203.0.113.5
  ip netns del "$tgt" 2>/dev/null || true
  ip netns del "$src" 2>/dev/null || true
  ip netns add "$tgt"
  ip netns add "$src"
  ip link add "$vt" netns "$tgt" type veth peer name "$vs" netns "$src"
  ip -n "$tgt" link set lo up
  ip -n "$tgt" link set "$vt" up
  ip -n "$src" link set "$vs" up
  ip -n "$tgt" addr add 198.51.100.1/24 dev "$vt"
  ip -n "$src" addr add 203.0.113.5/24 dev "$vs"
  # Routes both ways, so that no reverse-path check drops the flood before
  # the filter table in the old layout.
  ip -n "$tgt" route add 203.0.113.0/24 dev "$vt"
  ip -n "$src" route add 198.51.100.0/24 dev "$vs"
  ip netns exec "$tgt" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf."$vt".rp_filter=0
  local mac
  mac=$(ip netns exec "$tgt" cat "/sys/class/net/$vt/address")
  ip -n "$src" neigh replace 198.51.100.1 lladdr "$mac" dev "$vs" nud permanent
}

install() { # backend layout
  case "$1" in
    iptables)
      section "$work/$2.txt" "ipset restore" | ip netns exec "$tgt" ipset restore
      if [ "$2" = new ]; then
        section "$work/new.raw" "iptables-restore" | ip netns exec "$tgt" iptables-restore --noflush
        section "$work/new.raw" "ip6tables-restore" | ip netns exec "$tgt" ip6tables-restore --noflush
      fi
      section "$work/$2.txt" "iptables-restore" | ip netns exec "$tgt" iptables-restore --noflush
      section "$work/$2.txt" "ip6tables-restore" | ip netns exec "$tgt" ip6tables-restore --noflush
      ;;
    nft) ip netns exec "$tgt" nft -f "$work/$2.nft" ;;
  esac
}

softirq() { awk '/^cpu /{print $8}' /proc/stat; }
rx() { ip netns exec "$tgt" cat "/sys/class/net/$vt/statistics/rx_packets"; }
tx() { ip netns exec "$tgt" cat "/sys/class/net/$vt/statistics/tx_packets"; }
hz=$(getconf CLK_TCK)

results=()
run() { # backend layout
  lab
  install "$1" "$2"
  local r0 s0 t0 r1 s1 t1 pk ticks ns
  r0=$(rx); t0=$(tx); s0=$(softirq)
  ip netns exec "$src" timeout -s INT "$secs" hping3 --flood -q -S -p 22 198.51.100.1 >/dev/null 2>&1 || true
  r1=$(rx); t1=$(tx); s1=$(softirq)
  pk=$((r1 - r0)); ticks=$((s1 - s0))
  ns=$(awk -v t="$ticks" -v hz="$hz" -v p="$pk" 'BEGIN { printf "%.0f", p ? t * 1e9 / hz / p : 0 }')
  local where
  if [ "$2" = old ]; then where="filter (old)"; else where="raw (new)"; fi
  results+=("$(printf '%-9s %-13s %12d %10d %9d %14d %16s' "$1" "$where" "$pk" "$((pk / secs))" "$((t1 - t0))" "$ticks" "$ns")")
}

for _ in $(seq "$runs"); do
  for backend in iptables nft; do
    for layout in old new; do
      run "$backend" "$layout"
    done
  done
done

echo "raw-drop: ${secs} s hping3 --flood (TCP SYN to port 22) from banned 203.0.113.5; $(nproc) cores, $(uname -r), USER_HZ $hz"
echo "softirq = the host's softirq jiffies, all CPUs (/proc/stat), over the run: not separable per namespace."
printf '%-9s %-13s %12s %10s %9s %14s %16s\n' backend "bans matched" "rx packets" "pkts/s" "tx pkts" "softirq ticks" "softirq ns/pkt"
printf '%s\n' "${results[@]}"
