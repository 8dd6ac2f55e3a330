#!/usr/bin/env bash
# Decoy ban latency. Usage: sudo benches/decoy.sh [CONNECTIONS]
# In throwaway network namespaces joined by a veth pair, with the fwctl ruleset
# applied in the target and capture running with decoy_ports = [2323]: CONNECTIONS
# sources (default 40, from 198.51.100.100 on) each complete one TCP handshake with
# the decoy, one after another. For each, the ip_blocked latency_us: from the moment
# the decoy listener accepted the connection to the netlink acknowledgement of the
# ipset add (target: median under 5 ms). Needs python3 (the client).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-40}
[ "$(id -u)" -eq 0 ] || { echo "benches/decoy.sh needs root (network namespaces)" >&2; exit 1; }
[ -n "${FWCTL_BIN:-}" ] || cargo build --release --quiet --bin fwctl
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
work=$(mktemp -d /dev/shm/fwctl-decoy.XXXXXX)
t=fwdc$$t c=fwdc$$c
cleanup() {
  [ -n "${cap:-}" ] && kill "$cap" 2>/dev/null || true
  ip netns del "$t" 2>/dev/null || true
  ip netns del "$c" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat >"$work/fwctl.toml" <<TOML
[[service]]
name = "ssh"
port = 22
[capture]
profile = "standard"
state_file = "$work/state.json"
decoy_ports = [2323]
TOML
ip netns add "$t"; ip netns add "$c"
ip link add vt netns "$t" type veth peer name vc netns "$c"
ip -n "$t" link set lo up; ip -n "$t" link set vt up; ip -n "$c" link set lo up; ip -n "$c" link set vc up
ip -n "$t" addr add 198.51.100.1/24 dev vt
for i in $(seq 100 $((99 + n))); do ip -n "$c" addr add "198.51.100.$((i % 250 + 2))/24" dev vc; done
export FWCTL_RUN_DIR=$work
ip netns exec "$t" "$bin" --config "$work/fwctl.toml" apply >/dev/null
ip netns exec "$t" "$bin" --config "$work/fwctl.toml" capture --iface vt --json >"$work/events" 2>"$work/err" &
cap=$!
for _ in $(seq 100); do grep -q 'capture on' "$work/err" && break; sleep 0.05; done
grep -q 'capture on' "$work/err" || { echo "capture did not start: $(cat "$work/err")"; exit 1; }
# One handshake per source, one after another (bounded: a 2 s timeout each).
ip netns exec "$c" python3 - "$n" <<'PY'
import socket, sys
n = int(sys.argv[1])
for i in range(100, 100 + n):
    s = socket.socket()
    s.settimeout(2)
    s.bind((f"198.51.100.{i % 250 + 2}", 0))
    try:
        s.connect(("198.51.100.1", 2323))
    except OSError:
        pass
    s.close()
PY
# Wait (bounded) for the last ban's event, then stop capture.
for _ in $(seq 100); do [ "$(grep -c '"ip_blocked"' "$work/events")" -ge "$n" ] && break; sleep 0.05; done
kill -TERM "$cap"; wait "$cap" || true; cap=
echo "== decoy ban latency ($n sources, one handshake each with decoy port 2323)"
grep '"ip_blocked"' "$work/events" | grep -o '"latency_us":[0-9]*' | cut -d: -f2 | sort -n | awk '
  { v[NR] = $1 } END { printf "  %d bans: median %d us, p90 %d us, max %d us (listener accept -> ipset add acknowledged)\n", NR, v[int((NR + 1) / 2)], v[int(NR * 0.9)], v[NR] }'
echo "  decoy_touched events: $(grep -c '"decoy_touched"' "$work/events")"
