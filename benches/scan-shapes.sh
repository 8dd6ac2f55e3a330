#!/usr/bin/env bash
# Whole-file `fwctl scan` over access logs of several shapes and every kind of
# nginx query, plus sshd, beside `rg -c` on the same file in the same run; no
# root. Logs from examples/weblog.rs (real user agents, paths and statuses; no
# planted offenders) and examples/loggen.rs (sshd) on /dev/shm, one hour each,
# scanned with `--within 2h` so that every line is read.
#   short: 110-200-byte lines (bots, curl), IPv4 only, 10 000 clients
#   long:  300-450-byte lines (browsers, query strings, referers), 20 % IPv6
#   v6:    mixed lengths, 90 % IPv6 clients (full-length interface ids)
#   many:  mixed lengths, 1 000 000 distinct clients, 30 % IPv6
#   xff:   mixed lengths, an X-Forwarded-For field, 80 % of the lines from 4
#          trusted proxies (queried with --client forwarded as well)
#   odd:   not examples/weblog.rs: hand-written combined, common and
#          X-Forwarded-For lines; Apache's "" user, user names with brackets,
#          escaped quotes, addresses and stamps planted in paths, agents and
#          referers, 900-byte query strings, IPv6 compressed, full, zero-padded
#          and upper-case; 60 000 clients, 50 of them 5 % of the lines
#   unique: odd with a random token in every request line (none repeats:
#          `--match` answers no request from its memo of repeated ones)
# Queries: every request (`--howmany N` alone), --status 4xx, --status 404,
# --match all (the built-in request patterns).
# GB/s = file bytes / best wall time. CPU = user + sys of the best run, all
# threads (the scan reads a whole file with one thread per core, here 2).
# OLD_BIN=path: the same queries with another fwctl binary in the same run.
# Usage: benches/scan-shapes.sh [RUNS] [SIZE in M] [SHAPES]
#   e.g. benches/scan-shapes.sh 5 240M "short long v6 many xff odd unique sshd"
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
size=${2:-240M}
shapes=${3:-"short long v6 many xff odd unique sshd"}
[ -n "${FWCTL_BIN:-}" ] || { cargo build --release --quiet --bin fwctl && cargo build --release --quiet --example weblog --example loggen; }
bin=${FWCTL_BIN:-$PWD/target/release/fwctl}
ex=${FWCTL_EXAMPLES:-$PWD/target/release/examples}
old=${OLD_BIN:-}
rg=$(command -v rg || true)
work=$(mktemp -d /dev/shm/fwctl-shapes.XXXXXX)
trap 'rm -rf "$work"' EXIT
export TZ=UTC
end=2026-11-21T12:00:00Z
: >"$work/fwctl.toml"

run() { # LABEL BYTES CMD...: best and median wall of $runs, GB/s of the best, its CPU
  local label=$1 bytes=$2; shift 2
  local times=()
  for _ in $(seq "$runs"); do
    local t0; t0=$(date +%s%N)
    # Not to /dev/null: some readers stop early when their output goes there.
    /usr/bin/time -f "%U %S" -o "$work/cpu" "$@" >"$work/out" 2>&1 || true
    local t=$(( ($(date +%s%N) - t0) / 1000 ))
    times+=("$t $(awk '{ printf "%.0f", ($1 + $2) * 1000 }' "$work/cpu")")
  done
  IFS=$'\n' s=($(sort -n <<<"${times[*]}")); unset IFS
  local best=${s[0]%% *} median=${s[$(( ${#s[@]} / 2 ))]%% *} cpu=${s[0]##* }
  printf '  %-52s best %7.1f ms  median %7.1f ms  %5s GB/s  cpu %5s ms\n' "$label" \
    "$(awk -v t="$best" 'BEGIN { print t / 1000 }')" "$(awk -v t="$median" 'BEGIN { print t / 1000 }')" \
    "$(awk -v b="$bytes" -v t="$best" 'BEGIN { printf "%.2f", b / (t / 1e6) / 1e9 }')" "$cpu"
}

cmd() { # BIN SOURCE LOG [FLAGS...]: the scan's argument vector, in $c
  local b=$1 s=$2 l=$3; shift 3
  local n=100
  [ "$s" = sshd ] && n=20 # the generator's 50 offenders have more than 20
  c=("$b" --config "$work/fwctl.toml" scan --source "$s" --log "$l" --now "$end" --howmany "$n" --within 2h
    --ipset blacklist --removeafter 1h --dryrun "$@")
}
found() { # BIN SOURCE LOG [FLAGS...]: the offenders it finds, one address a line
  cmd "$@"
  "${c[@]}" --json 2>/dev/null | grep '"address"' || true
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
for shape in $shapes; do
  log=$work/$shape.log
  case $shape in
    short) "$ex/weblog" --out "$log" --size "$size" --lines short --clients 10000 --v6 0 ;;
    long) "$ex/weblog" --out "$log" --size "$size" --lines long --clients 100000 --v6 20 ;;
    v6) "$ex/weblog" --out "$log" --size "$size" --lines mixed --clients 100000 --v6 90 ;;
    many) "$ex/weblog" --out "$log" --size "$size" --lines mixed --clients 1000000 --v6 30 ;;
    xff) "$ex/weblog" --out "$log" --size "$size" --lines mixed --clients 100000 --v6 20 --xff ;;
    odd | unique) python3 - "$log" "${size%M}" "$shape" <<'PY'
import random, sys
random.seed(7)
out = open(sys.argv[1], 'w')
size = int(sys.argv[2]) << 20
unique = sys.argv[3] == 'unique'
# The tokens from a generator of their own: every other field as in odd.
tokens = random.Random(11)
months = "Nov"
def v4(): return f"{random.choice([198,203,192])}.{random.choice([51,0])}.{random.randrange(256)}.{random.randrange(1,255)}"
def v6():
    r = random.random()
    if r < 0.3: return f"2001:db8:{random.randrange(65536):x}::{random.randrange(1,65536):x}"
    if r < 0.6: return "2001:db8:" + ":".join(f"{random.randrange(65536):x}" for _ in range(6))
    if r < 0.8: return "2001:0db8:" + ":".join(f"{random.randrange(65536):04x}" for _ in range(6))
    return f"2001:DB8:{random.randrange(16):X}:0:0:0:0:{random.randrange(1,65536):X}"
clients = [v4() for _ in range(30000)] + [v6() for _ in range(30000)]
heavy = clients[:50]
users = ['-', '-', '-', 'frank', '""', '[admin]', 'a]b', '203.0.113.250']
agents = ['curl/8.5.0', 'Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0',
          'python-requests/2.32 "192.0.2.77"', 'sqlmap/1.8 \\"203.0.113.9\\" [21/Nov/2026:11:00:00 +0000] 404',
          'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html) 198.51.100.1 - - [x]',
          '-', 'Go-http-client/1.1', 'x\\x22 200 1 \\x22y']
paths = ['/', '/index.php?page=' + 'A' * 900, '/search?q=' + '%20'.join(['union', 'select'] * 60),
         '/../../etc/passwd', '/wp-login.php', '/api/v1/items/12345?fields=a,b,c&sort=-id&token=' + 'f' * 64,
         '/a\\" 200 1 \\"b', '/203.0.113.5 - - [21/Nov/2026:11:00:00 +0000]', '/.env', '/cgi-bin/test.cgi']
statuses = [200, 200, 200, 301, 304, 400, 401, 403, 404, 404, 500, 502]
n = 0; t = 0
while n < size:
    sec = t // 300
    hh, mm, ss = 11 + sec // 3600, (sec // 60) % 60, sec % 60
    t += 1
    c = random.choice(heavy) if random.random() < 0.05 else random.choice(clients)
    st = random.choice(statuses)
    path = random.choice(paths)
    if unique:
        path += ('&' if '?' in path else '?') + f'u={tokens.getrandbits(64):016x}'
    req = f'{random.choice(["GET","POST","HEAD"])} {path} HTTP/1.1'
    stamp = f'[21/Nov/2026:{hh:02d}:{mm:02d}:{ss:02d} +0000]'
    u = random.choice(users)
    r = random.random()
    if r < 0.15:
        line = f'{c} - {u} {stamp} "{req}" {st} {random.randrange(5000)}\n'
    elif r < 0.3:
        line = f'{c} - {u} {stamp} "{req}" {st} {random.randrange(5000)} "http://{v4()}/" "{random.choice(agents)}" "{v4()}, {v6()}"\n'
    else:
        line = f'{c} - {u} {stamp} "{req}" {st} {random.randrange(5000)} "-" "{random.choice(agents)}"\n'
    out.write(line); n += len(line)
PY
    ;;
    # (loggen's size is in kernel-log lines: 2.5 times it makes about SIZE of auth.log)
    sshd) "$ex/loggen" --source sshd --bsd-offset 0 --size "$(( ${size%M} * 5 / 2 ))M" --span 1h --within 1h --sources 20000 \
      --offenders 50 --howmany 20 --no-near-misses --end "$end" --out "$log" >/dev/null 2>&1 ;;
  esac
  bytes=$(stat -c %s "$log")
  cat "$log" >/dev/null
  echo "$shape: $bytes bytes, $(wc -l <"$log") lines, load $(cut -d' ' -f1 /proc/loadavg)"
  if [ "$shape" = sshd ]; then
    [ -n "$rg" ] && run "rg -c ' sshd\\['" "$bytes" "$rg" -c ' sshd\[' "$log"
    queries=("--source sshd")
  else
    [ -n "$rg" ] && run "rg -c ' \\['" "$bytes" "$rg" -c ' \[' "$log"
    queries=("" "--status 4xx" "--status 404" "--match all")
    [ "$shape" = xff ] && queries+=("--client forwarded --trusted-proxy 10.0.0.0/24")
  fi
  for q in "${queries[@]}"; do
    # shellcheck disable=SC2206 # the query's flags, split on purpose
    flags=($q)
    src=nginx
    [ "$shape" = sshd ] && { src=sshd; flags=(); }
    for b in "$bin" ${old:+"$old"}; do
      tag=new; [ "$b" = "$old" ] && tag=old
      [ -z "$old" ] && tag=
      cmd "$b" "$src" "$log" "${flags[@]}"
      run "${tag:+$tag: }--source $src ${flags[*]}" "$bytes" "${c[@]}"
    done
    if [ -n "$old" ]; then
      # The two binaries must agree on what they find.
      found "$bin" "$src" "$log" "${flags[@]}" >"$work/new.found"
      found "$old" "$src" "$log" "${flags[@]}" >"$work/old.found"
      if cmp -s "$work/new.found" "$work/old.found"; then
        echo "    old and new find the same $(wc -l <"$work/new.found") offenders"
      else
        echo "    old and new DIFFER: new $(wc -l <"$work/new.found"), old $(wc -l <"$work/old.found") offenders"
      fi
    fi
  done
  rm -f "$log"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
