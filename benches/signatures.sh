#!/usr/bin/env bash
# What payload signatures and flood tracking cost capture, side by side in one
# run. Usage: benches/signatures.sh [RUNS] [PACKETS]   (no root)
# A PACKETS-frame pcap from examples/pcapgen.rs --requests --flood-port 80 on
# /dev/shm (60 % spoofed SYN flood to port 80, 25 % connections to port 80: our
# SYN-ACK and the client's first data segment, an HTTP request, 1 % of them with
# UNION SELECT), replayed by `fwctl capture --pcap` with: no signatures; the ten
# signatures of benches/ten-signatures.toml; [capture.flood] on (port 80 is a
# service, so every SYN of the flood is tracked). Medians of RUNS, the
# overhead against the plain replay, and the events each found.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
packets=${2:-10000000}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example pcapgen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
work=$(mktemp -d /dev/shm/fwctl-sigbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
base='[[service]]
name = "http"
port = 80
[[service]]
name = "https"
port = 443
[[service]]
name = "ssh"
port = 22
[capture]
profile = "standard"'
printf '%s\n' "$base" >"$work/plain.toml"
{ printf '%s\n' "$base"; cat benches/ten-signatures.toml; } >"$work/sigs.toml"
{ printf '%s\n' "$base"; printf '[capture.flood]\nsyn_rate = "100/second"\nover = "5s"\n'; } >"$work/flood.toml"
"${FWCTL_EXAMPLES:-$PWD/target/release/examples}/pcapgen" --packets "$packets" --requests --flood-port 80 --out "$work/cap.pcap" >/dev/null
cat "$work/cap.pcap" >/dev/null
echo "pcap: $packets frames, $(stat -c %s "$work/cap.pcap") bytes (pcapgen --requests)"
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
for _ in $(seq "$runs"); do
  for v in plain sigs flood; do
    a=$(date +%s%N)
    "$bin" --config "$work/$v.toml" capture --pcap "$work/cap.pcap" --json >"$work/$v.json"
    b=$(date +%s%N); ms "$a" "$b" >>"$work/$v.ms"; echo >>"$work/$v.ms"
  done
done
median() { sort -n "$1" | awk 'NF { v[++n] = $1 } END { print v[int((n + 1) / 2)] }'; }
p=$(median "$work/plain.ms")
for v in plain sigs flood; do
  m=$(median "$work/$v.ms")
  printf '  %-38s median %5d ms  %5.2f M frames/s  %+6.1f %%  signature_matched %d  ip_blocked %d  connection_flood %d  syn_flood %d\n' \
    "$(case $v in plain) echo "no signatures";; sigs) echo "ten signatures on port 80";; flood) echo "[capture.flood] on";; esac)" \
    "$m" "$(awk -v n="$packets" -v t="$m" 'BEGIN { print n / t / 1000 }')" "$(awk -v a="$m" -v b="$p" 'BEGIN { print (a - b) / b * 100 }')" \
    "$(grep -c '"signature_matched"' "$work/$v.json" || true)" "$(grep -c '"ip_blocked"' "$work/$v.json" || true)" \
    "$(grep -c '"connection_flood"' "$work/$v.json" || true)" "$(grep -c '"syn_flood"' "$work/$v.json" || true)"
done
