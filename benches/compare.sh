#!/usr/bin/env bash
# Before/after in one run: builds REV (default: HEAD~1) in a temporary git
# worktree, then runs each benchmark with that build and with the working
# tree's build, one after the other, so both meet the same VM state.
# Usage: sudo benches/compare.sh REV [RUNS] [BENCHES]
#   e.g. sudo benches/compare.sh 0f3ee38 3 "scan capture apply"
# Scan sizes come from SCAN_SIZES (default "100M 1G").
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
runs=${2:-3}
benches=${3:-"scan capture apply"}
base=$(mktemp -d /tmp/fwctl-base.XXXXXX)
cleanup() { git worktree remove --force "$base" 2>/dev/null || rm -rf "$base"; }
trap cleanup EXIT
git worktree add --quiet --detach "$base" "$rev"
(cd "$base" && cargo build --release --quiet --bin fwctl)
cargo build --release --quiet --bin fwctl
old=$base/target/release/fwctl
new=$PWD/target/release/fwctl
for b in $benches; do
  args=("$runs")
  [ "$b" = scan ] && args+=("${SCAN_SIZES:-100M 1G}")
  for which in old new; do
    bin=$old; label="before ($(git rev-parse --short "$rev"))"
    [ "$which" = new ] && { bin=$new; label="after (working tree)"; }
    echo "===== $b: $label"
    FWCTL_BIN=$bin "benches/$b.sh" "${args[@]}"
  done
done
