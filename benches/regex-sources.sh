#!/usr/bin/env bash
# Regex log sources beside the built-in sshd reader, one run, no root: a
# generated mail.log (postfix smtpd/cleanup/qmgr/smtp lines, 2 % SASL failures
# of 50 offenders, one hour, RFC 3339 stamps) scanned with the built-in
# `postfix-sasl` and with the same pattern as a `[[source]]`, and an sshd log of
# about the same size (examples/loggen.rs) scanned with `--source sshd`;
# `rg -c` of each file as the reader's reference. Whole file, dry run; best and
# median wall time of RUNS, and CPU time (user + sys, /usr/bin/time) of the best.
# Then 240 MB access logs (examples/weblog.rs, 10 000 clients; short lines, then long
# ones with referers and browser agents) scanned with the built-in nginx reader (every
# request, --status 4xx) and with [[source]]s that read their own time (`time` +
# `time_format`): one of 4xx requests, one of every request (each line a match).
# Usage: benches/regex-sources.sh [RUNS] [LINES]   e.g. benches/regex-sources.sh 5 1600000
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
lines=${2:-1600000}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example loggen --example weblog; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
gen=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/loggen
weblog=${FWCTL_EXAMPLES:-$PWD/target/release/examples}/weblog
rg=$(command -v rg || true)
work=$(mktemp -d /dev/shm/fwctl-regex.XXXXXX)
trap 'rm -rf "$work"' EXIT
export TZ=UTC
end=2026-11-21T12:00:00Z

python3 - "$work/mail.log" "$lines" <<'PY'
import random, sys
from datetime import datetime, timedelta
random.seed(7)
out, n = sys.argv[1], int(sys.argv[2])
start = datetime(2026, 11, 21, 11, 0, 0)
with open(out, "w") as f:
    for i in range(n):
        ts = (start + timedelta(seconds=3600 * i / n)).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
        r, pid = random.random(), random.randint(1000, 99999)
        a = "198.51.%d.%d" % (random.randint(0, 255), random.randint(1, 254))
        if r < 0.02:
            f.write(f"{ts} mx postfix/smtpd[{pid}]: warning: unknown[203.0.113.{i % 50 + 1}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n")
        elif r < 0.3:
            f.write(f"{ts} mx postfix/smtpd[{pid}]: connect from mail-{pid}.example.net[{a}]\n")
        elif r < 0.55:
            f.write(f"{ts} mx postfix/smtpd[{pid}]: disconnect from mail-{pid}.example.net[{a}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n")
        elif r < 0.7:
            f.write(f"{ts} mx postfix/cleanup[{pid}]: 4F{pid:X}A1: message-id=<{pid}.{i}@example.net>\n")
        elif r < 0.85:
            f.write(f"{ts} mx postfix/qmgr[{pid}]: 4F{pid:X}A1: from=<user{pid}@example.net>, size={pid}, nrcpt=1 (queue active)\n")
        else:
            f.write(f"{ts} mx postfix/smtp[{pid}]: 4F{pid:X}A1: to=<x{pid}@example.org>, relay=mx.example.org[{a}]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status=sent (250 ok)\n")
PY
mail_bytes=$(stat -c %s "$work/mail.log")
"$gen" --source sshd --bsd-offset 0 --size "$((mail_bytes * 5 / 2 / 1000000))M" --span 1h --within 1h --sources 20000 \
  --offenders 50 --howmany 20 --no-near-misses --end "$end" --out "$work/auth.log" >/dev/null 2>&1
: >"$work/empty.toml"
cat >"$work/custom.toml" <<'EOF'
[[source]]
name = "my-sasl"
program = "postfix*/smtpd"
line = '^warning: [-._\w]+\[(?P<addr>[0-9a-fA-F:.]+)\](?::\d+)?: SASL [-\w]+ authentication failed:'
kind = "sasl-failed"

[[source]]
name = "web-4xx"
line = '^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[[^\]]+\] "[^"]*" 4\d\d '
time = '^\S+ \S+ \S+ \[(?P<time>[^\]]+)\]'
time_format = "%d/%b/%Y:%H:%M:%S %z"
kind = "client-error"

[[source]]
name = "web-all"
line = '^(?P<addr>[0-9a-fA-F:.]+) \S+ \S+ \[[^\]]+\] "[^"]*" \d\d\d '
time = '^\S+ \S+ \S+ \[(?P<time>[^\]]+)\]'
time_format = "%d/%b/%Y:%H:%M:%S %z"
kind = "request"
EOF

run() { # LABEL BYTES CMD...
  local label=$1 bytes=$2; shift 2
  local times=() cpu=""
  for _ in $(seq "$runs"); do
    local t0; t0=$(date +%s%N)
    # Not to /dev/null: GNU grep stops at the first match when its output goes there.
    /usr/bin/time -f "%U %S" -o "$work/cpu" "$@" >"$work/out" 2>&1 || true
    local t=$(( ($(date +%s%N) - t0) / 1000 ))
    times+=("$t $(awk '{ printf "%.0f", ($1 + $2) * 1000 }' "$work/cpu")")
  done
  IFS=$'\n' s=($(sort -n <<<"${times[*]}")); unset IFS
  local best=${s[0]%% *} median=${s[$(( ${#s[@]} / 2 ))]%% *} cpu=${s[0]##* }
  printf '  %-44s best %7.1f ms  median %7.1f ms  %5s GB/s  cpu %5s ms\n' "$label" \
    "$(awk -v t="$best" 'BEGIN { print t / 1000 }')" "$(awk -v t="$median" 'BEGIN { print t / 1000 }')" \
    "$(awk -v b="$bytes" -v t="$best" 'BEGIN { printf "%.2f", b / (t / 1e6) / 1e9 }')" "$cpu"
}
scan() { # CONFIG SOURCE LOG [FLAGS...]
  local c=$1 s=$2 l=$3; shift 3
  "$bin" --config "$c" scan --source "$s" --log "$l" --now "$end" --howmany 20 --within 1h \
    --ipset blacklist --removeafter 1h --dryrun "$@"
}
auth_bytes=$(stat -c %s "$work/auth.log")
echo "mail.log: $mail_bytes bytes, $(wc -l <"$work/mail.log") lines; auth.log: $auth_bytes bytes, $(wc -l <"$work/auth.log") lines"
for f in mail auth; do
  if [ -n "$rg" ]; then
    run "rg -c 'smtpd|sshd' $f.log (reference)" "$(stat -c %s "$work/$f.log")" "$rg" -c 'smtpd|sshd' "$work/$f.log"
  else
    run "grep -c 'smtpd|sshd' $f.log (reference; no rg)" "$(stat -c %s "$work/$f.log")" grep -cE 'smtpd|sshd' "$work/$f.log"
  fi
done
flags=(--now "$end" --howmany 20 --within 1h --ipset blacklist --removeafter 1h --dryrun)
run "scan --source postfix-sasl (built-in regex)" "$mail_bytes" \
  "$bin" --config "$work/empty.toml" scan --source postfix-sasl --log "$work/mail.log" "${flags[@]}"
run "scan --source my-sasl ([[source]])" "$mail_bytes" \
  "$bin" --config "$work/custom.toml" scan --source my-sasl --log "$work/mail.log" "${flags[@]}"
run "scan --source sshd (built-in reader)" "$auth_bytes" \
  "$bin" --config "$work/empty.toml" scan --source sshd --log "$work/auth.log" "${flags[@]}"
for s in postfix-sasl my-sasl; do
  c=$work/empty.toml; [ "$s" = my-sasl ] && c=$work/custom.toml
  echo "  $s finds $(scan "$c" "$s" "$work/mail.log" --json 2>/dev/null | grep -c '"address"') offenders (the generator's: 50)"
done

web=(--now 2026-11-21T12:00:00Z --howmany 100 --within 2h --ipset blacklist --removeafter 1h --dryrun)
for shape in short long; do
  "$weblog" --out "$work/access.log" --size 240M --lines "$shape" --clients 10000 --v6 0 >/dev/null
  web_bytes=$(stat -c %s "$work/access.log")
  echo "access.log, $shape lines: $web_bytes bytes, $(wc -l <"$work/access.log") lines"
  [ -n "$rg" ] && run "rg -c '\" 4' access.log (reference)" "$web_bytes" "$rg" -c '" 4' "$work/access.log"
  run "scan --source nginx (built-in reader)" "$web_bytes" \
    "$bin" --config "$work/empty.toml" scan --source nginx --log "$work/access.log" "${web[@]}"
  run "scan --source web-all ([[source]])" "$web_bytes" \
    "$bin" --config "$work/custom.toml" scan --source web-all --log "$work/access.log" "${web[@]}"
  run "scan --source nginx --status 4xx" "$web_bytes" \
    "$bin" --config "$work/empty.toml" scan --source nginx --status 4xx --log "$work/access.log" "${web[@]}"
  run "scan --source web-4xx ([[source]])" "$web_bytes" \
    "$bin" --config "$work/custom.toml" scan --source web-4xx --log "$work/access.log" "${web[@]}"
  found() { "$bin" --config "$work/$1" scan --source "$2" "${@:3}" --log "$work/access.log" "${web[@]}" --json 2>/dev/null | grep -c '"address"' || true; }
  echo "  offenders: nginx $(found empty.toml nginx), web-all $(found custom.toml web-all); nginx --status 4xx $(found empty.toml nginx --status 4xx), web-4xx $(found custom.toml web-4xx)"
done
