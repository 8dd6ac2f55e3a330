#!/usr/bin/env bash
# Benchmark for `fwctl scan --source nginx|sshd`, side by side in one run with
# fail2ban-rs's `dry-run` (its sshd filter, plus patterns for the failures fwctl
# also counts; for nginx a filter of the same 4xx responses) on the same files, and
# `rg -c` as the reader's reference. Logs from examples/loggen.rs on /dev/shm:
#  1. whole file: a log whose hour is one window (no near misses, so both tools'
#     windows agree); the offenders each tool finds are compared;
#  2. the cron case: a 21-hour log, the last 10 minutes (fwctl reads only those),
#     beside the kernel log's cron case of the same size.
# Every nginx query (--status, --match, --client forwarded) on access logs of
# several shapes (short, long, IPv6, many clients, X-Forwarded-For), old binary
# beside new: benches/scan-shapes.sh.
# Usage: benches/sources.sh [RUNS] [SIZES]   e.g. benches/sources.sh 3 "100M 1G"
# fail2ban-rs: FAIL2BAN_RS=path, or on PATH (cargo install fail2ban-rs --version 1.2.1).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
sizes=${2:-"100M 1G"}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example loggen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/loggen
f2b=${FAIL2BAN_RS:-$(command -v fail2ban-rs || true)}
rg=$(command -v rg || true)
gtime=$(command -v /usr/bin/time || true)
work=$(mktemp -d /dev/shm/fwctl-sources.XXXXXX)
trap 'rm -rf "$work"' EXIT
end=2026-11-21T12:00:00Z
: >"$work/fwctl.toml"
export TZ=UTC

# run LABEL BYTES CMD...: best and median of $runs, GB/s over BYTES (- for none), max RSS.
run() {
  local label=$1 bytes=$2; shift 2
  local times=() rss=0
  for _ in $(seq "$runs"); do
    local t0; t0=$(date +%s%N)
    if [ -n "$gtime" ]; then
      "$gtime" -f %M -o "$work/rss" "$@" >"$work/out" 2>/dev/null || true
      local r; r=$(tail -1 "$work/rss"); [ "$r" -gt "$rss" ] && rss=$r
    else
      "$@" >"$work/out" 2>/dev/null || true
    fi
    times+=($(( ($(date +%s%N) - t0) / 1000 )))
  done
  IFS=$'\n' s=($(sort -n <<<"${times[*]}")); unset IFS
  local best=${s[0]} median=${s[$(( ${#s[@]} / 2 ))]}
  local gbs=-
  [ "$bytes" != - ] && gbs=$(awk -v b="$bytes" -v t="$best" 'BEGIN { printf "%.2f", b / (t / 1e6) / 1e9 }')
  printf '  %-46s best %8.1f ms  median %8.1f ms  %6s GB/s  max RSS %s MB\n' "$label" \
    "$(awk -v t="$best" 'BEGIN { print t / 1000 }')" "$(awk -v t="$median" 'BEGIN { print t / 1000 }')" "$gbs" "$((rss / 1024))"
}

jail() { # SOURCE LOG HOWMANY WITHIN: a fail2ban-rs config for the same query
  local src=$1 log=$2 howmany=$3 within=$4
  {
    printf '[global]\nstate_file = "%s/f2b.state"\nsocket_path = "%s/f2b.sock"\n\n' "$work" "$work"
    printf '[jail.%s]\nenabled = true\nlog_path = "%s"\n' "$src" "$log"
    if [ "$src" = sshd ]; then
      cat <<'EOF'
date_format = "syslog"
filter = [
    'sshd\[\d+\]: Failed password for .* from <HOST> port \d+',
    'sshd\[\d+\]: Invalid user .* from <HOST> port \d+',
    'sshd\[\d+\]: Connection closed by authenticating user .* <HOST> port \d+',
    'sshd\[\d+\]: Disconnected from authenticating user .* <HOST> port \d+',
    'sshd\[\d+\]: error: maximum authentication attempts exceeded for .* from <HOST> port \d+',
    'sshd\[\d+\]: Did not receive identification string from <HOST> port \d+',
]
EOF
    else
      cat <<'EOF'
date_format = "common"
filter = [
    '^<HOST> \S+ \S+ \[[^\]]+\] "[^"]*" 4\d\d ',
]
EOF
    fi
    printf 'max_retry = %d\nfind_time = "%s"\nban_time = "1h"\nport = ["22"]\n' "$((howmany + 1))" "$within"
    printf '[jail.%s.backend.script]\nban_cmd = "true"\nunban_cmd = "true"\n' "$src"
  } >"$work/f2b.toml"
}

for size in $sizes; do
  for src in nginx sshd; do
    case $src in
      nginx) gflags=(--source nginx --query 4xx); sflags=(--source nginx --status 4xx) ;;
      sshd) gflags=(--source sshd --bsd-offset 0); sflags=(--source sshd) ;;
    esac
    howmany=20
    log=$work/$src.log
    "$gen" "${gflags[@]}" --size "$size" --span 1h --within 1h --sources 20000 --offenders 50 --howmany "$howmany" \
      --no-near-misses --end "$end" --out "$log" >"$work/manifest" 2>/dev/null
    bytes=$(stat -c %s "$log")
    cat "$log" >/dev/null
    echo "$src $size, whole file: $bytes bytes, $(wc -l <"$log") lines, one hour, 20 000 sources, $(grep -c '^offender' "$work/manifest") offenders"
    [ -n "$rg" ] && run "rg -c (the reader's reference)" "$bytes" "$rg" -c " sshd\[| \[" "$log"
    scan=("$bin" --config "$work/fwctl.toml" scan "${sflags[@]}" --log "$log" --now "$end" --howmany "$howmany"
          --within 1h --ipset blacklist --removeafter 1h --dryrun)
    run "fwctl scan ${sflags[*]} (whole file)" "$bytes" "${scan[@]}"
    "${scan[@]}" --json 2>/dev/null | grep -o '"address": "[^"]*"' | cut -d'"' -f4 | sort >"$work/fwctl.found"
    grep '^offender' "$work/manifest" | cut -d' ' -f2 | sort >"$work/want"
    echo "    fwctl found $(wc -l <"$work/fwctl.found") offenders: $(cmp -s "$work/want" "$work/fwctl.found" && echo "exactly the generator's" || echo "NOT the generator's")"
    if [ -n "$f2b" ]; then
      jail "$src" "$log" "$howmany" 1h
      run "fail2ban-rs dry-run (same query)" "$bytes" "$f2b" -c "$work/f2b.toml" dry-run "$log"
      "$f2b" -c "$work/f2b.toml" dry-run "$log" 2>/dev/null | grep 'WOULD BAN' | sed 's/^ *//; s/: .*//' | sort >"$work/f2b.found"
      echo "    fail2ban-rs would ban $(wc -l <"$work/f2b.found"): $(cmp -s "$work/f2b.found" "$work/fwctl.found" && echo "the same addresses as fwctl" || echo "NOT the same addresses")"
    else
      echo "    fail2ban-rs not installed (cargo install fail2ban-rs --version 1.2.1): no comparison"
    fi
    rm -f "$log"

    "$gen" "${gflags[@]}" --size "$size" --span 21h --within 10m --sources 20000 --offenders 50 --howmany "$howmany" \
      --end "$end" --out "$log" >"$work/manifest" 2>/dev/null
    "$gen" --size "$size" --span 21h --within 10m --sources 20000 --offenders 50 --howmany "$howmany" \
      --end "$end" --out "$work/kernel.log" >/dev/null 2>&1
    bytes=$(stat -c %s "$log")
    cat "$log" "$work/kernel.log" >/dev/null
    echo "$src $size, the cron case: 21 hours, the last 10 minutes"
    run "fwctl scan ${sflags[*]} --within 10m" - "$bin" --config "$work/fwctl.toml" scan "${sflags[@]}" --log "$log" \
      --now "$end" --howmany "$howmany" --within 10m --ipset blacklist --removeafter 1h --dryrun
    run "fwctl scan --source kernel --within 10m (same size)" - "$bin" --config "$work/fwctl.toml" scan --log "$work/kernel.log" \
      --now "$end" --rule blocked --type tcp --howmany "$howmany" --within 10m --ipset blacklist --removeafter 1h --dryrun
    if [ -n "$f2b" ]; then
      jail "$src" "$log" "$howmany" 10m
      run "fail2ban-rs dry-run (reads it all)" "$bytes" "$f2b" -c "$work/f2b.toml" dry-run "$log"
    fi
    rm -f "$log" "$work/kernel.log"
  done
done
