#!/usr/bin/env bash
# Benchmark for `fwctl watch` (issue 30 part 4), side by side with fail2ban in one run,
# on the same generated sshd stream (examples/watchgen.rs: an auth.log on /dev/shm appended
# to every millisecond at RATE lines/s, with attackers whose 6th failure crosses howmany = 5
# at a recorded moment, and decoys that send exactly 5). For each tool, shape and rate:
#  - banned: attackers banned by GRACE s after the stream ended (of N), and decoys banned
#    (must be 0); for fwctl also checked in the kernel sets (ipset list in the namespace);
#  - latency: from the end of the write() that held an attacker's crossing line to its ban
#    (fwctl: the watch_ban event's at_us, taken after the kernel set add returned;
#    fail2ban: `date +%s%N` in its recording action), p50 / p99 (nearest rank) / max;
#  - CPU: the tool's process is put in a cgroup of its own (v1 cpuacct) as it starts, so
#    cpuacct.usage counts, in ns, the run time of all its threads and of every process it
#    starts (fail2ban's action shells), exited ones included; from the stream's first line
#    to the end of the drain, per line written ("CPU us/line"); that CPU over the same wall
#    time as % of one core; and, as a check, utime + stime + cutime + cstime of
#    /proc/PID/stat (all threads, waited-for children; in clock ticks of 10 ms: too coarse
#    for a few ms) per line ("ticks us/line"); and the process's threads.
#    Tool pinned to CPU 1, generator to CPU 0 (taskset).
# fail2ban (Debian's 1.0.2: apt-get install fail2ban python3-pyinotify, never started on
# the host) runs in the foreground with its own config, socket, pid file and an in-memory
# database under a temp dir: pyinotify backend, the stock sshd filter (mode normal),
# maxretry 6 findtime 10m, an action that only records (no iptables). fwctl runs
# `watch --json` in a throwaway network namespace after `apply --force` there, with
# rules/fwctl.toml plus one [[watch]] (sshd, howmany 5, within 10m, blacklist, 1h), alone
# followed (--only), and [aggregate] v6_count_prefix = 128 (each address, as fail2ban).
# Usage: benches/watch.sh [SECS] [RATES] [SHAPES] [TOOLS]     (root)
#   e.g. benches/watch.sh 20 "1000 3000 10000 100000 300000" "short long swarm" "fail2ban fwctl wakes"
#   (shapes: examples/watchgen.rs --shape: short, long, swarm)
#   (wakes: the floor, a process that only sleeps and wakes at watch's pace: on a VM
#   each wake-up from an idle CPU costs the woken task tens of microseconds)
#   REPEAT=3 (each row that many times, the tools alternating; then the median run of
#   each by CPU per line: the VM's wake-up cost moves by a third between runs),
#   GRACE=5 (s after the stream for the last bans), ATTACKERS=100, KEEP=1 (keep the work
#   directory: logs, bans, fail2ban.log, watch.out); rows above the first rate
#   a tool falls behind at (not every attacker banned) are skipped for that tool.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
rates=${2:-"1000 3000 10000 100000 300000"}
shapes=${3:-"short long"}
tools=${4:-"fail2ban fwctl wakes"}
grace=${GRACE:-5}
repeat=${REPEAT:-1}
attackers=${ATTACKERS:-100}
[ "$(id -u)" -eq 0 ] || { echo "benches/watch.sh: needs root (network namespaces)"; exit 1; }
# FWCTL_BIN / FWCTL_EXAMPLES: builds made elsewhere; nothing is built then.
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example watchgen --example wakes; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/watchgen
wakes=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/wakes
if [[ " $tools " == *" fail2ban "* ]] && ! command -v fail2ban-server >/dev/null; then
  echo "fail2ban is not installed: apt-get install fail2ban python3-pyinotify (with a"
  echo "/usr/sbin/policy-rc.d that exits 101, so that it does not start on the host)"; exit 1
fi
work=$(mktemp -d /dev/shm/fwctl-watch.XXXXXX)
ns=fwwatch$$
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  [ -n "${cg:-}" ] && rmdir "$cg" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# fwctl's config: the shipped one (its [blacklist] file beside it) plus the bench's watch,
# the one followed (--only bench: not the shipped one's /var/log/auth.log).
cp rules/fwctl.toml rules/blacklist.txt "$work/"
cat >>"$work/fwctl.toml" <<EOF

[[watch]]
name = "bench"
source = "sshd"
log = "$work/auth.log"
howmany = 5
within = "10m"
ipset = "blacklist"
removeafter = "1h"

# Each attacker counted by its own address, as fail2ban counts (the IPv6 ones share a /64);
# no gathering into prefixes.
[aggregate]
v6_count_prefix = 128
min_offenders = 0
EOF

# fail2ban's config directory: nothing of /etc/fail2ban but the sshd filter.
f2b=$work/fail2ban
mkdir -p "$f2b/filter.d" "$f2b/action.d"
cp /etc/fail2ban/filter.d/sshd.conf /etc/fail2ban/filter.d/common.conf "$f2b/filter.d/" 2>/dev/null || true
cat >"$f2b/fail2ban.conf" <<EOF
[Definition]
loglevel = INFO
logtarget = $work/fail2ban.log
syslogsocket = auto
socket = $work/f2b.sock
pidfile = $work/f2b.pid
dbfile = :memory:
dbpurgeage = 1d
allowipv6 = auto
EOF
cat >"$f2b/action.d/record.conf" <<EOF
[Definition]
actionstart =
actionstop =
actioncheck =
actionban = printf '%%s %%s\\n' "\$(date +%%s%%N)" <ip> >> $work/bans
actionunban =
EOF
cat >"$f2b/jail.conf" <<EOF
[DEFAULT]
ignoreself = false
ignoreip =
usedns = no
[sshd]
enabled = true
filter = sshd
backend = pyinotify
logpath = $work/auth.log
maxretry = 6
findtime = 10m
bantime = 1h
action = record
EOF

# cpu PID: utime + stime + cutime + cstime, in clock ticks.
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$1/stat"; }
# cpu_ns: the ns of CPU used by everything in the bench's cgroup (the tool and what it starts).
cg=/sys/fs/cgroup/cpuacct/fwctl-watch-bench-$$
[ -d /sys/fs/cgroup/cpuacct ] || { echo "benches/watch.sh: needs the cgroup v1 cpuacct controller at /sys/fs/cgroup/cpuacct"; exit 1; }
mkdir -p "$cg"
cpu_ns() { cat "$cg/cpuacct.usage"; }
banned() {
  case $1 in
    fail2ban) wc -l <"$work/bans" ;;
    fwctl) grep -c '"watch_ban"' "$work/watch.out" || true ;;
  esac
}

start_tool() {
  : >"$work/bans"
  case $1 in
    fail2ban)
      taskset -c 1 fail2ban-server -f -x -c "$f2b" -s "$work/f2b.sock" -p "$work/f2b.pid" \
        >"$work/tool.err" 2>&1 &
      pid=$!
      for _ in $(seq 200); do
        fail2ban-client -c "$f2b" -s "$work/f2b.sock" status sshd >/dev/null 2>&1 && return 0
        sleep 0.05
      done ;;
    fwctl)
      ip netns del "$ns" 2>/dev/null || true
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      rm -rf "$work/state" && mkdir "$work/state"
      FWCTL_RUN_DIR=$work/state ip netns exec "$ns" "$bin" --config "$work/fwctl.toml" \
        --state "$work/state/state.json" apply --force >"$work/apply.out" 2>&1 \
        || { cat "$work/apply.out"; return 1; }
      FWCTL_RUN_DIR=$work/state taskset -c 1 ip netns exec "$ns" "$bin" --config "$work/fwctl.toml" \
        --state "$work/state/state.json" watch --json --only bench >"$work/watch.out" 2>"$work/tool.err" &
      pid=$!
      # Ready: it holds the log open, or an inotify watch (the log is empty: a
      # watch that starts at its end starts at its beginning).
      for _ in $(seq 200); do
        for fd in /proc/$pid/fd/*; do
          case $(readlink "$fd" 2>/dev/null) in "$work/auth.log" | anon_inode:inotify) return 0 ;; esac
        done
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done ;;
  esac
  echo "$1 did not start:"; cat "$work/tool.err"; return 1
}

stop_tool() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  if [ "$1" = fwctl ]; then
    for s in blacklist blacklist_v6; do ip netns exec "$ns" ipset list "$s"; done >"$work/sets"
    ip netns del "$ns"
  fi
}

# The floor: examples/wakes.rs sleeping and waking at watch's busy pace (45 ms,
# 30 ms from 20 000 lines/s) in the same cgroup accounting, on the same CPU,
# while the generator writes the same stream (read by no one).
run_wakes() {
  local shape=$1 rate=$2 every=45
  [ "$rate" -ge 20000 ] && every=30
  rm -f "$work/auth.log" "$work/record"
  : >"$work/auth.log"
  taskset -c 1 "$wakes" --every-ms "$every" --secs $(( secs + 2 )) >"$work/wakes.out" &
  pid=$!
  echo "$pid" >"$cg/cgroup.procs"
  local n0 t0 n1 t1
  n0=$(cpu_ns); t0=$(date +%s%N)
  taskset -c 0 "$gen" --rate "$rate" --secs "$secs" --shape "$shape" --attackers "$attackers" \
    --out "$work/auth.log" --record "$work/record"
  n1=$(cpu_ns); t1=$(date +%s%N)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  awk -v shape="$shape" -v rate="$rate" -v ns=$(( n1 - n0 )) -v us=$(( (t1 - t0) / 1000 )) -v every="$every" '
    $1 == "lines" { printf "wakes\t%s\t%s\t%.0f\t%.0f\t%.1f\t-\t-\t-\t-\t-\t%.3f\t%.1f\t%.3f\t-\t1\tfloor: a wake-up every %s ms\n",
      shape, rate, $4 / $2, $2 / us * 1e6, $8, ns / 1e3 / $2, ns / 1e3 / us * 100, ns / 1e9, every }' "$work/record"
}

# One run: prints one row of figures (tab-separated) on stdout.
run() {
  local tool=$1 shape=$2 rate=$3
  [ "$tool" = wakes ] && { run_wakes "$shape" "$rate"; return; }
  rm -f "$work/auth.log" "$work/record"
  : >"$work/auth.log"
  start_tool "$tool" || return 1
  echo "$pid" >"$cg/cgroup.procs"
  local c0 n0 t0 c1 n1 t1 t2 tend threads
  c0=$(cpu "$pid"); n0=$(cpu_ns); t0=$(date +%s%N)
  taskset -c 0 "$gen" --rate "$rate" --secs "$secs" --shape "$shape" --attackers "$attackers" \
    --out "$work/auth.log" --record "$work/record"
  t1=$(date +%s%N)
  tend=$(( t1 + grace * 1000000000 ))
  while [ "$(banned "$tool")" -lt "$attackers" ] && [ "$(date +%s%N)" -lt "$tend" ]; do sleep 0.05; done
  c1=$(cpu "$pid"); n1=$(cpu_ns); t2=$(date +%s%N)
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")
  stop_tool "$tool"
  python3 - "$tool" "$shape" "$rate" "$work" "$((c1 - c0))" "$(getconf CLK_TCK)" "$(( (t1 - t0) / 1000 ))" \
    "$(( (t2 - t0) / 1000 ))" "$threads" "$((n1 - n0))" <<'EOF'
import ipaddress, json, math, sys
tool, shape, rate, work, ticks, hz, wall_us, cpu_wall_us, threads, cpu_ns = sys.argv[1:]
ticks, hz, wall_us, cpu_wall_us, cpu_ns = int(ticks), int(hz), int(wall_us), int(cpu_wall_us), int(cpu_ns)
cross, decoys, lines = {}, set(), 0
for l in open(f"{work}/record"):
    f = l.split()
    if f[0] == "cross": cross[ipaddress.ip_address(f[1])] = int(f[2])
    elif f[0] == "decoy": decoys.add(ipaddress.ip_address(f[1]))
    elif f[0] == "lines": lines, size, late = int(f[1]), int(f[3]), float(f[7])
bans = {}
if tool == "fail2ban":
    for l in open(f"{work}/bans"):
        ns, ip = l.split()
        bans.setdefault(ipaddress.ip_address(ip), int(ns))
else:
    for l in open(f"{work}/watch.out"):
        try: e = json.loads(l)
        except ValueError: continue
        if e.get("event") == "watch_ban":
            bans.setdefault(ipaddress.ip_address(e["address"]), int(e["at_us"]) * 1000)
    members = set()
    for l in open(f"{work}/sets"):
        try: members.add(ipaddress.ip_address(l.split()[0]))
        except (ValueError, IndexError): pass
lat = sorted((bans[a] - t) / 1e6 for a, t in cross.items() if a in bans)
pct = lambda p: lat[math.ceil(p * len(lat)) - 1] if lat else float("nan")
other = [a for a in bans if a not in cross]
row = [tool, shape, rate, f"{size / lines:.0f}", f"{lines / wall_us * 1e6:.0f}", f"{late:.1f}",
       f"{len(lat)}/{len(cross)}", f"{sum(a in decoys for a in bans)}",
       f"{pct(.5):.1f}", f"{pct(.99):.1f}", f"{lat[-1] if lat else float('nan'):.1f}",
       f"{cpu_ns / 1e3 / lines:.3f}", f"{cpu_ns / 1e3 / cpu_wall_us * 100:.1f}",
       f"{cpu_ns / 1e9:.3f}", f"{ticks / hz / lines * 1e6:.2f}", threads]
if tool == "fwctl":
    row.append(f"sets {sum(a in members for a in cross)}/{len(cross)}, decoys {sum(a in members for a in decoys)}")
else:
    row.append("-")
if other: row[-1] += f"; banned, not an attacker: {' '.join(map(str, other[:3]))}"
print("\t".join(row))
EOF
}

uptime
printf '%s\n' "watch bench: $secs s streams, $attackers attackers, 24 decoys, grace $grace s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" --version 2>/dev/null | head -1 || true
fail2ban-server -V 2>/dev/null | head -1 || true
: >"$work/rows"
for shape in $shapes; do
  declare -A behind=()
  for rate in $rates; do
    for _ in $(seq "$repeat"); do
      for tool in $tools; do
        if [ -n "${behind[$tool]:-}" ]; then
          printf '%s\t%s\t%s\tskipped: falls behind at %s lines/s\n' "$tool" "$shape" "$rate" "${behind[$tool]}" >>"$work/rows"
          continue
        fi
        row=$(run "$tool" "$shape" "$rate") || { echo "$tool $shape $rate failed"; continue; }
        echo "$row" >>"$work/rows"
        echo "$row" >&2
        ok=$(cut -f7 <<<"$row")
        [ "${ok%/*}" = "${ok#*/}" ] || behind[$tool]=$rate
      done
    done
  done
  unset behind
done
echo
head='tool\tshape\tlines/s\tB/line\tgen/s\tgen late ms\tbanned\tdecoys\tp50 ms\tp99 ms\tmax ms\tCPU us/line\tCPU %%core\tCPU s\tticks us/line\tthreads\tkernel sets\n'
# shellcheck disable=SC2059 # the header is the format
{ printf "$head"; cat "$work/rows"; } | column -t -s $'\t'
if [ "$repeat" -gt 1 ]; then
  # Each tool, shape and rate: the run of median CPU per line (the tools
  # alternate run by run, so a slow spell of the VM falls on all of them).
  echo
  echo "median of $repeat runs by CPU per line:"
  # shellcheck disable=SC2059
  { printf "$head"
    python3 - "$work/rows" <<'PY'
import sys
runs = {}
for l in open(sys.argv[1]):
    f = l.rstrip('\n').split('\t')
    if len(f) > 12:
        runs.setdefault((f[0], f[1], f[2]), []).append(f)
for rows in runs.values():
    rows.sort(key=lambda f: float(f[11]))
    print('\t'.join(rows[(len(rows) - 1) // 2]))
PY
  } | column -t -s $'\t'
fi
echo "after: $(uptime)"
