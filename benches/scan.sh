#!/usr/bin/env bash
# Benchmark for `fwctl scan`, side by side with `rg -c IPTABLES-BLOCKED` on the same
# file in the same run. Logs are generated (examples/loggen.rs) on /dev/shm, a tmpfs
# like the real /ram, and read once before timing (warm page cache):
#  1. whole-file pass: a window that covers the whole log;
#  2. the cron case: the last 30 minutes of a log that spans 21 hours;
#  3. peak memory (max RSS) of each;
#  4. (root) 100 000 offenders banned through one `ipset restore`, in a throwaway
#     network namespace, without and with a [[notify]] sink (benches/sink.py).
# Prints best and median wall time of RUNS runs. Usage: benches/scan.sh [RUNS] [SIZES]
#   e.g. benches/scan.sh 5 "100M 1G"   (needs ripgrep and GNU time: apt-get install ripgrep time)
#   benches/scan.sh 7 ""               only the 100 000 bans, with and without a sink
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
sizes=${2-"100M 1G"}   # "" skips the log sizes (only the 100 000 bans)
# FWCTL_BIN (and FWCTL_EXAMPLES for the generators): builds made elsewhere,
# e.g. by benches/compare.sh; nothing is built then.
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example loggen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/loggen
work=$(mktemp -d /dev/shm/fwctl-bench.XXXXXX)
# An empty config: the defaults, without the shipped [blacklist] (which covers the
# generated offenders: they would be "already blocked" rather than found).
: >"$work/bench.toml"
ns=fwbench$$
cleanup() {
  [ -n "${sink:-}" ] && kill "$sink" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
end=2026-11-21T12:00:00Z
gtime=$(command -v /usr/bin/time || true)
rg=$(command -v rg || true)

# run LABEL CMD...: best and median seconds of $runs runs, and max RSS.
run() {
  local label=$1; shift
  local times=() rss=0
  for _ in $(seq "$runs"); do
    local t0 t1; t0=$(date +%s%N)
    if [ -n "$gtime" ]; then
      "$gtime" -f %M -o "$work/rss" "$@" >/dev/null
      local r; r=$(tail -1 "$work/rss"); [ "$r" -gt "$rss" ] && rss=$r
    else
      "$@" >/dev/null
    fi
    t1=$(date +%s%N); times+=($(( (t1 - t0) / 1000 )))
  done
  IFS=$'\n' sorted=($(sort -n <<<"${times[*]}")); unset IFS
  local best=${sorted[0]} median=${sorted[$(( ${#sorted[@]} / 2 ))]}
  # Throughput over the whole file; for the cron case only the window is read.
  local gbs; gbs=$(awk -v b="$bytes" -v t="$best" 'BEGIN { printf "%.2f", b / (t / 1e6) / 1e9 }')
  case $label in *cron*) gbs=-;; esac
  printf '  %-34s best %8.1f ms  median %8.1f ms  %6s GB/s  max RSS %s\n' "$label" \
    "$(awk -v t="$best" 'BEGIN { print t / 1000 }')" "$(awk -v t="$median" 'BEGIN { print t / 1000 }')" \
    "$gbs" "$([ -n "$gtime" ] && echo "$((rss / 1024)) MB" || echo "n/a (apt-get install time)")"
}

for size in $sizes; do
  log=$work/iptables-$size.log
  "$gen" --size "$size" --span 21h --sources 10000 --offenders 20 --howmany 500 --within 30m \
    --end "$end" --out "$log" >"$work/manifest" 2>/dev/null
  bytes=$(stat -c %s "$log")
  cat "$log" >/dev/null
  echo "log $size: $bytes bytes, $(wc -l <"$log") lines, 21 h, 10 000 background sources, $(grep -c '^offender' "$work/manifest") offenders"
  scan=("$bin" scan --config "$work/bench.toml" --log "$log" --now "$end" --rule blocked --type tcp
        --howmany 500 --ipset throttle-hard --removeafter 2h --dryrun)
  if [ -n "$rg" ]; then run "rg -c IPTABLES-BLOCKED" "$rg" -c IPTABLES-BLOCKED "$log"
  else echo "  rg not installed (apt-get install ripgrep): no reference"; fi
  run "fwctl scan, whole file (--within 30d)" "${scan[@]}" --within 30d
  run "fwctl scan, cron case (--within 30m)" "${scan[@]}" --within 30m
  # The cron case's offenders are exactly the generator's.
  found=$("${scan[@]}" --within 30m --json | grep -c '"action": "would add"')
  echo "  cron case offenders found: $found of $(grep -c '^offender' "$work/manifest")"
  rm -f "$log"
done

if [ "$(id -u)" -ne 0 ]; then
  echo "100 000 bans: skipped (needs root for a network namespace)"; exit 0
fi
log=$work/bans.log
"$gen" --size 8M --span 1h --sources 1000 --offenders 100000 --howmany 1 --within 30m \
  --end "$end" --out "$log" >/dev/null 2>&1
bytes=$(stat -c %s "$log")
echo "100 000 offenders ($bytes-byte log) banned into empty sets, in a namespace; each run without"
echo "notification sinks, then with one [[notify]] sink (benches/sink.py in the namespace, answering 200):"
printf '[[notify]]\nname = "bench"\nurl = "http://127.0.0.1:18090/hook"\n' >"$work/sink.toml"
# (A build from before [[notify]] existed runs without the sink only.)
confs="bench sink"
"$bin" notify --help >/dev/null 2>&1 || confs=bench
: >"$work/posts"
declare -A times=()
for _ in $(seq "$runs"); do
  for conf in $confs; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    for s in "blacklist family inet" "blacklist_v6 family inet6"; do
      set -- $s
      ip netns exec "$ns" ipset create "$1" hash:ip family "$3" maxelem 262144 timeout 0
    done
    if [ "$conf" = sink ]; then
      : >"$work/ready"
      ip netns exec "$ns" python3 benches/sink.py 18090 "$work/posts" >"$work/ready" &
      sink=$!
      for _ in $(seq 100); do grep -q ready "$work/ready" && break; sleep 0.05; done
      grep -q ready "$work/ready" || { echo "benches/sink.py did not start"; exit 1; }
    fi
    rm -f "$work/state.json" "$work/notify-outbox.json"
    t0=$(date +%s%N)
    out=$(FWCTL_RUN_DIR=$work FWCTL_STATE=$work/state.json ip netns exec "$ns" "$bin" scan --config "$work/$conf.toml" --log "$log" \
      --now "$end" --rule blocked --type tcp --howmany 1 --within 30m --ipset blacklist --removeafter 2h)
    times[$conf]+="$(( ($(date +%s%N) - t0) / 1000000 )) "
    n=$(( $(ip netns exec "$ns" ipset list -t blacklist | awk '/entries/ {print $4}') + \
          $(ip netns exec "$ns" ipset list -t blacklist_v6 | awk '/entries/ {print $4}') ))
    if [ "$conf" = sink ]; then kill "$sink"; wait "$sink" 2>/dev/null || true; sink=; fi
    ip netns del "$ns"
  done
done
for conf in $confs; do
  IFS=$'\n' sorted=($(sort -n <<<"$(tr ' ' '\n' <<<"${times[$conf]}" | grep .)")); unset IFS
  label=$([ "$conf" = bench ] && echo "no sink  " || echo "one sink ")
  echo "  $label whole run (read, decide, one ipset restore): best ${sorted[0]} ms, median ${sorted[$(( ${#sorted[@]} / 2 ))]} ms; $n members in the sets"
done
[ -s "$work/posts" ] && echo "  posts per run with the sink: $(( $(wc -l <"$work/posts") / runs )), $(awk '{ b += $1; e += $2 } END { printf "%d events, %.1f MB", e / NR, b / NR / 1e6 }' "$work/posts") each"
echo "  last run: $(grep -o 'added: .*' <<<"$out")"
