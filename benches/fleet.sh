#!/usr/bin/env bash
# Benchmark for the fleet (root). Throwaway namespaces on one bridge: R runs
# redis-server (with a password), A and B run the fwctl ruleset and `fwctl sync`,
# X is the attacker. Usage: sudo benches/fleet.sh [BANS] [ACTIVE]
#  1. propagation: BANS (default 1000) `fwctl ban` on A, one after another; for each,
#     the time from starting the ban on A to the address being a member of B's set
#     (polled with `ipset test`, every 1 ms), median and p99;
#  2. oversized: 10 entries with a 20 MB reason wait in the stream (as after an
#     outage) and one ban after them; B's sync follows from before them: its peak
#     memory (VmHWM) once the ban is in;
#  3. catch-up: ACTIVE (default 100 000) running bans published by a scan on A; a
#     fresh sync on B (no state file) applies them all: the time to "caught up";
#  4. Redis down: the scan of 100 000 offenders and capture's ban latency (40 nmap
#     scanners), side by side with no [fleet] at all, in the same run.
# Needs redis-server, nmap (apt-get install redis-server nmap).
set -euo pipefail
cd "$(dirname "$0")/.."
bans=${1:-1000}
active=${2:-100000}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example loggen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/loggen
work=$(mktemp -d /dev/shm/fwctl-fleetbench.XXXXXX)
id=$$
r=fwfb${id}r a=fwfb${id}a b=fwfb${id}b x=fwfb${id}x
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in "$r" "$a" "$b" "$x"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$r"
ip -n "$r" link set lo up
ip -n "$r" link add br0 type bridge
ip -n "$r" addr add 203.0.113.100/24 dev br0
ip -n "$r" link set br0 up
n=1
for ns in "$a" "$b" "$x"; do
  ip netns add "$ns"
  ip link add "fb${id}$n" netns "$r" type veth peer name eth0 netns "$ns"
  ip -n "$r" link set "fb${id}$n" master br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  n=$((n + 1))
done
ip -n "$a" addr add 203.0.113.1/24 dev eth0
ip -n "$b" addr add 203.0.113.2/24 dev eth0
ip -n "$x" addr add 203.0.113.50/24 dev eth0
for i in $(seq 150 189); do ip -n "$x" addr add "203.0.113.$i/24" dev eth0; done

pw=bench-password
install -m 600 /dev/null "$work/redis.secret"
echo "$pw" >"$work/redis.secret"
mkdir -p "$work/redis"
(exec ip netns exec "$r" redis-server --port 6379 --bind 203.0.113.100 --requirepass "$pw" --save "" \
  --appendonly no --dir "$work/redis" >/dev/null 2>&1) &
redis=$!
pids+=("$redis")
rcli() { ip netns exec "$r" redis-cli -h 203.0.113.100 -a "$pw" --no-auth-warning "$@"; }
for _ in $(seq 100); do rcli ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done

for h in A B; do
  mkdir -p "$work/$h/run"
  cat >"$work/$h.toml" <<EOF
[capture]
profile = "aggressive"
state_file = "$work/$h/state.json"
[metrics]
listen = ""
[fleet]
redis = "redis://203.0.113.100:6379/0"
password_file = "$work/redis.secret"
host = "$h"
# The catch-up below is one host's 100 000 bans.
max_entries_per_host = 1000000
EOF
  sed '/^\[fleet\]/,$d' "$work/$h.toml" >"$work/$h-nofleet.toml"
done
ns_of() { if [ "$1" = B ]; then echo "$b"; else echo "$a"; fi; }
on() { # HOST ARGS...: fwctl on A or B
  local h=$1; shift
  FWCTL_RUN_DIR=$work/$h/run ip netns exec "$(ns_of "$h")" "$bin" "$@"
}
bg() { # HOST ARGS...: the same in the background; $! is fwctl itself (exec)
  local h=$1; shift
  (FWCTL_RUN_DIR=$work/$h/run exec ip netns exec "$(ns_of "$h")" "$bin" "$@") &
}
on A --config "$work/A.toml" apply >/dev/null 2>&1
on B --config "$work/B.toml" apply >/dev/null 2>&1

start_sync() { # HOST: until it has caught up; prints nothing
  local h=$1
  : >"$work/$h/sync.err"
  bg "$h" --config "$work/$h.toml" sync 2>"$work/$h/sync.err" >/dev/null
  sync_pid=$!
  pids+=("$sync_pid")
  for _ in $(seq 2000); do grep -q 'caught up' "$work/$h/sync.err" && return; sleep 0.005; done
  echo "sync on $h did not start: $(cat "$work/$h/sync.err")"; exit 1
}
percentiles() { sort -n | awk '{ v[NR] = $1 } END { printf "median %.1f ms, p99 %.1f ms, max %.1f ms (%d bans)", v[int((NR + 1) / 2)] / 1000, v[int(NR * 0.99)] / 1000, v[NR] / 1000, NR }'; }

echo "== propagation: ban on A -> member of B's set ($bans bans, one at a time)"
start_sync A; sa=$sync_pid
start_sync B; sb=$sync_pid
for i in $(seq "$bans"); do
  addr=$(printf '2001:db8:f::%x' "$i")
  t0=$(date +%s%N)
  on A --config "$work/A.toml" ban "$addr" --for 1h >/dev/null
  until ip netns exec "$b" ipset test blacklist_v6 "$addr" 2>/dev/null; do sleep 0.001; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 ))
done | percentiles
echo
# The same ban, A alone (no publish wait): what the fleet adds is the difference.
for i in $(seq 100); do
  t0=$(date +%s%N)
  on A --config "$work/A-nofleet.toml" ban "$(printf '2001:db8:e::%x' "$i")" --for 1h >/dev/null
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 ))
done | percentiles | sed 's/^/  reference: fwctl ban on A alone (no [fleet]): /'
echo
kill "$sb"; wait "$sb" 2>/dev/null || true

echo "== oversized: 10 entries with a 20 MB reason in the stream, then one ban; B's sync follows"
now=$(date +%s)
for i in $(seq 10); do
  # The reason (last) from stdin: 20 MB is past what one command-line argument may hold.
  head -c 20971520 /dev/zero | tr '\0' x | rcli -x XADD fwctl:bans '*' v 1 id "$(printf 'b16%013x' "$i")" \
    op ban addr "198.51.100.$i" role blacklist at "$now" until $((now + 3600)) secs 3600 offence 1 \
    host Z origin capture fwctl 0 reason >/dev/null
done
rcli XADD fwctl:bans '*' v 1 id b170000000000000 op ban addr 198.51.100.99 role blacklist at "$now" \
  until $((now + 3600)) secs 3600 offence 1 host Z origin capture fwctl 0 reason "after them" >/dev/null
t0=$(date +%s%N)
start_sync B; sb=$sync_pid
until ip netns exec "$b" ipset test blacklist 198.51.100.99 2>/dev/null; do sleep 0.001; done
t1=$(date +%s%N)
echo "  B's sync: the ban after them in $(( (t1 - t0) / 1000000 )) ms; peak memory $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$sb/status") MB; $(grep -c 'oversized' "$work/B/sync.err") lines say oversized"
kill "$sb"; wait "$sb" 2>/dev/null || true

echo "== catch-up: a fresh host applies $active running remote bans"
log=$work/bans.log
"$gen" --size 8M --span 1h --sources 1000 --offenders "$active" --howmany 1 --within 30m --out "$log" >/dev/null 2>&1
t0=$(date +%s%N)
out=$(on A --config "$work/A.toml" scan --log "$log" --rule blocked --type tcp --howmany 1 --within 30m \
  --ipset blacklist --removeafter 2h 2>&1)
t1=$(date +%s%N)
echo "  A's scan banned and published: $(grep -o 'added: [0-9]*' <<<"$out") in $(( (t1 - t0) / 1000000 )) ms; index: $(rcli zcard fwctl:bans:active) running bans"
rm -f "$work/B/state.json"
on B --config "$work/B.toml" apply >/dev/null 2>&1
t0=$(date +%s%N)
start_sync B; sb=$sync_pid
t1=$(date +%s%N)
echo "  fresh sync on B: $(grep -o 'caught up.*' "$work/B/sync.err") in $(( (t1 - t0) / 1000000 )) ms"
echo "  B's sets: $(( $(ip netns exec "$b" ipset list -t blacklist | awk '/entries/ {print $4}') + $(ip netns exec "$b" ipset list -t blacklist_v6 | awk '/entries/ {print $4}') )) members"
kill "$sb" "$sa"; wait "$sb" "$sa" 2>/dev/null || true

echo "== Redis down: the same scan and capture's bans, without [fleet] and with Redis stopped"
kill "$redis"; wait "$redis" 2>/dev/null || true
for conf in nofleet fleet; do
  c=$work/A-$conf.toml; [ "$conf" = fleet ] && c=$work/A.toml
  label=$([ "$conf" = fleet ] && echo "[fleet], Redis down" || echo "no [fleet]         ")
  times=()
  for _ in 1 2 3 4 5; do
    # Empty sets and no state file: every run bans all of them anew.
    rm -f "$work/A/state.json" "$work/A/fleet-outbox.tsv"
    on A --config "$c" remove --sets >/dev/null 2>&1; on A --config "$c" apply >/dev/null 2>&1
    t0=$(date +%s%N)
    on A --config "$c" scan --log "$log" --rule blocked --type tcp --howmany 1 --within 30m --ipset blacklist --removeafter 2h >/dev/null 2>&1
    times+=($(( ($(date +%s%N) - t0) / 1000000 )))
  done
  IFS=$'\n' s=($(sort -n <<<"${times[*]}")); unset IFS
  echo "  scan of $active offenders, $label: best ${s[0]} ms, median ${s[2]} ms$([ "$conf" = fleet ] && echo "; $(wc -l <"$work/A/fleet-outbox.tsv") bans wait in the fleet outbox")"
  on A --config "$c" remove --sets >/dev/null 2>&1; on A --config "$c" apply >/dev/null 2>&1
  bg A --config "$c" capture --iface eth0 --json >"$work/events" 2>"$work/cap.err"
  cap=$!
  for _ in $(seq 200); do grep -q 'capture on' "$work/cap.err" && break; sleep 0.05; done
  for i in $(seq 150 189); do
    ip netns exec "$x" nmap -n -Pn -sS -p 1000-1006 --max-retries 0 -S "203.0.113.$i" -e eth0 203.0.113.1 >/dev/null
  done
  kill -TERM "$cap"; wait "$cap" || true
  grep '"ip_blocked"' "$work/events" | grep -o '"latency_us":[0-9]*' | cut -d: -f2 | sort -n | awk -v l="$label" '
    { v[NR] = $1 } END { printf "  capture, %s: %d bans, median %d us, p90 %d us (kernel receive -> ipset add)\n", l, NR, v[int((NR + 1) / 2)], v[int(NR * 0.9)] }'
done
