#!/usr/bin/env bash
# Benchmark for `fwctl capture`. Usage: sudo benches/capture.sh [RUNS] [PACKETS]
#  1. replay: PACKETS frames (default 10 000 000: spoofed SYN flood, benign clients
#     with replies, established traffic, UDP, 20 scanners) from a pcap on /dev/shm,
#     side by side with `tcpdump -r` applying a similar filter to the same file;
#  2. (root) live, in throwaway network namespaces joined by a veth pair, with the
#     fwctl ruleset applied in the target: RUNS 5-second `hping3 --flood` floods
#     from one source and from random spoofed sources (an nmap scan in the
#     middle), each beside the same flood under `tcpdump -i`: the rate hping3
#     reached, the kernel's packet and drop counters, the capturer's CPU per
#     million packets (schedstat of all its threads) and its wake-ups
#     (voluntary context switches), medians side by side; then the two floods
#     as tcpdump recorded them, replayed by both; then a 15-second flood from
#     about a million spoofed sources: peak memory, the scanner banned;
#  3. (root) ban latency: 40 scanners, one after another; for each, the time from
#     the kernel's receive timestamp of the packet that crossed the threshold to
#     the netlink acknowledgement of the ipset add (the ip_blocked latency_us);
#  4. (root) the rand-source flood and the ban latency again, without and with a
#     [[notify]] sink that accepts connections and never answers.
# Needs tcpdump, hping3, nmap (apt-get install tcpdump hping3 nmap).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
packets=${2:-10000000}
# FWCTL_BIN (and FWCTL_EXAMPLES for the generators): builds made elsewhere,
# e.g. by benches/compare.sh; nothing is built then.
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example pcapgen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
work=$(mktemp -d /dev/shm/fwctl-capbench.XXXXXX)
t=fwcb$$t c=fwcb$$c
cleanup() {
  [ -n "${cap:-}" ] && kill "$cap" 2>/dev/null || true
  [ -n "${hang:-}" ] && kill "$hang" 2>/dev/null || true
  ip netns del "$t" 2>/dev/null || true
  ip netns del "$c" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat >"$work/fwctl.toml" <<EOF
[[service]]
name = "ssh"
port = 22
[[service]]
name = "http"
port = 80
[[service]]
name = "https"
port = 443
[capture]
profile = "standard"
state_file = "$work/state.json"
EOF

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }
best_median() { sort -n | awk '{ v[NR] = $1 } END { printf "best %d ms  median %d ms", v[1], v[int((NR + 1) / 2)] }'; }

echo "== replay"
"${FWCTL_EXAMPLES:-$PWD/target/release/examples}/pcapgen" --packets "$packets" --out "$work/cap.pcap" >"$work/scanners"
cat "$work/cap.pcap" >/dev/null
echo "pcap: $packets frames, $(stat -c %s "$work/cap.pcap") bytes, $(wc -l <"$work/scanners") scanners"
for _ in $(seq "$runs"); do
  a=$(date +%s%N)
  /usr/bin/time -f %M -o "$work/rss" "$bin" --config "$work/fwctl.toml" capture --pcap "$work/cap.pcap" --json >"$work/replay.json"
  b=$(date +%s%N); ms "$a" "$b"; echo
done | best_median >"$work/r"
found=$(grep -c '"event":"ip_blocked"' "$work/replay.json")
best=$(grep -o 'best [0-9]*' "$work/r" | cut -d' ' -f2)
printf '  %-44s %s  %5.2f M frames/s  max RSS %d MB  scanners banned %d/%d\n' "fwctl capture --pcap" "$(cat "$work/r")" \
  "$(awk -v n="$packets" -v t="$best" 'BEGIN { print n / t / 1000 }')" "$(( $(cat "$work/rss") / 1024 ))" "$found" "$(wc -l <"$work/scanners")"
if command -v tcpdump >/dev/null; then
  for _ in $(seq "$runs"); do
    a=$(date +%s%N)
    tcpdump -r "$work/cap.pcap" -w /dev/null 'udp or (tcp[tcpflags] & (tcp-ack|tcp-rst) == 0)' 2>/dev/null
    b=$(date +%s%N); ms "$a" "$b"; echo
  done | best_median >"$work/r"
  best=$(grep -o 'best [0-9]*' "$work/r" | cut -d' ' -f2)
  printf '  %-44s %s  %5.2f M frames/s  (filter only, no detection)\n' "tcpdump -r (same filter) -w /dev/null" "$(cat "$work/r")" \
    "$(awk -v n="$packets" -v t="$best" 'BEGIN { print n / t / 1000 }')"
fi
rm -f "$work/cap.pcap"

[ "$(id -u)" = 0 ] || { echo "(not root: live benchmarks skipped)"; exit 0; }
echo "== live (veth between two namespaces, fwctl ruleset applied)"
ip netns add "$t"; ip netns add "$c"
ip link add vt netns "$t" type veth peer name vc netns "$c"
for ns in "$t" "$c"; do ip -n "$ns" link set lo up; done
ip -n "$t" link set vt up; ip -n "$c" link set vc up
ip -n "$t" addr add 198.51.100.1/24 dev vt
ip -n "$c" addr add 198.51.100.14/24 dev vc
for i in $(seq 100 140); do ip -n "$c" addr add "198.51.100.$i/24" dev vc; done
ip netns exec "$t" "$bin" --config "$work/fwctl.toml" apply >/dev/null

# start_capture: run capture in the target, wait until its socket is open.
start_capture() {
  : >"$work/err"
  ip netns exec "$t" "$bin" --config "${conf:-$work/fwctl.toml}" capture --iface vt --json \
    >"$work/events" 2>"$work/err" &
  cap=$!
  for _ in $(seq 100); do grep -q 'capture on' "$work/err" && return; sleep 0.05; done
  echo "capture did not start: $(cat "$work/err")"; exit 1
}
stop_capture() { kill -TERM "$cap"; wait "$cap" || true; cap=; }
stat() { grep '"capture_stats"' "$work/events" | tail -1 | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
# CPU time of every thread of process $1 (ns), and its main thread's wake-ups.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { print s + 0 }'; }
wakes() { awk '/^voluntary_ctxt_switches/ { print $2 }' /proc/"$1"/status; }
# record TOOL LABEL PACKETS RATE DROPS CPU_NS WAKES: one flood's figures.
record() { echo "$3 $4 $5 $(awk -v c="$6" -v n="$3" 'BEGIN { printf "%.0f", n ? c / n : 0 }') $7" >>"$work/res-$1-$2"; }

flood() { # LABEL SECONDS HPING3-ARGS...
  local label=$1 secs=$2; shift 2
  ip netns exec "$t" ipset flush blacklist
  start_capture
  local c0 w0 c1 w1; c0=$(cpu_ns "$cap"); w0=$(wakes "$cap")
  ip netns exec "$c" timeout "$secs" hping3 --flood -q -S -p "$([ -n "${flood80:-}" ] && echo 80 || echo 81)" "$@" 198.51.100.1 >/dev/null 2>&1 &
  local fl=$!
  if [ "$label" != one-source ]; then
    sleep $((secs / 2)); ip netns exec "$c" nmap -n -Pn -sS -p 3000-3009 --max-retries 0 -S 198.51.100.14 -e vc 198.51.100.1 >/dev/null
  fi
  wait "$fl" || true
  c1=$(cpu_ns "$cap"); w1=$(wakes "$cap")
  stop_capture
  local pk; pk=$(stat kernel_packets)
  [ "$secs" = 5 ] && [ -z "${flood80:-}" ] && record fwctl "$label" "$pk" "$((pk / secs))" "$(stat kernel_drops)" "$((c1 - c0))" "$((w1 - w0))"
  printf '  fwctl capture, hping3 --flood %-11s %2d s: %8d packets = %6d/s  kernel drops %d  tracked %6d  peak RSS %d MB  CPU %d ms  %d wake-ups' "$label" "$secs" \
    "$pk" "$((pk / secs))" "$(stat kernel_drops)" "$(stat tracked)" "$(( $(stat peak_rss_kb) / 1024 ))" "$(((c1 - c0) / 1000000))" "$((w1 - w0))"
  if [ "$label" != one-source ]; then
    local lat; lat=$(grep '"ip_blocked"' "$work/events" | grep -o '"latency_us":[0-9]*' | cut -d: -f2 | head -1)
    printf '  nmap scanner in the flood: %s' "$( [ -n "$lat" ] && echo "banned, ${lat} us after its crossing packet" || echo NOT banned)"
  fi
  echo
}
# The same floods seen by tcpdump, as the reference.
# With OUT set, tcpdump writes the flood there (for the replay) instead of
# /dev/null, and its figures are not recorded.
tcpdump_flood() { # LABEL HPING3-ARGS...
  local label=$1; shift
  ip netns exec "$t" tcpdump -i vt -w "${out:-/dev/null}" 'tcp[tcpflags] & tcp-ack == 0' >/dev/null 2>"$work/td" &
  local td=$!
  for _ in $(seq 100); do grep -q 'listening on' "$work/td" && break; sleep 0.05; done
  local c0 w0 c1 w1; c0=$(cpu_ns "$td"); w0=$(wakes "$td")
  ip netns exec "$c" timeout 5 hping3 --flood -q -S -p 81 "$@" 198.51.100.1 >/dev/null 2>&1 || true
  c1=$(cpu_ns "$td"); w1=$(wakes "$td")
  kill -INT "$td"; wait "$td" || true
  local got drop; got=$(grep -o '^[0-9]* packets received by filter' "$work/td" | cut -d' ' -f1)
  drop=$(grep -o '^[0-9]* packets dropped by kernel' "$work/td" | cut -d' ' -f1)
  [ -z "${out:-}" ] && record tcpdump "$label" "$got" "$((got / 5))" "$drop" "$((c1 - c0))" "$((w1 - w0))"
  printf '  tcpdump,       hping3 --flood %-11s  5 s: %8d packets = %6d/s  kernel drops %d  CPU %d ms  %d wake-ups\n' "$label" "$got" "$((got / 5))" "$drop" \
    "$(((c1 - c0) / 1000000))" "$((w1 - w0))"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
col() { awk -v k="$2" '{ print $k }' "$work/res-$1" | median; }
for _ in $(seq "$runs"); do
  flood one-source 5
  command -v tcpdump >/dev/null && tcpdump_flood one-source
  flood rand-source 5 --rand-source
  command -v tcpdump >/dev/null && tcpdump_flood rand-source --rand-source
done
if command -v tcpdump >/dev/null; then
  echo "  medians of $runs (5 s floods):"
  printf '    %-24s %10s %10s %13s %12s\n' "" "hping3 /s" "drops" "CPU ms/Mpkt" "wake-ups"
  for label in one-source rand-source; do
    for tool in fwctl tcpdump; do
      printf '    %-24s %10s %10s %13s %12s\n' "$tool $label" "$(col "$tool-$label" 2)" "$(col "$tool-$label" 3)" "$(col "$tool-$label" 4)" "$(col "$tool-$label" 5)"
    done
    printf '    %-24s %9s%%\n' "fwctl rate / tcpdump's" "$(awk -v a="$(col "fwctl-$label" 2)" -v b="$(col "tcpdump-$label" 2)" 'BEGIN { printf "%.1f", a / b * 100 }')"
  done
  echo "== the floods as tcpdump recorded them, replayed"
  for label in one-source rand-source; do
    out="$work/$label.pcap" tcpdump_flood "$label" $([ "$label" = rand-source ] && echo --rand-source) >/dev/null
    n=$(tcpdump -nq -r "$work/$label.pcap" 2>/dev/null | wc -l)
    for _ in $(seq "$runs"); do
      a=$(date +%s%N); "$bin" --config "$work/fwctl.toml" capture --pcap "$work/$label.pcap" --json >/dev/null; b=$(date +%s%N); ms "$a" "$b"; echo
    done | median >"$work/f"
    for _ in $(seq "$runs"); do
      a=$(date +%s%N); tcpdump -r "$work/$label.pcap" -w /dev/null 'udp or (tcp[tcpflags] & (tcp-ack|tcp-rst) == 0)' 2>/dev/null; b=$(date +%s%N); ms "$a" "$b"; echo
    done | median >"$work/d"
    printf '  %-11s %8d frames: fwctl capture --pcap median %d ms (%.2f M/s), tcpdump -r median %d ms (%.2f M/s)\n' "$label" "$n" \
      "$(cat "$work/f")" "$(awk -v n="$n" -v t="$(cat "$work/f")" 'BEGIN { print n / (t ? t : 1) / 1000 }')" \
      "$(cat "$work/d")" "$(awk -v n="$n" -v t="$(cat "$work/d")" 'BEGIN { print n / (t ? t : 1) / 1000 }')"
    rm -f "$work/$label.pcap"
  done
fi
echo "== a million spoofed sources"
flood rand-source 15 --rand-source
# Payload signatures at the flood rate: the same SYN flood, to port 80 (a
# signature port), without and with the ten signatures.
echo "== ten payload signatures (benches/ten-signatures.toml), SYN flood to port 80"
{ cat "$work/fwctl.toml"; cat benches/ten-signatures.toml; } >"$work/sigs.toml"
for conf in "$work/fwctl.toml" "$work/sigs.toml" "$work/fwctl.toml" "$work/sigs.toml"; do
  printf '  %-15s' "$([ "$conf" = "$work/sigs.toml" ] && echo "ten signatures" || echo "none")"
  flood80=1 flood rand-source 5 --rand-source
done
conf=

latency() {
  ip netns exec "$t" ipset flush blacklist
  start_capture
  for i in $(seq 100 139); do
    ip netns exec "$c" nmap -n -Pn -sS -p 1000-1006 --max-retries 0 -S "198.51.100.$i" -e vc 198.51.100.1 >/dev/null
  done
  stop_capture
  grep '"ip_blocked"' "$work/events" | grep -o '"latency_us":[0-9]*' | cut -d: -f2 | sort -n | awk '
    { v[NR] = $1 } END { printf "  %d bans: median %d us, p90 %d us, max %d us (kernel receive -> ipset add acknowledged)\n", NR, v[int((NR + 1) / 2)], v[int(NR * 0.9)], v[NR] }'
  echo "  in the set: $(ip netns exec "$t" ipset list blacklist | grep -c '^198.51.100.1[0-3][0-9] ')"
}
echo "== ban latency (40 scanners, one at a time, 7 ports each)"
latency

# A [[notify]] sink that accepts the connection and never answers (benches/sink.py
# --hang, timeout 60 s): the worst endpoint. Its thread hangs; the packet loop must not.
echo "== a notification sink that never answers, side by side with none"
# (A build from before [[notify]] existed has nothing to compare here.)
"$bin" notify --help >/dev/null 2>&1 || { echo "  (this build has no [[notify]]: skipped)"; exit 0; }
cp "$work/fwctl.toml" "$work/sink.toml"
printf '[[notify]]\nname = "hung"\nurl = "http://127.0.0.1:18091/hook"\ntimeout = "60s"\n' >>"$work/sink.toml"
ip netns exec "$t" python3 "$PWD/benches/sink.py" --hang 18091 >"$work/hang" &
hang=$!
for _ in $(seq 100); do grep -q ready "$work/hang" && break; sleep 0.05; done
grep -q ready "$work/hang" || { echo "benches/sink.py --hang did not start"; exit 1; }
for conf in "$work/fwctl.toml" "$work/sink.toml"; do
  echo " $([ "$conf" = "$work/sink.toml" ] && echo "with the hung sink:" || echo "no sink:")"
  flood rand-source 5 --rand-source
  latency
done
conf=
